import Foundation
import Testing

@testable import DistrCore

/// Strangers that open connections and never finish their handshake must not lock out a master
/// or starve a running job's rank connections.
@Suite(.hangGuard) struct LockoutTests {
    init() { Signals.ignorePipe() }

    /// Connects to `port` on 127.0.0.1 from the loopback address `source` (127.0.0.0/8 is all
    /// loopback), so one test can be many clients.
    static func connect(from source: String, to port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", errno: errno) }
        func address(_ host: String, _ port: Int) -> sockaddr_in {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = in_port_t(UInt16(port).bigEndian)
            inet_pton(AF_INET, host, &a.sin_addr)
            return a
        }
        var local = address(source, 0)
        var remote = address("127.0.0.1", port)
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) } }
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, size) }
        }
        guard bound == 0, connected == 0 else {
            let error = SystemError("connect from \(source)", errno: errno)
            close(fd)
            throw error
        }
        return fd
    }

    @Test func slowHandshakesFromManyAddresses_neitherLockOutAMasterNorStarveARunningJob() throws {
        // Long enough that the strangers hold their slots for the whole test.
        let cluster = try TestCluster(workers: 2, workerArguments: ["--handshake-timeout", "60"])
        let ring = Binaries.example("ring")
        // A two-node job whose ranks dial each other only after the strangers have arrived.
        try cluster.root.write("go", "")
        let job = try cluster.startMaster([
            "exec", "--file", ring, "--", "echo waiting; while [ ! -f \(cluster.root.path)/go-now ]; do sleep 0.01; done; ./ring",
        ])
        // The job's own handshakes are done once its ranks run: a handshake still pending when the
        // strangers fill the slots is the oldest, and displaced (by design: a stalled one).
        try #require(job.stdout.waitFor(count: 2, of: "waiting"), "\(job.stderr.text)")
        var strangers: [Int32] = []
        defer { strangers.forEach { close($0) } }
        for worker in cluster.workers {
            for index in 0..<(Limits.default.maxPendingHandshakes + 16) {
                let fd = try Self.connect(from: "127.0.0.\(2 + index)", to: worker.port)
                // The start of a hello, then nothing: the slot stays taken until displaced.
                try FD.writeAll(fd, Array("DS".utf8))
                strangers.append(fd)
            }
        }
        // Every slot was taken: the newest strangers displaced older ones.
        for worker in cluster.workers { #expect(worker.process.stderr.waitFor("displaced by a newer connection")) }

        // A new master gets in while the strangers hold on.
        let fresh = try cluster.master(["exec", "--", "echo fresh"])
        #expect(fresh.status == 0, "\(fresh.stderr)")
        #expect(fresh.stdoutLines.sorted() == ["[0] fresh", "[1] fresh"])

        // The running job's ranks connect to each other now, while the strangers still wait.
        try cluster.root.write("go-now", "")
        let run = TestProcess.run(job)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdoutLines.filter { $0.contains("Next to") }.count == 2, "\(run.stdout)")
        // The strangers were still there (and not answered) all along, but for those displaced.
        var stillWaiting = 0
        for fd in strangers where !(try FD.waitReadable(fd, timeout: 0)) { stillWaiting += 1 }
        #expect(stillWaiting >= Limits.default.maxPendingHandshakes, "\(stillWaiting) of \(strangers.count) strangers still held a slot")
    }

    /// A displaced handshake may be a slow real client: it is told "busy" (and so tries again)
    /// in whatever it reads next, not left to guess from a closed connection.
    @Test func displacedHandshakes_areToldBusy_beforeAndAfterTheWorkersReply() throws {
        let cluster = try TestCluster(workers: 1, workerArguments: ["--handshake-timeout", "60"])
        let port = cluster.workers[0].port
        // One client whose whole hello is in (the worker has replied; it now owes its proof),
        // and one that sent half a hello. Both are older than anything that follows.
        let proving = try Self.connect(from: "127.0.1.1", to: port)
        defer { close(proving) }
        let client = Handshake.Client(key: randomBytes(32), kind: .control)
        try FD.writeAll(proving, client.hello.encoded())
        let reply = try Connection.readExact(proving, Handshake.replySize, deadline: .after(30))
        #expect(reply[6] == Handshake.ReplyStatus.ok.rawValue)
        let greeting = try Self.connect(from: "127.0.1.2", to: port)
        defer { close(greeting) }
        try FD.writeAll(greeting, Array(client.hello.encoded().prefix(10)))
        var strangers: [Int32] = []
        defer { strangers.forEach { close($0) } }
        for index in 0..<(Limits.default.maxPendingHandshakes + 2) {
            let fd = try Self.connect(from: "127.0.2.\(2 + index)", to: port)
            try FD.writeAll(fd, Array("DS".utf8))
            strangers.append(fd)
        }
        #expect(try Connection.readExact(proving, 1, deadline: .after(30)) == [Handshake.Verdict.busy])
        #expect(try Connection.readExact(greeting, Handshake.replySize, deadline: .after(30)) == Handshake.Server.refusal(.busy))
        #expect(cluster.workers[0].process.stderr.waitFor(count: 2, of: "displaced by a newer connection"))
    }
}
