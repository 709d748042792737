import Foundation
import Testing

@testable import DistrCore

/// Faults injected into a virtual cluster of network namespaces (4 hosts on a bridge, the master
/// in its own namespace), with the default 5 s node timeout and lease. Each test prints what the
/// master printed, its exit status and how long detection took (not asserted beyond a generous
/// bound), and checks that no process or directory of the job is left on any host. Each test's
/// blocking waits run on a dedicated thread, never on the cooperative pool (two threads on a
/// 2-core CI machine, which every other suite needs); serialized, so that one fault at a time
/// competes for the CPU with the rest of the suite.
@Suite(.serialized, .hangGuard, .enabled(if: NamespaceHosts.available, "needs root and iproute2 (network namespaces); skipped"))
struct VirtualClusterTests {
    init() { Signals.ignorePipe() }

    /// Runs `body` on a new virtual cluster, on a thread of its own: the waits block, and must not
    /// hold the cooperative pool.
    static func onCluster(hostCount: Int = 4, _ body: @escaping @Sendable (VirtualCluster) throws -> Void) async throws {
        try await onDedicatedThread(name: "virtual-cluster") { try withVirtualCluster(hostCount: hostCount, body) }
    }

    /// Every rank prints "started" on stdout, then sleeps `seconds` and prints "done".
    static func sleeper(_ seconds: Int) -> String { "echo started; sleep \(seconds); echo done" }

    /// Waits until all `count` ranks have started (bounded), or records why not.
    static func waitStarted(_ master: TestProcess, count: Int = 4, stream: KeyPath<TestProcess, OutputWatcher> = \.stdout) -> Bool {
        let ok = master[keyPath: stream].waitFor(count: count, of: "started", timeout: 30)
        if !ok { Issue.record("the ranks did not all start; master stderr:\n\(master.stderr.text)") }
        return ok
    }

    /// Seconds from `since` until the master's stderr shows `needle` (nil: not within 30 s).
    static func detection(_ master: TestProcess, _ needle: String, since: Double) -> Double? {
        guard master.stderr.waitFor(needle, timeout: 30) else { return nil }
        return Clock.now - since
    }

    static func report(_ name: String, detected: Double?, _ run: MasterRun) {
        let seconds = detected.map { String(format: "%.2f s", $0) } ?? "not detected"
        print("virtual cluster, \(name): detected in \(seconds), master exit \(run.status); master's stderr:\n\(run.stderr)")
    }

