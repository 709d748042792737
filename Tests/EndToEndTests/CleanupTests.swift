import Foundation
import Testing

@testable import DistrCore

/// What a job leaves behind when its processes hide, or its worker dies.
@Suite(.hangGuard) struct CleanupTests {
    init() { Signals.ignorePipe() }

    /// Runs `command` with `exec` on a one-worker cluster and returns the master (still running)
    /// once it has printed `ready`, with the pids the command printed as `NAME PID` lines.
    private func startJob(_ cluster: TestCluster, _ command: String) throws -> (TestProcess, [String: pid_t]) {
        let master = try cluster.startMaster(["exec", "--", command])
        try #require(master.stdout.waitFor("] ready"), "\(master.stdout.text) \(master.stderr.text)")
        var pids: [String: pid_t] = [:]
        for line in master.stdout.text.split(separator: "\n") {
            let words = line.split(separator: " ")
            if words.count == 3, let pid = pid_t(words[2]) { pids[String(words[1])] = pid }
        }
        return (master, pids)
    }

    /// A one-worker cluster running `hiding`, and its worker's sentinel.
    private func startHidingJobOnOneWorker() throws -> (TestCluster, TestProcess, [String: pid_t], sentinel: pid_t) {
        let cluster = try TestCluster(workers: 1)
        let (master, pids) = try startJob(cluster, Self.hiding)
        try #require(pids.count == 3, "\(pids)")
        let sentinels = Processes.children(of: cluster.workers[0].process.pid).filter(Processes.isWorker)
        try #require(sentinels.count == 1)
        return (cluster, master, pids, sentinels[0])
    }

