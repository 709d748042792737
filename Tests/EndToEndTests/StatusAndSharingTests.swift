import Foundation
import Testing

@testable import DistrCore

/// `distr-master status`, version mismatch at `run`, `--max-jobs`, and several masters at once.
@Suite struct StatusAndSharingTests {
    /// Writes a line into `fifo`, waiting (open blocks) until the rank that reads it has opened it.
    func release(_ fifo: String) throws {
        let fd = open(fifo, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open \(fifo)", errno: errno) }
        defer { close(fd) }
        try FD.writeAll(fd, Array("go\n".utf8))
    }

    func makeFifo(_ path: String) throws {
        guard mkfifo(path, 0o600) == 0 else { throw SystemError("mkfifo \(path)", errno: errno) }
    }

    @Test(.hangGuard)
    func status_namesTheUsableTheDeadTheWrongSecretAndTheOldPeer() throws {
        try withTestCluster(workers: 1) { cluster in
            let otherSecret = cluster.root.path + "/other-secret"
            try ClusterSecret.generate(path: otherSecret)
            let wrong = try TestWorker(secretFile: otherSecret, workDirectory: cluster.root.path + "/wrong")
            defer { wrong.stop() }
            let old = try TestWorker(
                secretFile: cluster.secretFile, workDirectory: cluster.root.path + "/old", environment: ["DISTR_TEST_PROTOCOL_VERSION": "1"])
            defer { old.stop() }
            // A worker that has gone: nothing listens on its port any more.
            let dead = try TestWorker(secretFile: cluster.secretFile, workDirectory: cluster.root.path + "/dead")
            dead.stop()
            let good = cluster.workers[0].peer
            let hosts = [good, dead.peer, wrong.peer, old.peer]
            let run = try TestProcess.master(["status", "--hosts", hosts.joined(separator: ","), "--secret-file", cluster.secretFile])
            #expect(run.status == 69, "\(run.stdout)\(run.stderr)")
            let lines = run.stdoutLines
            try #require(lines.count == 6, "\(run.stdout)")
            #expect(lines[0].hasPrefix("PEER"))
            #expect(lines[1].hasPrefix(good) && lines[1].contains(" ok ") && lines[1].contains("/p\(Handshake.version)"))
            #expect(lines[1].hasSuffix("127.0.0.1:" + (lines[1].split(separator: ":").last.map(String.init) ?? "")))
            #expect(lines[2].hasPrefix(dead.peer) && lines[2].contains("refused") && lines[2].contains("connection refused at \(dead.peer)"))
            #expect(lines[3].hasPrefix(wrong.peer) && lines[3].contains("wrong secret"))
            #expect(
                lines[4].hasPrefix(old.peer)
                    && lines[4].contains(
                        "node \(old.peer) runs distr protocol 1, this master speaks \(Handshake.version): upgrade distr-worker on \(old.peer)")
            )
            #expect(lines[5] == "1 of 4 peers usable")

            let json = try TestProcess.master(["status", "--json", "--hosts", good, "--secret-file", cluster.secretFile])
            #expect(json.status == 0, "\(json.stderr)")
            #expect(json.stdout.contains("\"usable\": 1,\n  \"total\": 1,\n  \"peers\": ["))
            #expect(json.stdout.contains("\"peer\": \"\(good)\", \"usable\": true"))
            #expect(json.stdout.contains("\"work_dir\": \"\(cluster.workers[0].workDirectory)\""))
        }
    }

