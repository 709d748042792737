import Synchronization
import Testing

@testable import DistrCore

/// `Dialer` against real TCP listeners on loopback, whose server side is the worker's own
/// handshake code run on a thread of the test.
@Suite struct DialerTests {
    let secret = Array(repeating: UInt8(5), count: 32)

    /// What a test server does with each connection it accepts, in turn.
    enum Answer {
        /// The whole handshake, accepted; the socket stays open until the test ends.
        case accept
        /// Reads the hello and answers "busy" (no slot free), then closes.
        case busy
        /// The handshake, which must fail (the client holds another key).
        case rejected
    }

    /// The accepted connections a test keeps open until it ends.
    final class Kept: Sendable {
        let fds = Mutex<[Int32]>([])
        func closeAll() { for fd in fds.withLock({ $0 }) { FD.close(fd) } }
    }

    /// A listener on a free loopback port that answers its connections with `answers`, then
    /// accepts no more. The returned latch opens when it has answered them all.
    func server(_ answers: [Answer], kept: Kept) throws -> (peer: Peer, done: Latch) {
        let (listener, address) = try TCPSocket.listen(host: "127.0.0.1", port: 0)
        let done = Latch()
        let secret = secret
        Threads.start(name: "test-dial-server") {
            defer {
                FD.close(listener)
                done.open()
            }
            for answer in answers {
                do {
                    let fd = try TCPSocket.accept(listener)
                    switch answer {
                    case .accept:
                        _ = try Connection.serverHandshake(fd: fd, deadline: .after(30)) { _ in secret }
                        try FD.writeAll(fd, [Handshake.Verdict.accepted])
                        kept.fds.withLock { $0.append(fd) }
                    case .busy:
                        _ = try Connection.readExact(fd, Handshake.helloFixedSize, deadline: .after(30))
                        try FD.writeAll(fd, Handshake.Server.refusal(.busy))
                        FD.close(fd)
                    case .rejected:
                        defer { FD.close(fd) }
                        #expect(throws: WireError.self) { try Connection.serverHandshake(fd: fd, deadline: .after(30)) { _ in secret } }
                    }
                } catch { Issue.record("test server: \(error)") }
            }
        }
        return (Peer(host: "127.0.0.1", port: address.port), done)
    }

    /// Four peers at once: one that answers, one that first says busy, one whose port is
    /// closed, and one that takes the connection but never answers. Each gets its own outcome;
    /// the silent one does not hold up or fail the others.
    @Test func severalPeersAtOnce_eachGetsItsOwnOutcome() throws {
        let kept = Kept()
        defer { kept.closeAll() }
        let good = try server([.accept], kept: kept)
        let busy = try server([.busy, .accept], kept: kept)
        let (closed, closedAddress) = try TCPSocket.listen(host: "127.0.0.1", port: 0)
        FD.close(closed)
        let (silent, silentAddress) = try TCPSocket.listen(host: "127.0.0.1", port: 0)
        defer { FD.close(silent) }
        let peers = [
            good.peer, busy.peer, Peer(host: "127.0.0.1", port: closedAddress.port), Peer(host: "127.0.0.1", port: silentAddress.port),
        ]

        let results = Dialer.dial(peers, secret: secret, timeout: 1, watch: nil)
        good.done.wait()
        busy.done.wait()

        #expect(results.count == 4)
        for index in 0..<2 {
            switch results[index] {
            case .success(let (connection, host)):
                #expect(host == "127.0.0.1")
                connection.close()
            case .failure(let error): Issue.record("peer \(index) failed: \(error)")
            }
        }
        #expect(ConnectFailure.classify(error(results[2]), node: "2", address: peers[2].description).kind == "refused")
        let stalled = error(results[3])
        #expect("\(stalled)".contains("no handshake answer within 1.0 s"), "\(stalled)")
    }

    @Test func wrongSecretAndUnresolvableNames_areTheirKindsOfFailure() throws {
        let kept = Kept()
        defer { kept.closeAll() }
        let good = try server([.rejected], kept: kept)
        let wrong = Array(repeating: UInt8(6), count: 32)
        let results = Dialer.dial([good.peer, Peer(host: "no-such-host.invalid", port: 1)], secret: wrong, timeout: 5, watch: nil)
        #expect(ConnectFailure.classify(error(results[0]), node: "0", address: "").kind == "wrong secret")
        #expect(ConnectFailure.classify(error(results[1]), node: "1", address: "").kind == "name not resolved")
        // The server saw its proof refused (the connection closed) and ended its handshake with an error.
        good.done.wait()
    }

    func error(_ result: Result<(Connection, String), any Error>) -> any Error {
        switch result {
        case .success(let (connection, _)):
            connection.close()
            return WireError.closed
        case .failure(let error): return error
        }
    }
}
