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
                    // Bounded: a dialer that does not come (back) fails the test instead of hanging it.
                    guard try FD.waitReadable(listener, until: .after(30)) else {
                        Issue.record("test server: no connection for its answer \(answer) within 30 s")
                        return
                    }
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

    /// Five peers at once: one that answers, one named rather than written out, one that first
    /// says busy, one whose port is closed, and one that takes the connection but never
    /// answers. Each gets its own outcome; the silent one does not hold up or fail the others.
    @Test func severalPeersAtOnce_eachGetsItsOwnOutcome() throws {
        let kept = Kept()
        defer { kept.closeAll() }
        let good = try server([.accept], kept: kept)
        let named = try server([.accept], kept: kept)
        let busy = try server([.busy, .accept], kept: kept)
        // Bound and never listening: connections to it are refused, and no one else can take it.
        let (closed, closedAddress) = try TCPSocket.bind(host: "127.0.0.1", port: 0)
        defer { FD.close(closed) }
        let (silent, silentAddress) = try TCPSocket.listen(host: "127.0.0.1", port: 0)
        defer { FD.close(silent) }
        let peers = [
            good.peer, Peer(host: "localhost", port: named.peer.port), busy.peer, Peer(host: "127.0.0.1", port: closedAddress.port),
            Peer(host: "127.0.0.1", port: silentAddress.port),
        ]

        let results = Dialer.dial(peers, secret: secret, timeout: 3, watch: nil)
        good.done.wait()
        named.done.wait()
        busy.done.wait()

        #expect(results.count == 5)
        for index in 0..<3 {
            switch results[index] {
            case .success(let (connection, host)):
                #expect(host == "127.0.0.1")
                connection.close()
            case .failure(let error): Issue.record("peer \(index) failed: \(error)")
            }
        }
        #expect(ConnectFailure.classify(error(results[3]), node: "3", address: peers[3].description).kind == "refused")
        let stalled = error(results[4])
        #expect("\(stalled)".contains("no handshake answer within 3.0 s"), "\(stalled)")
    }

    /// Literal addresses need no lookup; a name is looked up (on a thread of its own) before
    /// the connect time starts.
    @Test func lookUp_literalsAtOnce_namesResolved_unknownNamesFail() {
        let peers = [
            Peer(host: "127.0.0.1", port: 7001), Peer(host: "::1", port: 7002), Peer(host: "localhost", port: 7003),
            Peer(host: "no-such-host.invalid", port: 7004), Peer(host: "127.0.0.1", port: 7001),
        ]
        #expect(SocketAddress.numeric(host: "127.0.0.1", port: 1) != nil)
        #expect(SocketAddress.numeric(host: "localhost", port: 1) == nil)
        let found = Dialer.lookUp(peers)
        #expect(found.count == 5)
        #expect((try? found[0].get())?.first?.description == "127.0.0.1:7001")  // nil (a failure) fails the expectation.
        #expect((try? found[1].get())?.first?.port == 7002)  // The same.
        #expect((try? found[2].get())?.isEmpty == false)  // The same.
        if case .failure(.resolve(let host, _)) = found[3] {
            #expect(host == "no-such-host.invalid")
        } else {
            Issue.record("an unknown name gave \(found[3])")
        }
        #expect((try? found[4].get())?.first?.description == "127.0.0.1:7001")  // The same.
    }

    @Test func wrongSecretAndUnresolvableNames_areTheirKindsOfFailure() throws {
        let kept = Kept()
        defer { kept.closeAll() }
        let good = try server([.rejected], kept: kept)
        let wrong = Array(repeating: UInt8(6), count: 32)
        // The name is looked up before the connect time starts: a slow resolver cannot make the
        // handshake with the good peer run out of time.
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
