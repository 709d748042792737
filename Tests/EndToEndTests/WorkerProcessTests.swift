import Foundation
import Testing

@testable import DistrCore

/// Starting and stopping real workers the one shared way (`WorkerProcess`).
@Suite(.hangGuard) struct WorkerProcessTests {
    init() { Signals.ignorePipe() }

    static func configuration(_ root: TemporaryDirectory, _ name: String, secret: String? = nil, prefix: [String] = [])
        throws -> WorkerProcess.Configuration
    {
        try FileIO.makeDirectories(root.path + "/" + name)
        return WorkerProcess.Configuration(
            executable: Binaries.worker, secretFile: secret ?? root.path + "/secret", workDirectory: root.path + "/" + name, grace: 1,
            prefix: prefix, log: .file(root.path + "/\(name).log"))
    }

    @Test func start_readsThePortFromTheReadyLine_andStopEndsTheWorkerWithSIGTERM() throws {
        try withTemporaryDirectory { root in
            try ClusterSecret.generate(path: root.path + "/secret")
            let worker = try WorkerProcess.start(try Self.configuration(root, "w"), until: .after(20))
            #expect((1...65535).contains(worker.port))
            #expect(worker.address == "127.0.0.1:\(worker.port)")
            #expect(worker.stop(grace: 30))
            #expect(worker.exit.status == .exited(0))
            let log = String(decoding: try FileIO.readAll(root.path + "/w.log"), as: UTF8.self)
            #expect(log.contains("shutting down"), "\(log)")
        }
    }

    @Test func start_ofSeveral_namesTheOneThatDidNotStart_andStopsTheOthers() throws {
        try withTemporaryDirectory { root in
            try ClusterSecret.generate(path: root.path + "/secret")
            let good = try Self.configuration(root, "good")
            let bad = try Self.configuration(root, "bad", secret: root.path + "/missing")
            #expect {
                try WorkerProcess.start([good, bad], until: .after(20))
            } throws: { error in
                guard case .notReady(let index, let why, let log) = error as? WorkerProcessError else { return false }
                return index == 1 && why.contains("exit 64") && log.contains("distr-master keygen")
            }
            // start returns only after it has stopped the good one: its log is complete.
            let log = String(decoding: try FileIO.readAll(root.path + "/good.log"), as: UTF8.self)
            #expect(log.contains("shutting down"), "\(log)")
        }
    }

    /// The prefix stands in for a worker that prints something else, or nothing, then hangs
    /// (ignoring SIGTERM): start stops it and says why.
    @Test(arguments: [
        ("echo hello; exec sleep 100", 20.0, "its first line was 'hello'"), ("trap '' TERM; exec sleep 100", 0.2, "no ready line came in time"),
    ])
    func start_refusesAWorkerWithoutAReadyLine(script: String, seconds: Double, why expected: String) throws {
        try withTemporaryDirectory { root in
            let impostor = try Self.configuration(root, "impostor", prefix: ["/bin/sh", "-c", script, "sh"])
            #expect {
                try WorkerProcess.start(impostor, until: .after(seconds))
            } throws: { error in
                guard case .notReady(0, let why, _) = error as? WorkerProcessError else { return false }
                return why.contains(expected)
            }
        }
    }

    @Test func start_reportsAProgramThatCannotRun() throws {
        try withTemporaryDirectory { root in
            var missing = try Self.configuration(root, "missing")
            missing.executable = root.path + "/no-such-worker"
            #expect {
                try WorkerProcess.start(missing, until: .after(20))
            } throws: { error in
                guard case .couldNotRun(let program, _) = error as? WorkerProcessError else { return false }
                return program == root.path + "/no-such-worker"
            }
        }
    }

    @Test(arguments: [
        ("distr-worker listening on 127.0.0.1:4242", "127.0.0.1:4242", 4242), ("distr-worker listening on [::1]:80", "[::1]:80", 80),
    ])
    func parseReadyLine_acceptsHostAndPort(line: String, address: String, port: Int) {
        let parsed = WorkerProcess.parseReadyLine(line)
        #expect(parsed?.address == address && parsed?.port == port)
    }

    @Test(arguments: [
        "", "hello", "distr-worker listening on 127.0.0.1", "distr-worker listening on 127.0.0.1:0",
        "distr-worker listening on 127.0.0.1:x", "distr-worker listening on 127.0.0.1:70000", "worker listening on 1.2.3.4:5",
    ])
    func parseReadyLine_rejectsAnythingElse(line: String) {
        #expect(WorkerProcess.parseReadyLine(line) == nil)
    }
}