    /// Every process of the dead worker's job ends, its sentinel says so, and nothing is left.
    private func expectReclaimedBySentinel(_ cluster: TestCluster, _ pids: [String: pid_t], sourceLocation: SourceLocation = #_sourceLocation) {
        let worker = cluster.workers[0]
        for (name, pid) in pids { #expect(Processes.waitGone(pid), "\(name) \(pid) outlived its worker", sourceLocation: sourceLocation) }
        #expect(worker.process.stderr.waitFor("sentinel: reclaimed job"), "\(worker.process.stderr.text)", sourceLocation: sourceLocation)
        #expect(cluster.leftoverJobDirectories.isEmpty, "\(cluster.leftoverJobDirectories)", sourceLocation: sourceLocation)
    }

    private static let hiding =
        "sleep 1000 & echo background $!; env -i /bin/sh -c 'cd /; setsid sleep 1001 & echo escaped $!'; echo rank $$; echo ready; wait"

    @Test func emptiedJobDirectory_isTheNextJobsDirectory_andOneAJobOpenedIsRemoved() throws {
        try withTestCluster(workers: 1) { cluster in
            let area = cluster.workers[0].workDirectory + "/.distr-spare"
            func kept(_ prefix: String) -> [String] {
                ((try? FileManager.default.contentsOfDirectory(atPath: area)) ?? []).filter { $0.hasPrefix(prefix) }  // No area: none kept.
            }
            #expect(try cluster.master(["exec", "--", "true"]).status == 0)
            // The master returns once the worker has cleaned up: the directory and the record are kept.
            let directory = try #require(kept("d-").first, "no directory kept")
            #expect(kept("f-").count == 1)
            let inode = try FileStatus(path: area + "/" + directory).inode
            let second = try cluster.master(["exec", "--", "stat", "-c", "%i", "."])
            #expect(second.stdout == "[0] \(inode)\n", "\(second.stdout) \(second.stderr)")
            // A directory its job opened to others is not handed to another job.
            #expect(try cluster.master(["exec", "--", "chmod", "755", "."]).status == 0)
            #expect(kept("d-").isEmpty)
            #expect(cluster.leftoverJobDirectories.isEmpty, "\(cluster.leftoverJobDirectories)")
        }
    }

    /// The worker writes a job's record before it answers the job (and before it makes the
    /// job's directory): a crash at any point after that leaves nothing that no record names.
    /// The record's file is made a FIFO here, so the worker blocks writing the record until
    /// the test reads it; meanwhile the master must have heard nothing.
    @Test func jobRecord_isWrittenBeforeTheWorkerAnswersTheJob() throws {
        // The lease must not end the job while the test holds its record's write.
        let cluster = try TestCluster(workers: 1, workerArguments: ["--master-timeout", "60"])
        let worker = cluster.workers[0]
        let jobID = "recordfirst" + randomBytes(4).hex
        let part = worker.workDirectory + "/.distr-jobs/.part-" + jobID
        guard mkfifo(part, 0o600) == 0 else { throw SystemError("mkfifo \(part)", errno: errno) }
        let secret = try ClusterSecret.load(path: cluster.secretFile)
        let fd = try TCPSocket.connect(host: "127.0.0.1", port: worker.port, timeout: 5)
        let connection = try Connection.client(fd: fd, peer: "test", key: secret, kind: .control, timeout: 5)
        defer { connection.close() }
        let spec = JobSpec(
            jobID: jobID, arguments: ["true"], environment: [], localRanks: [0],
            placements: [RankPlacement(rank: 0, host: "127.0.0.1", port: worker.port, worker: 0, label: "w0")], keepDirectory: false,
            jobKey: randomBytes(32), manifest: [], workerIndex: 0)
        try connection.send(.jobStart(spec))
        // A thread of the worker waits in the FIFO's open for a reader: the record's write. Where
        // the kernel does not name wait channels, a thread in openat (x86-64 257, arm64 56)
        // stands for it; one caught in another open only makes the check below come early.
        func blockedOnTheRecord() -> Bool {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(worker.process.pid)/task")) ?? []  // Gone: not blocked.
            return tasks.contains { task in
                let base = "/proc/\(worker.process.pid)/task/\(task)/"
                let wchan = (try? String(contentsOfFile: base + "wchan", encoding: .utf8)) ?? ""  // Gone: not it.
                if wchan == "wait_for_partner" { return true }
                guard wchan.isEmpty || wchan == "0" else { return false }
                let call = (try? String(contentsOfFile: base + "syscall", encoding: .utf8)) ?? ""  // Gone or not readable: not it.
                return call.hasPrefix("257 ") || call.hasPrefix("56 ")
            }
        }
        let bound = Deadline.after(60)
        while !blockedOnTheRecord() {
            try #require(!bound.hasPassed, "the worker never opened the record's file")
            Deadline.pause(0.005)
        }
        // What the worker has sent by now, heartbeats aside: nothing.
        func answer(idle: Deadline) throws -> ControlMessage? {
            while true {
                do {
                    let message = try connection.receiveMessage(idle: idle)
                    if message != .workerHeartbeat { return message }
                } catch WireError.stalled { return nil }
            }
        }
        let early = try answer(idle: .after(0))
        #expect(early == nil, "the worker answered the job (\(String(describing: early))) before its record was written")
        let reader = open(part, O_RDONLY | O_CLOEXEC)
        try #require(reader >= 0)
        var text: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try FD.read(reader, into: &buffer)
            if n == 0 { break }
            text += buffer[0..<n]
        }
        FD.close(reader)
        let record = try #require(JobRecord(text: String(decoding: text, as: UTF8.self)), "\(String(decoding: text, as: UTF8.self))")
        // A FIFO cannot be cut to length: this record's write fails, and the job goes on.
        let ready = try early ?? answer(idle: .after(60))
        guard case .jobReady(let directory) = ready else {
            Issue.record("expected jobReady, got \(String(describing: ready))")
            return
        }
        #expect(record.jobID == jobID)
        #expect(record.directory == directory)
        connection.close()
        #expect(worker.process.stderr.waitFor("the master connection ended before the job started"))
        #expect(!FileIO.exists(part))
        #expect(cluster.leftoverJobDirectories.isEmpty, "\(cluster.leftoverJobDirectories)")
    }

