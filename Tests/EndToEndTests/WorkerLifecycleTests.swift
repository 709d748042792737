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

    /// A finished job leaves nothing behind in the worker: its memory stays flat over many jobs.
    /// (Each job's control connection alone holds 256 KiB; a reference cycle between the job and
    /// its control session once kept every one of them, about 260 KB per job for ever.)
    @Test func manyJobs_leaveTheWorkersMemoryFlat() throws {
        let cluster = try TestCluster(workers: 1)
        defer { cluster.close() }
        func runJobs(_ count: Int) throws {
            for _ in 0..<count {
                let run = try cluster.master(["exec", "-q", "--", "true"])
                try #require(run.status == 0, "\(run.stderr)")
            }
        }
        func residentBytes() throws -> Int {
            let status = try String(contentsOfFile: "/proc/\(cluster.workers[0].process.pid)/status", encoding: .utf8)
            let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
            return try #require(Int(line.split(separator: " ").dropFirst().first ?? "")) * 1024
        }
        // Warm-up: the first jobs touch code and allocator arenas that stay.
        try runJobs(20)
        let before = try residentBytes()
        try runJobs(120)
        let grown = try residentBytes() - before
        #expect(grown < 12 << 20, "the worker grew by \(grown >> 10) KiB over 120 jobs")
    }
}