    /// Waits for the master to end, prints the case, and checks it exited 69 saying `says`
    /// within the generous bound.
    @discardableResult
    static func finish(_ master: TestProcess, _ name: String, detected: Double?, says: String, sourceLocation: SourceLocation = #_sourceLocation)
        -> MasterRun
    {
        let run = TestProcess.run(master)
        report(name, detected: detected, run)
        #expect(run.status == ExitCode.unavailable, sourceLocation: sourceLocation)
        #expect(run.stderr.contains(says), "\(run.stderr)", sourceLocation: sourceLocation)
        #expect((detected ?? 99) < 30, sourceLocation: sourceLocation)
        return run
    }

    static func expectClean(
        _ cluster: VirtualCluster, _ hosts: [Int], markers: [String] = [": finished"], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for index in hosts {
            let left = cluster.waitClean(index, markers: markers)
            #expect(left.isEmpty, "host \(index) still has: \(left)", sourceLocation: sourceLocation)
        }
    }

    /// Starts an `exec` job of `sleeper(seconds)`, signals a worker once every rank has started,
    /// and returns the master and how long until it printed `needle` (nil: the ranks did not start).
    static func signalMidJob(
        _ cluster: VirtualCluster, worker: Int, _ signal: Int32, sleeping seconds: Int, awaiting needle: String
    ) throws -> (TestProcess, Double?)? {
        let master = try cluster.startMaster("exec", ["--", sleeper(seconds)])
        guard waitStarted(master) else { return nil }
        let signalledAt = Clock.now
        cluster.workers[worker].process.signal(signal)
        return (master, detection(master, needle, since: signalledAt))
    }

    /// Takes host 3's link down under a running `run` job: the master reports it and ends the
    /// job, and host 3's worker ends its part on its own (the lease). Prints both times.
    static func cutOffHost3(_ cluster: VirtualCluster, _ master: TestProcess, _ name: String) throws {
        let cutAt = Clock.now
        try cluster.setLink(3, up: false)
        let detected = detection(master, "stopped answering", since: cutAt)
        let leaseEnded = cluster.workers[3].process.stderr.waitFor("the lease", timeout: 30) ? Clock.now - cutAt : nil
        finish(master, name, detected: detected, says: "node \(cluster.workers[3].peer): stopped answering")
        print(
            "virtual cluster, \(name): the cut-off worker ended its part (lease) after \(leaseEnded.map { String(format: "%.2f s", $0) } ?? "never")")
        #expect((leaseEnded ?? 99) < 30)
    }

    @Test func aJobRunsAcrossFourHosts() async throws {
        try await Self.onCluster { cluster in
            let run = TestProcess.run(try cluster.startMaster("exec", ["-q", "--", "echo $DISTR_HOST"]))
            #expect(run.status == 0, "\(run.stderr)")
            #expect(run.stdoutLines.sorted() == cluster.workers.enumerated().map { "[\($0.offset)] \($0.element.peer)" })
            Self.expectClean(cluster, [0, 1, 2, 3])
        }
    }

    @Test func workerKilledMidJob_isReportedAndTheJobEndedEverywhere() async throws {
        try await Self.onCluster { cluster in
            let master = try cluster.startMaster("run", ["--", "/bin/sh", "-c", Self.sleeper(60)])
            guard Self.waitStarted(master) else { return }
            let ranks = cluster.leftoverProcesses(2)
            let killedAt = Clock.now
            cluster.workers[2].process.signal(SIGKILL)
            let detected = Self.detection(master, "node \(cluster.workers[2].peer)", since: killedAt)
            Self.finish(master, "kill -9 a worker mid-job (run)", detected: detected, says: "node \(cluster.workers[2].peer): connection lost")
            Self.expectClean(cluster, [0, 1, 3])
            // The killed worker's sentinel ends its ranks; a new worker reclaims its directory.
            for pid in ranks { #expect(Processes.waitGone(pid, timeout: 15), "rank process \(pid) of the killed worker") }
            try cluster.restartWorker(2)
            #expect(cluster.leftovers(2).isEmpty, "\(cluster.leftovers(2))")
        }
    }

    @Test func workerFrozenMidJob_isReportedAsStoppedAnswering() async throws {
        try await Self.onCluster { cluster in
            guard let (master, detected) = try Self.signalMidJob(cluster, worker: 1, SIGSTOP, sleeping: 7, awaiting: "stopped answering")
            else { return }
            let run = Self.finish(
                master, "SIGSTOP a worker mid-job (exec)", detected: detected,
                says: "node \(cluster.workers[1].peer): stopped answering: no heartbeat for")
            cluster.workers[1].process.signal(SIGCONT)
            // exec: the other nodes' results are still printed.
            #expect(run.stdoutLines.filter { $0.hasSuffix(" done") }.sorted() == ["[0] done", "[2] done", "[3] done"], "\(run.stdout)")
            Self.expectClean(cluster, [0, 1, 2, 3])
        }
    }

    @Test func hostCutOffDuringASilentJob_isReportedAndItsWorkerEndsTheJob() async throws {
        try await Self.onCluster { cluster in
            let master = try cluster.startMaster("run", ["--", "/bin/sh", "-c", Self.sleeper(60)])
            guard Self.waitStarted(master) else { return }
            try Self.cutOffHost3(cluster, master, "link down mid-job, silent job (run)")
            Self.expectClean(cluster, [0, 1, 2, 3])
            // The link comes back: the whole cluster works again.
            try cluster.setLink(3, up: true)
            let again = TestProcess.run(try cluster.startMaster("exec", ["-q", "--", "echo back"]))
            #expect(again.status == 0, "\(again.stderr)")
            #expect(again.stdoutLines.sorted() == (0..<4).map { "[\($0)] back" })
        }
    }

    @Test func hostCutOffWhileItsOutputFloods_isReportedAndItsWorkerEndsTheJob() async throws {
        try await Self.onCluster { cluster in
            // Rank 3 writes as fast as it can (its socket to the master fills once cut off); the
            // master's stdout goes to /dev/null so the test does not hold the flood.
            let script = "echo started >&2; if [ \"$DISTR_RANK\" = 3 ]; then exec yes 0123456789abcdef; else exec sleep 60; fi"
            let master = try TestProcess(
                cluster.exec(in: cluster.master) + [
                    "/bin/sh", "-c", "exec \"$0\" \"$@\" >/dev/null", Binaries.master, "run", "--peers", cluster.peersFile,
                    "--secret-file", cluster.secretFile, "--", "/bin/sh", "-c", script,
                ], directory: cluster.root.path)
            guard Self.waitStarted(master, stream: \.stderr) else { return }
            try Self.cutOffHost3(cluster, master, "link down mid-job, chatty job (run)")
            Self.expectClean(cluster, [0, 1, 2, 3])
        }
    }

    /// Limits the master's links towards `ports` to 2 Mbit/s, so that a 4 MB upload lasts about
    /// 16 s. False (with a message) where tc cannot shape.
    static func shape(_ cluster: VirtualCluster, ports: [Int]) throws -> Bool {
        for port in ports {
            try NamespaceHosts.ip(["-n", cluster.master, "link", "set", "port\(port)", "up"])
            let shaped = TestProcess.run(
                try TestProcess([
                    "tc", "-n", cluster.master, "qdisc", "add", "dev", "port\(port)", "root", "tbf", "rate", "2mbit", "burst", "32kb",
                    "latency", "400ms",
                ]))
            guard shaped.status == 0 else {
                print("virtual cluster, upload: skipped, tc cannot shape the link: \(shaped.stderr)")
                return false
            }
        }
        return true
    }

    /// Ships a 4 MB file with `subcommand` and takes host 3's link down once its upload has begun
    /// (host 3 has made the job's directory). Returns the master and how long detection took.
    static func cutHost3DuringUpload(_ cluster: VirtualCluster, _ subcommand: String, _ command: String) throws -> (TestProcess, Double?) {
        try FileIO.write(cluster.root.path + "/big.bin", [UInt8](repeating: 7, count: 4 << 20), mode: 0o644, exclusive: false)
        let master = try cluster.startMaster(subcommand, ["--file", cluster.root.path + "/big.bin", "--", command])
        let began = Deadline.after(30)
        while cluster.leftovers(3).isEmpty && !began.hasPassed { Deadline.pause(0.01) }
        let cutAt = Clock.now
        try cluster.setLink(3, up: false)
        return (master, Self.detection(master, "stopped answering", since: cutAt))
    }

    @Test func hostCutOffDuringUpload_isReportedAndLeavesNothing() async throws {
        try await Self.onCluster { cluster in
            // 2 Mbit/s towards host 3 makes a 4 MB upload last about 16 s.
            guard try Self.shape(cluster, ports: [3]) else { return }
            let (master, detected) = try Self.cutHost3DuringUpload(cluster, "exec", "echo started")
            Self.finish(
                master, "link down during upload (exec, 4 MB)", detected: detected, says: "node \(cluster.workers[3].peer): stopped answering")
            // The others had the job ready (or were still receiving it) when it was cancelled.
            Self.expectClean(cluster, [0, 1, 2], markers: ["not started"])
            Self.expectClean(cluster, [3], markers: ["the lease"])
        }
    }

    /// `run` loses a host during the upload: the uploads to the other hosts stop at the cancel
    /// instead of running to their end first. Every link is shaped so that each upload lasts
    /// about 16 s, far longer than detection (5 s): a finished upload would leave the file in
    /// that worker's cache.
    @Test func hostCutOffDuringUpload_run_stopsTheOtherUploads() async throws {
        try await Self.onCluster { cluster in
            guard try Self.shape(cluster, ports: [0, 1, 2, 3]) else { return }
            let (master, detected) = try Self.cutHost3DuringUpload(cluster, "run", "/bin/true")
            let run = Self.finish(
                master, "link down during upload (run, 4 MB to each host)", detected: detected,
                says: "node \(cluster.workers[3].peer): stopped answering")
            #expect(run.stderr.contains("ending the job on every node"), "\(run.stderr)")
            // Each abandons the job at the cancel, or at a reset of the connection that overtook
            // the cancel on the shaped link (seen once in a run under heavy load). Either way the
            // job is removed.
            Self.expectClean(cluster, [0, 1, 2], markers: ["not started", "the master connection ended before the job started"])
            for index in 0..<3 {
                let cache = cluster.root.path + "/work\(index)/.distr-cache"
                let cached = ((try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []).filter { $0.count == 64 }  // None made: empty.
                #expect(cached.isEmpty, "host \(index) received the whole file although the job was cancelled: \(cached)")
            }
            Self.expectClean(cluster, [3], markers: ["the lease"])
        }
    }

    @Test func workerShutDownMidJob_isReportedAsSuch() async throws {
        try await Self.onCluster { cluster in
            guard
                let (master, detected) = try Self.signalMidJob(
                    cluster, worker: 0, SIGTERM, sleeping: 60, awaiting: "shut down during the job")
            else { return }
            // The other nodes run on (exec); end them.
            master.signal(SIGINT)
            let run = TestProcess.run(master)
            Self.report("SIGTERM to a worker mid-job (exec)", detected: detected, run)
            #expect(run.stderr.contains("node \(cluster.workers[0].peer): shut down during the job"), "\(run.stderr)")
            #expect((detected ?? 99) < 30)
            Self.expectClean(cluster, [1, 2, 3])
            #expect(cluster.leftovers(0).isEmpty, "\(cluster.leftovers(0))")
        }
    }

    @Test func listenerThatNeverAnswers_isReportedAtTheConnectTimeout() async throws {
        try await Self.onCluster(hostCount: 1) { cluster in
            // Accepts connections and never says a word.
            let silent = try TestProcess(
                cluster.exec(in: cluster.hosts[0]) + [
                    "python3", "-c",
                    "import socket,sys,time\ns=socket.socket();s.bind(('\(cluster.addresses[0])',0));s.listen()\nprint(s.getsockname()[1],flush=True)\nc=s.accept()\ntime.sleep(120)",
                ])
            defer {
                silent.signal(SIGKILL)
                silent.wait()
            }
            guard silent.stdout.waitFor("\n", timeout: 20), let port = Int(silent.stdout.text.split(separator: "\n")[0]) else {
                Issue.record("the silent listener did not start: \(silent.stderr.text)")
                return
            }
            let startedAt = Clock.now
            let master = try TestProcess(
                cluster.exec(in: cluster.master) + [
                    Binaries.master, "exec", "--hosts", "\(cluster.addresses[0]):\(port)", "--secret-file", cluster.secretFile, "--", "true",
                ])
            let run = TestProcess.run(master)
            let detected = Clock.now - startedAt
            Self.report("a listener that accepts and never answers", detected: detected, run)
            #expect(run.status == ExitCode.unavailable)
            #expect(run.stderr.contains("no handshake answer within"), "\(run.stderr)")
            #expect(detected < 30)
        }
    }
}