    /// A worker killed while a job's files arrive leaves a directory that its record names: the
    /// sentinel removes it (before the record came first, nothing named it until `jobReady`).
    @Test func workerKilledWhileFilesArrive_itsSentinelRemovesTheJobsDirectory() throws {
        let cluster = try TestCluster(workers: 1, workerArguments: ["--master-timeout", "60"])
        let worker = cluster.workers[0]
        let secret = try ClusterSecret.load(path: cluster.secretFile)
        let fd = try TCPSocket.connect(host: "127.0.0.1", port: worker.port, timeout: 5)
        let connection = try Connection.client(fd: fd, peer: "test", key: secret, kind: .control, timeout: 5)
        defer { connection.close() }
        let spec = JobSpec(
            jobID: "shipping" + randomBytes(4).hex, arguments: ["true"], environment: [], localRanks: [0],
            placements: [RankPlacement(rank: 0, host: "127.0.0.1", port: worker.port, worker: 0, label: "w0")], keepDirectory: false,
            jobKey: randomBytes(32),
            manifest: [ManifestEntry(path: "data", mode: 0o644, size: 100, digest: SHA256.hash([UInt8](repeating: 7, count: 100)))],
            workerIndex: 0)
        try connection.send(.jobStart(spec))
        var answer = try connection.receiveMessage(idle: .after(60))
        while answer == .workerHeartbeat { answer = try connection.receiveMessage(idle: .after(60)) }
        #expect(answer == .filesNeeded([0]))
        // The worker waits for the file's bytes in the job's directory.
        #expect(cluster.leftoverJobDirectories.contains { $0.contains("/distr-shipping") }, "\(cluster.leftoverJobDirectories)")
        kill(worker.process.pid, SIGKILL)
        #expect(worker.process.stderr.waitFor("sentinel: reclaimed job \(spec.jobID)"), "\(worker.process.stderr.text)")
        #expect(cluster.leftoverJobDirectories.isEmpty, "\(cluster.leftoverJobDirectories)")
    }

    @Test func killedWorker_takesItsRanksAlong_andItsSentinelEndsTheRest() throws {
        let cluster = try TestCluster(workers: 1)
        let (master, pids) = try startJob(cluster, Self.hiding)
        try #require(pids.count == 3, "\(pids)")
        kill(cluster.workers[0].process.pid, SIGKILL)
        expectReclaimedBySentinel(cluster, pids)
        let run = TestProcess.run(master)
        #expect(run.status == 69, "\(run.stderr)")
    }

    @Test func workerKilledDuringAJob_failsTheOtherRanksReceivesInsteadOfHanging() throws {
        let cluster = try TestCluster(workers: 2)
        // --keep-going: no fail-fast to end the job; the lost node's ranks must be reported gone.
        let master = try cluster.startMaster(["run", "--keep-going", Binaries.example("distr-check"), "lost-node"])
        try #require(master.stdout.waitFor("[0] ready") && master.stdout.waitFor("[1] waiting"), "\(master.stderr.text)")
        kill(cluster.workers[1].process.pid, SIGKILL)
        let run = TestProcess.run(master, timeout: 30)
        #expect(run.stdout.contains("[0] ok failed: rank 1 has exited (status 255)"), "\(run.stdout) \(run.stderr)")
        #expect(run.status == 69)
        #expect(run.stderr.contains("node \(cluster.workers[1].peer): connection lost during the job"), "\(run.stderr)")
    }

    @Test func sentinelOfAKilledWorker_leavesTheSameJobsRanksOnOtherWorkersAlone() throws {
        // Two workers on one host run ranks of the same job (same DISTR_JOB_ID).
        let cluster = try TestCluster(workers: 2)
        let master = try cluster.startMaster(["exec", "--", "echo rank $$; echo ready; exec sleep 1000"])
        try #require(master.stdout.waitFor(count: 2, of: "ready"), "\(master.stdout.text) \(master.stderr.text)")
        var pids: [Int: pid_t] = [:]
        for line in master.stdout.text.split(separator: "\n") where line.contains(" rank ") {
            if let rank = Int(line.dropFirst().prefix { $0 != "]" }), let pid = pid_t(line.split(separator: " ").last ?? "") {
                pids[rank] = pid
            }
        }
        try #require(pids.count == 2, "\(master.stdout.text)")
        kill(cluster.workers[1].process.pid, SIGKILL)
        #expect(cluster.workers[1].process.stderr.waitFor("sentinel: reclaimed job"))
        #expect(Processes.waitGone(pids[1] ?? -1))
        #expect(!Processes.waitGone(pids[0] ?? -1, timeout: 0.3), "the other worker's rank was ended by this one's sentinel")
        master.signal(SIGINT)
        _ = TestProcess.run(master)
    }

    /// A terminal's hangup goes to the worker's whole process group, its sentinel included.
    @Test func hungUpWorker_isCleanedUpAfterByItsSentinel() throws {
        let (cluster, master, pids, sentinel) = try startHidingJobOnOneWorker()
        kill(sentinel, SIGHUP)
        kill(cluster.workers[0].process.pid, SIGHUP)
        expectReclaimedBySentinel(cluster, pids)
        _ = TestProcess.run(master)
    }

