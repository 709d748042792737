import Foundation
import Testing

@testable import DistrCore

@Suite(.hangGuard) struct WorkerLifecycleTests {
    init() { Signals.ignorePipe() }

    /// A SIGTERM that arrives the moment the ready line is out must still stop the worker
    /// cleanly: the signal is blocked before any thread exists and taken by one thread.
    @Test func sigtermRightAfterStart_stopsTheWorkerEveryTime() throws {
        let root = try TemporaryDirectory()
        let secret = root.path + "/secret"
        try ClusterSecret.generate(path: secret)
        for attempt in 0..<200 {
            let worker = try TestWorker(secretFile: secret, workDirectory: root.path + "/work")
            worker.process.signal(SIGTERM)
            let status = worker.process.wait(timeout: 20)
            try #require(status == .exited(0), "attempt \(attempt): \(status); stderr: \(worker.process.stderr.text)")
        }
    }
}