    @Test(.hangGuard)
    func run_refusesAMismatchedWorker_namingTheSideToUpgrade() throws {
        try withTemporaryDirectory { root in
            let secret = root.path + "/secret"
            try ClusterSecret.generate(path: secret)
            let old = try TestWorker(secretFile: secret, workDirectory: root.path + "/old", environment: ["DISTR_TEST_PROTOCOL_VERSION": "1"])
            defer { old.stop() }
            let newer = try TestWorker(
                secretFile: secret, workDirectory: root.path + "/new", environment: ["DISTR_TEST_PROTOCOL_VERSION": "\(Handshake.version + 1)"])
            defer { newer.stop() }
            let run = try TestProcess.master(["exec", "--hosts", "\(old.peer),\(newer.peer)", "--secret-file", secret, "echo", "hi"])
            #expect(run.status == 69)
            let v = Handshake.version
            #expect(
                run.stderr.contains("distr: node \(old.peer) runs distr protocol 1, this master speaks \(v): upgrade distr-worker on \(old.peer)\n"))
            #expect(
                run.stderr.contains(
                    "distr: node \(newer.peer) runs distr protocol \(v + 1), this master speaks \(v): upgrade distr-master on this machine\n"))
            #expect(!run.stdout.contains("hi"))
            // The worker logs the refusal with the side to upgrade too.
            #expect(old.process.stderr.waitFor("this worker speaks 1: upgrade distr-worker here"))
        }
    }

    /// A worker with `--max-jobs 1` whose slot is held by a first job until `fifo` is written.
    func withOneSlotHeld(_ body: (TestCluster, TestProcess, String) throws -> Void) throws {
        try withTestCluster(workers: 1, workerArguments: ["--max-jobs", "1"]) { cluster in
            let fifo = cluster.root.path + "/go"
            try makeFifo(fifo)
            let first = try cluster.startMaster(["exec", "echo first-started; read x < \(fifo); echo first-done"])
            #expect(first.stdout.waitFor("first-started"))
            try body(cluster, first, fifo)
        }
    }

    @Test(.hangGuard)
    func maxJobs1_secondMasterWaitsSaysForWhomThenRuns() throws {
        try withOneSlotHeld { cluster, first, fifo in
            // While the first job holds the only slot, status shows it.
            let status = try cluster.master(["status"])
            #expect(status.status == 0)
            #expect(status.stdoutLines.count == 3 && status.stdoutLines[1].contains(" 1/1 "), "\(status.stdout)")

            let second = try cluster.startMaster(["exec", "echo second-ran"])
            #expect(second.stderr.waitFor("distr: waiting for node \(cluster.workers[0].peer): it runs 1 job(s) (max-jobs 1); started by 127.0.0.1:"))
            #expect(!second.stdout.text.contains("second-ran"))
            try release(fifo)
            let firstRun = TestProcess.run(first)
            let secondRun = TestProcess.run(second)
            #expect(firstRun.status == 0 && firstRun.stdout.contains("first-done"), "\(firstRun.stderr)")
            #expect(secondRun.status == 0 && secondRun.stdout.contains("second-ran"), "\(secondRun.stderr)")
            #expect(secondRun.stderr.components(separatedBy: "waiting for node").count == 2, "said once: \(secondRun.stderr)")
            #expect(!firstRun.stderr.contains("waiting"))
        }
    }

    /// A queued master that is killed gives its place back while the first job still runs (it is
    /// not found only when its turn comes), and the next master waits behind the running job only.
    @Test(.hangGuard)
    func maxJobs1_aQueuedMasterThatLeaves_isNoticedWhileItWaits() throws {
        try withOneSlotHeld { cluster, first, fifo in
            let second = try cluster.startMaster(["exec", "echo second-ran"])
            #expect(second.stderr.waitFor("distr: waiting for node"))
            second.signal(SIGKILL)
            _ = TestProcess.run(second)
            let log = cluster.workers[0].process.stderr
            #expect(log.waitFor("its master left while the job waited for a slot"), "worker log: \(log.text)")
            #expect(!first.stdout.text.contains("first-done"), "noticed while the first job still ran")
            let third = try cluster.startMaster(["exec", "echo third-ran"])
            #expect(third.stderr.waitFor("distr: waiting for node \(cluster.workers[0].peer): it runs 1 job(s) (max-jobs 1)"))
            try release(fifo)
            #expect(TestProcess.run(first).status == 0)
            let thirdRun = TestProcess.run(third)
            #expect(thirdRun.status == 0 && thirdRun.stdout.contains("third-ran"), "\(thirdRun.stderr)")
            #expect(!log.text.contains("second-ran"))
        }
    }

    @Test(.hangGuard)
    func twoMastersAtOnceOnTheSameWorkers_eachGetsItsOwnOutput() throws {
        try withTestCluster(workers: 2) { cluster in
            for name in ["a-0", "a-1", "b-0", "b-1"] { try makeFifo(cluster.root.path + "/" + name) }
            func job(_ name: String) throws -> TestProcess {
                try cluster.startMaster([
                    "exec",
                    "echo \(name)-$DISTR_NODE_ID-started; read x < \(cluster.root.path)/\(name)-$DISTR_NODE_ID; echo \(name)-$DISTR_NODE_ID-done",
                ])
            }
            let a = try job("a")
            let b = try job("b")
            // Both jobs are running at once on both workers.
            #expect(a.stdout.waitFor(count: 2, of: "-started"))
            #expect(b.stdout.waitFor(count: 2, of: "-started"))
            for name in ["a-0", "a-1", "b-0", "b-1"] { try release(cluster.root.path + "/" + name) }
            let aRun = TestProcess.run(a)
            let bRun = TestProcess.run(b)
            #expect(aRun.status == 0 && bRun.status == 0, "\(aRun.stderr)\(bRun.stderr)")
            for rank in 0..<2 {
                #expect(aRun.stdout.contains("a-\(rank)-done") && bRun.stdout.contains("b-\(rank)-done"))
            }
            #expect(!aRun.stdout.contains("b-") && !bRun.stdout.contains("a-"))
        }
    }
}