    @Test func restartedWorker_reclaimsWhatAKilledWorkerAndSentinelLeft() throws {
        let (cluster, master, pids, sentinel) = try startHidingJobOnOneWorker()
        let worker = cluster.workers[0]
        // The sentinel goes first, so nothing cleans up until a worker starts again.
        kill(sentinel, SIGKILL)
        #expect(Processes.waitGone(sentinel))
        kill(worker.process.pid, SIGKILL)
        #expect(Processes.waitGone(pids["rank"] ?? -1), "the rank outlived its killed worker")
        #expect(!Processes.waitGone(pids["escaped"] ?? -1, timeout: 0.2), "nothing should have ended it yet")
        _ = TestProcess.run(master)

        let restarted = try TestWorker(secretFile: cluster.secretFile, workDirectory: worker.workDirectory)
        defer { restarted.stop() }
        #expect(restarted.process.stderr.waitFor("reclaimed job"))
        for (name, pid) in pids { #expect(Processes.waitGone(pid), "\(name) \(pid) was not reclaimed") }
        #expect(cluster.leftoverJobDirectories.isEmpty, "\(cluster.leftoverJobDirectories)")
    }

    /// With a cgroup per job, and without one (the subreaper sweep finds it by elimination).
    @Test(arguments: [[], ["--no-cgroups"]])
    func processThatDropsItsEnvironmentAndDirectoryTwelveSessionsDeep_isEndedWithTheJob(workerArguments: [String]) throws {
        let cluster = try TestCluster(workers: 1, workerArguments: workerArguments)
        // Each level starts the next in a new session and exits; the last drops DISTR_JOB_ID
        // and leaves the job directory, then tells the rank its pid.
        try cluster.root.write(
            "escape.sh",
            """
            if [ "$1" -gt 0 ]; then setsid /bin/sh "$DISTR_JOB_DIR/escape.sh" $(( $1 - 1 )) & exit 0; fi
            echo $$ > "$DISTR_JOB_DIR/leaf.pid.tmp" && mv "$DISTR_JOB_DIR/leaf.pid.tmp" "$DISTR_JOB_DIR/leaf.pid"
            cd / && exec env -i sleep 1000
            """)
        let run = try cluster.master([
            "exec", "--file", cluster.root.path + "/escape.sh", "--",
            "/bin/sh escape.sh 12; while [ ! -f leaf.pid ]; do sleep 0.01; done; echo leaf $(cat leaf.pid)",
        ])
        #expect(run.status == 0, "\(run.stderr)")
        let leaf = try #require(run.stdoutLines.first.flatMap { pid_t($0.split(separator: " ").last ?? "") }, "\(run.stdout)")
        #expect(Processes.waitGone(leaf), "the escaped process \(leaf) outlived its job")
    }
}

/// A worker that is not root cannot remove what it cannot read: the directory removal must fix
/// permissions first. Run as `nobody` through setpriv (needs root to start).
@Suite(.hangGuard) struct UnprivilegedCleanupTests {
    static let canDropPrivileges = getuid() == 0 && FileIO.exists("/usr/bin/setpriv")

    @Test(.enabled(if: canDropPrivileges, "needs root and setpriv"))
    func rankThatLocksItsDirectory_isCleanedUpByAnUnprivilegedWorker() throws {
        let root = try TemporaryDirectory()
        chmod(root.path, 0o711)
        let work = root.path + "/work"
        let secret = root.path + "/secret"
        try FileIO.makeDirectories(work)
        try ClusterSecret.generate(path: secret)
        for path in [work, secret] { chown(path, 65534, 65534) }
        let worker = try TestWorker(
            secretFile: secret, workDirectory: work, prefix: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        defer { worker.stop() }
        // A tree with a locked subdirectory, deeper than a few levels, and the job directory
        // itself made unreadable and unwritable.
        let run = try TestProcess.master([
            "exec", "--hosts", worker.peer, "--secret-file", secret, "--",
            "mkdir -p a/b/c/d && touch a/b/c/d/f && chmod 000 a/b a && chmod 000 . && echo locked",
        ])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout == "[0] locked\n")
        #expect(worker.process.stderr.waitFor(": finished"))
        let left = (try? FileManager.default.contentsOfDirectory(atPath: work))?.filter { !$0.hasPrefix(".distr-") } ?? []
        #expect(left.isEmpty, "left behind: \(left); worker log: \(worker.process.stderr.text)")
        #expect(!worker.process.stderr.text.contains("could not remove"), "\(worker.process.stderr.text)")
    }
}
