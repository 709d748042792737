import Foundation
import Testing

@testable import DistrCore

@Suite(.hangGuard) struct RobustnessTests {
    init() { Signals.ignorePipe() }

    @Test func wrongSecret_exits69NamingThePeer_andTheWorkerKeepsServing() throws {
        let cluster = try TestCluster(workers: 1)
        let other = try TemporaryDirectory()
        try ClusterSecret.generate(path: other.path + "/secret")
        let run = try TestProcess.master([
            "exec", "--hosts", cluster.workers[0].peer, "--secret-file", other.path + "/secret", "--", "echo should-not-run",
        ])
        #expect(run.status == 69)
        #expect(
            run.stderr.contains("node \(cluster.workers[0].peer): wrong secret: the worker at \(cluster.workers[0].peer) does not hold"),
            "\(run.stderr)")
        #expect(!run.stdout.contains("should-not-run"))
        #expect(cluster.workers[0].process.stderr.waitFor("refused connection from 127.0.0.1"))
        let good = try cluster.master(["exec", "--", "echo still-serving"])
        #expect(good.stdout == "[0] still-serving\n")
    }

    @Test func refusedPort_exits69WithinTheConnectTimeout() throws {
        let dir = try TemporaryDirectory()
        // Bound and never listening: connections are refused, and no one else can take the port.
        let (fd, address) = try TCPSocket.bind(host: "127.0.0.1", port: 0)
        defer { FD.close(fd) }
        let run = try TestProcess.master(
            ["exec", "--hosts", "127.0.0.1:\(address.port)", "--connect-timeout", "2", "--", "true"],
            environment: ["DISTR_SECRET_FILE": try secretFile(in: dir)])
        #expect(run.status == 69)
        #expect(run.stderr.contains("node 127.0.0.1:\(address.port): connection refused at 127.0.0.1:\(address.port)"), "\(run.stderr)")
    }

    @Test func silentPeer_exits69AfterTheConnectTimeout() throws {
        let dir = try TemporaryDirectory()
        // A socket that listens but never answers: the handshake must time out, not hang.
        let (fd, address) = try TCPSocket.listen(host: "127.0.0.1", port: 0)
        defer { FD.close(fd) }
        let run = try TestProcess.master(
            ["exec", "--hosts", "127.0.0.1:\(address.port)", "--connect-timeout", "0.5", "--", "true"],
            environment: ["DISTR_SECRET_FILE": try secretFile(in: dir)])
        #expect(run.status == 69)
        #expect(run.stderr.contains("no handshake answer within 0.5 s"), "\(run.stderr)")
    }

    @Test func garbageOnThePort_isLoggedAndTheWorkerKeepsServing() throws {
        let cluster = try TestCluster(workers: 1)
        for payload in ["GET / HTTP/1.0\r\n\r\n", String(repeating: "A", count: 10000), "DSTR\u{0}\u{9}"] {
            let fd = try TCPSocket.connect(host: "127.0.0.1", port: cluster.workers[0].port, timeout: 5)
            try? FD.writeAll(fd, Array(payload.utf8))
            var byte: UInt8 = 0
            TCPSocket.setReceiveTimeout(fd, seconds: 10)
            _ = read(fd, &byte, 1)
            FD.close(fd)
        }
        #expect(cluster.workers[0].process.stderr.waitFor("bad magic"))
        #expect(cluster.workers[0].process.stderr.waitFor("version mismatch"))
        let good = try cluster.master(["exec", "--", "echo alive"])
        #expect(good.stdout == "[0] alive\n")
    }

    @Test func forgedFrameAfterAValidHandshake_isDroppedAndTheWorkerKeepsServing() throws {
        let cluster = try TestCluster(workers: 1)
        let secret = try ClusterSecret.load(path: cluster.secretFile)
        let fd = try TCPSocket.connect(host: "127.0.0.1", port: cluster.workers[0].port, timeout: 5)
        let connection = try Connection.client(fd: fd, peer: "test", key: secret, kind: .control, timeout: 5)
        // A well-formed frame whose MAC is wrong.
        var frame = ByteWriter()
        frame.u32(5)
        frame.u8(1)
        frame.raw(Array("hello".utf8))
        frame.raw([UInt8](repeating: 0, count: 16))
        try FD.writeAll(connection.fd, frame.bytes)
        // The worker says why, then drops the connection.
        #expect(try connection.receiveMessage() == .failure(WireError.badMAC.description))
        #expect(throws: (any Error).self) { try connection.receiveMessage() }
        connection.close()
        #expect(cluster.workers[0].process.stderr.waitFor("integrity check"))
        let good = try cluster.master(["exec", "--", "echo alive"])
        #expect(good.stdout == "[0] alive\n")
    }

    @Test(arguments: [("../escape", [0]), ("", [0]), ("job", [5]), ("job", [0, 0])])
    func malformedJobDescription_isRefusedAndNothingIsCreated(jobID: String, localRanks: [Int]) throws {
        let cluster = try TestCluster(workers: 1)
        let secret = try ClusterSecret.load(path: cluster.secretFile)
        let fd = try TCPSocket.connect(host: "127.0.0.1", port: cluster.workers[0].port, timeout: 5)
        let connection = try Connection.client(fd: fd, peer: "test", key: secret, kind: .control, timeout: 5)
        defer { connection.close() }
        let spec = JobSpec(
            jobID: jobID, arguments: ["true"], environment: [], localRanks: localRanks,
            placements: [RankPlacement(rank: 0, host: "127.0.0.1", port: 1, worker: 0, label: "x")], keepDirectory: false,
            jobKey: randomBytes(32), manifest: [], workerIndex: 0)
        try connection.send(.jobStart(spec))
        guard case .failure(let reason) = try connection.receiveMessage() else {
            Issue.record("expected a refusal")
            return
        }
        #expect(reason.contains("malformed job id") || reason.contains("rank numbers"), "\(reason)")
        #expect(cluster.leftoverJobDirectories.isEmpty)
        #expect(!FileIO.exists(cluster.root.path + "/escape"))
    }

    /// A job id is held from its preparation until the job has ended: a second job of the same
    /// id is refused while the first runs, and leaves the first's record alone (both would be
    /// named by the id); once the first has ended, the id is free again.
    @Test func jobOfAnIdAlreadyRunning_isRefusedAndTheIdIsFreeOnceItEnded() throws {
        let cluster = try TestCluster(workers: 1)
        func startJob(_ arguments: [String]) throws -> (Connection, ControlMessage) {
            try Self.startJob(on: cluster, id: "samejob", arguments)
        }
        let (first, ready) = try startJob(["sleep", "60"])
        guard case .jobReady(let directory) = ready else {
            Issue.record("expected jobReady, got \(ready)")
            return
        }
        try first.send(.launch)
        let (second, refusal) = try startJob(["true"])
        second.close()
        guard case .failure(let reason) = refusal else {
            Issue.record("expected a refusal, got \(refusal)")
            return
        }
        #expect(reason.contains("job samejob is already running here"), "\(reason)")
        let record = String(decoding: try FileIO.readAll(cluster.workers[0].workDirectory + "/.distr-jobs/samejob"), as: UTF8.self)
        #expect(record.contains(directory), "\(record)")
        // The master goes: the worker ends the job, then logs its end.
        first.close()
        #expect(cluster.workers[0].process.stderr.waitFor(count: 1, of: "job samejob: finished"))
        let (third, again) = try startJob(["true"])
        third.close()
        guard case .jobReady = again else {
            Issue.record("expected jobReady once the first job ended, got \(again)")
            return
        }
    }

    /// A one-rank job of `id` sent to worker 0 as a master would (no files): the connection and
    /// the worker's first answer.
    static func startJob(on cluster: TestCluster, id: String, _ arguments: [String]) throws -> (Connection, ControlMessage) {
        let secret = try ClusterSecret.load(path: cluster.secretFile)
        let fd = try TCPSocket.connect(host: "127.0.0.1", port: cluster.workers[0].port, timeout: 5)
        let connection = try Connection.client(fd: fd, peer: "test", key: secret, kind: .control, timeout: 5)
        let spec = JobSpec(
            jobID: id, arguments: arguments, environment: [], localRanks: [0],
            placements: [RankPlacement(rank: 0, host: "127.0.0.1", port: 1, worker: 0, label: "x")], keepDirectory: false,
            jobKey: randomBytes(32), manifest: [], workerIndex: 0)
        try connection.send(.jobStart(spec))
        return (connection, try connection.receiveMessage())
    }

    /// A master that leaves after `jobReady` and before `launch` (another node failed, Ctrl-C):
    /// the worker lets go of everything the job held at once (its cgroup's descriptors, the
    /// control session, the connection) and waits for no ranks that never ran.
    @Test func masterLeavingBeforeLaunch_leavesNoDescriptors() throws {
        let cluster = try TestCluster(workers: 1)
        let worker = cluster.workers[0]
        _ = try cluster.master(["exec", "--", "true"])
        #expect(worker.process.stderr.waitFor(count: 1, of: ": finished"))
        let descriptorsBefore = Processes.descriptors(of: worker.process.pid).others
        for index in 0..<5 {
            let (connection, ready) = try Self.startJob(on: cluster, id: "ready\(index)", ["true"])
            connection.close()
            guard case .jobReady = ready else {
                Issue.record("job \(index): expected jobReady, got \(ready)")
                return
            }
        }
        #expect(worker.process.stderr.waitFor(count: 5, of: "the master connection ended before the job started"))
        // The session closes its connection just after that line: wait for it, bounded.
        let deadline = Clock.now + 5
        while Processes.descriptors(of: worker.process.pid).others != descriptorsBefore, Clock.now < deadline { Deadline.pause(0.01) }
        let after = Processes.descriptors(of: worker.process.pid)
        #expect(after.others == descriptorsBefore, "\(worker.process.stderr.text)")
        #expect(after.keptCgroups <= 2 * SpareControlGroups.limit)
        #expect(!worker.process.stderr.text.contains("still running"), "\(worker.process.stderr.text)")
        #expect(cluster.leftoverJobDirectories.isEmpty)
    }

    @Test func silentClient_timesOutInTheHandshakeAndIsLogged() throws {
        let cluster = try TestCluster(workers: 1, workerArguments: ["--handshake-timeout", "0.3"])
        let fd = try TCPSocket.connect(host: "127.0.0.1", port: cluster.workers[0].port, timeout: 5)
        defer { FD.close(fd) }
        try FD.writeAll(fd, Array("DSTR".utf8))
        // The worker gives up and closes: end of stream, not a hang.
        TCPSocket.setReceiveTimeout(fd, seconds: 10)
        var byte: UInt8 = 0
        #expect(read(fd, &byte, 1) == 0)
        #expect(cluster.workers[0].process.stderr.waitFor("the handshake was not completed within 0.3 s"))
    }

    @Test func clientTricklingBytes_isCutOffAtTheWholeHandshakeDeadline() throws {
        // One byte every 0.2 s keeps each read short; only a deadline for the whole handshake ends it.
        let cluster = try TestCluster(workers: 1, workerArguments: ["--handshake-timeout", "1"])
        let fd = try TCPSocket.connect(host: "127.0.0.1", port: cluster.workers[0].port, timeout: 5)
        defer { FD.close(fd) }
        var hello = Handshake.Client(key: randomBytes(32), kind: .control).hello.encoded()
        var cutOff = false
        while !hello.isEmpty {
            if (try? FD.writeAll(fd, [hello.removeFirst()])) == nil {
                cutOff = true
                break
            }
            // Has the worker hung up? Wait up to 0.2 s for the end of stream, then send the next byte.
            if try FD.waitReadable(fd, timeout: 200) {
                cutOff = true
                break
            }
        }
        #expect(cutOff, "the worker waited for the whole 41-byte hello at 5 bytes/s")
        #expect(cluster.workers[0].process.stderr.waitFor("the handshake was not completed within 1.0 s"))
    }

    @Test func manyConnectionsFromOneAddress_areRefusedAsBusyNotAsAWrongKey() throws {
        let cluster = try TestCluster(workers: 1)
        var idle: [Int32] = []
        defer { idle.forEach(FD.close) }
        for _ in 0..<Limits.default.maxPendingHandshakesPerSource {
            idle.append(try TCPSocket.connect(host: "127.0.0.1", port: cluster.workers[0].port, timeout: 5))
        }
        // The worker counts a connection once it has accepted it: wait for the accepts to be
        // visible as slots, by the refusal of the next one.
        let extra = try TCPSocket.connect(host: "127.0.0.1", port: cluster.workers[0].port, timeout: 5)
        #expect(throws: WireError.busy) {
            _ = try Connection.clientHandshake(fd: extra, key: randomBytes(32), kind: .control, context: [], timeout: 5)
        }
        #expect(cluster.workers[0].process.stderr.waitFor("busy: 8 connections from 127.0.0.1 are already in their handshake"))
        // Once they are gone, real work goes through again.
        idle.forEach(FD.close)
        idle = []
        let good = try cluster.master(["exec", "--", "echo alive"])
        #expect(good.stdout == "[0] alive\n", "\(good.stderr)")
    }

    @Test func floodOfRefusedConnections_isLoggedRateLimited() throws {
        let cluster = try TestCluster(workers: 1)
        for _ in 0..<300 {
            let fd = try TCPSocket.connect(host: "127.0.0.1", port: cluster.workers[0].port, timeout: 5)
            // Garbage: refused at once (bad magic).
            try? FD.writeAll(fd, Array("GET / HTTP/1.0\r\n\r\n".utf8))
            TCPSocket.setReceiveTimeout(fd, seconds: 10)
            var byte: UInt8 = 0
            _ = read(fd, &byte, 1)
            FD.close(fd)
        }
        let good = try cluster.master(["exec", "--", "echo alive"])
        #expect(good.stdout == "[0] alive\n")
        let refusals = cluster.workers[0].process.stderr.text.components(separatedBy: "refused connection from").count - 1
        #expect(refusals >= 1 && refusals <= 21, "\(refusals) refusal lines for 300 refused connections")
    }

    @Test func rankConnectionForAnUnknownJob_isAnsweredLikeAWrongKey() throws {
        let cluster = try TestCluster(workers: 1)
        let fd = try TCPSocket.connect(host: "127.0.0.1", port: cluster.workers[0].port, timeout: 5)
        defer { FD.close(fd) }
        // The reply to a hello for a job that does not exist looks like any other (status ok,
        // a nonce and a proof): a stranger cannot tell which job ids exist.
        let hello = Handshake.Client(key: randomBytes(32), kind: .rank, context: RankConnectionContext(jobID: "nosuchjob", from: 0, to: 1).encoded)
        try FD.writeAll(fd, hello.hello.encoded())
        let reply = try Connection.readExact(fd, Handshake.replySize, deadline: .after(10))
        #expect(reply[6] == Handshake.ReplyStatus.ok.rawValue)
        #expect(throws: WireError.authenticationFailed("the worker does not hold the same cluster secret")) {
            _ = try hello.finish(reply: reply)
        }
        let other = try TCPSocket.connect(host: "127.0.0.1", port: cluster.workers[0].port, timeout: 5)
        #expect(throws: WireError.self) {
            _ = try Connection.clientHandshake(
                fd: other, key: randomBytes(32), kind: .rank, context: RankConnectionContext(jobID: "nosuchjob", from: 0, to: 1).encoded, timeout: 5)
        }
        #expect(cluster.workers[0].process.stderr.waitFor("or the job is unknown"))
    }

    @Test func authenticatedMasterThatStopsMidFrame_isDroppedAfterTheFrameTimeout() throws {
        let cluster = try TestCluster(workers: 1, workerArguments: ["--frame-timeout", "0.5"])
        let secret = try ClusterSecret.load(path: cluster.secretFile)
        for partial in [[UInt8](), [0, 0, 0, 9, 1, 0x41]] {
            let fd = try TCPSocket.connect(host: "127.0.0.1", port: cluster.workers[0].port, timeout: 5)
            let connection = try Connection.client(fd: fd, peer: "test", key: secret, kind: .control, timeout: 5)
            defer { connection.close() }
            // Nothing at all, or the start of a frame, then silence: the worker must let go.
            try FD.writeAll(connection.fd, partial)
            let why = try connection.receiveMessage(idle: .after(20))
            #expect(why.name == "failure" && "\(why)".contains("stalled"), "\(why)")
            #expect(throws: (any Error).self) { _ = try connection.receive(idle: .after(20)) }
        }
        #expect(cluster.workers[0].process.stderr.waitFor(count: 2, of: "the master connection ended before the job started"))
    }

    @Test func garbageFromARankOnItsAgentChannel_doesNotDisturbTheWorker() throws {
        let cluster = try TestCluster(workers: 1)
        let run = try cluster.master(["exec", "--", "printf 'not a message' >&3; echo still here"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout == "[0] still here\n")
        let again = try cluster.master(["exec", "--", "echo alive"])
        #expect(again.stdout == "[0] alive\n")
    }

    @Test func ctrlC_endsEveryRankAndGrandchild_andExits130() throws {
        let cluster = try TestCluster(workers: 2)
        let master = try cluster.startMaster([
            "run", "--", "sh", "-c", "sleep 300 & echo \"pids $$ $!\"; wait",
        ])
        for rank in 0..<2 { #expect(master.stdout.waitFor("[\(rank)] pids ")) }
        let pids = pidsFrom(master.stdout.text)
        #expect(pids.count == 4)
        master.signal(SIGINT)
        let status = master.wait(timeout: 30)
        #expect(status.code == 130)
        #expect(master.stderr.text.contains("interrupted: the job was ended on"), "\(master.stderr.text)")
        for pid in pids { #expect(Processes.waitGone(pid), "pid \(pid) survived") }
        #expect(cluster.leftoverJobDirectories.isEmpty)
    }

    @Test func masterKilled_workerEndsTheJobAndRemovesItsDirectory() throws {
        let cluster = try TestCluster(workers: 1)
        let master = try cluster.startMaster(["run", "--", "sh", "-c", "sleep 300 & echo \"pids $$ $!\"; wait"])
        #expect(master.stdout.waitFor("pids "))
        let pids = pidsFrom(master.stdout.text)
        #expect(pids.count == 2)
        master.signal(SIGKILL)
        master.wait()
        for pid in pids { #expect(Processes.waitGone(pid, timeout: 15), "pid \(pid) survived") }
        #expect(cluster.workers[0].process.stderr.waitFor("finished", timeout: 15))
        #expect(cluster.leftoverJobDirectories.isEmpty)
    }

    @Test func escapedDescendant_isEndedWithTheJob() throws {
        let cluster = try TestCluster(workers: 1)
        // setsid puts the sleeper in its own session and group, out of reach of the group kill.
        let run = try cluster.master(["exec", "--", "setsid sh -c 'echo escaped $$; exec sleep 300' & sleep 0.2"])
        #expect(run.status == 0)
        let pid = try #require(run.stdout.split(separator: " ").last.flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
        #expect(Processes.waitGone(pid), "escaped pid \(pid) survived")
    }

    @Test func backgroundChildHoldingStdout_doesNotHangTheJob() throws {
        let run = try TestProcess.master(["exec", "--local", "2", "--", "sleep 300 & echo done"])
        #expect(run.status == 0)
        #expect(run.stdoutLines.sorted() == ["[0] done", "[1] done"])
    }

    @Test func twoHundredJobs_leaveNoDescriptorsProcessesOrDirectories() throws {
        let cluster = try TestCluster(workers: 1)
        let worker = cluster.workers[0]
        _ = try cluster.master(["exec", "--", "true"])
        #expect(worker.process.stderr.waitFor(count: 1, of: ": finished"))
        let descriptorsBefore = Processes.descriptors(of: worker.process.pid).others
        for index in 0..<200 {
            let run = try cluster.master(["exec", "-q", "--", index % 2 == 0 ? "echo $DISTR_NODE_ID" : "sleep 5 & exit 1"])
            if run.status != (index % 2 == 0 ? 0 : 1) {
                Issue.record("job \(index): status \(run.status): \(run.stderr)")
                break
            }
        }
        // Every job's last log line comes after its connection is closed.
        #expect(worker.process.stderr.waitFor(count: 201, of: ": finished"))
        let after = Processes.descriptors(of: worker.process.pid)
        #expect(after.others == descriptorsBefore)
        #expect(after.keptCgroups <= 2 * SpareControlGroups.limit)
        // The worker's one lasting child is its sentinel.
        let children = Processes.children(of: worker.process.pid).filter { !Processes.isModuleCompileOrItsOrphan($0) }
        #expect(children.filter { !Processes.isWorker($0) }.isEmpty)
        #expect(children.count == 1)
        #expect(cluster.leftoverJobDirectories.isEmpty)
    }

    @Test(arguments: [SIGTERM, SIGINT])
    func workerSignal_endsRunningJobsAndExits0(signal: Int32) throws {
        let cluster = try TestCluster(workers: 1)
        let master = try cluster.startMaster(["run", "--", "sh", "-c", "echo \"pids $$\"; sleep 300"])
        #expect(master.stdout.waitFor("pids "))
        let pids = pidsFrom(master.stdout.text)
        cluster.workers[0].process.signal(signal)
        #expect(cluster.workers[0].process.wait(timeout: 20) == .exited(0))
        for pid in pids { #expect(Processes.waitGone(pid)) }
        #expect(cluster.leftoverJobDirectories.isEmpty)
        // The worker said why before its ranks' exits: the node is lost to the job (69).
        let status = master.wait(timeout: 20)
        #expect(status.code == ExitCode.unavailable, "\(master.stderr.text)")
        #expect(master.stderr.text.contains("node \(cluster.workers[0].peer): shut down during the job"), "\(master.stderr.text)")
    }

    @Test(arguments: ["missing", "loose", "malformed"])
    func worker_refusesToStartWithABadSecret(kind: String) throws {
        let dir = try TemporaryDirectory()
        let path = dir.path + "/secret"
        switch kind {
        case "loose": try FileIO.write(path, Array(randomBytes(32).hex.utf8), mode: 0o644, exclusive: true)
        case "malformed": try FileIO.write(path, Array("not hex".utf8), mode: 0o600, exclusive: true)
        default: break
        }
        let worker = try TestProcess([Binaries.worker, "--port", "0", "--secret-file", path])
        #expect(worker.wait(timeout: 20) == .exited(64))
        let advice = ["missing": "distr-master keygen", "loose": "chmod 600", "malformed": "64 hex characters"][kind] ?? ""
        #expect(worker.stderr.text.contains(advice), "\(worker.stderr.text)")
        #expect(worker.stdout.text.isEmpty)
    }

    @Test func bundleOverTheWorkerLimit_isRefusedWithAClearError() throws {
        let cluster = try TestCluster(workers: 1, workerArguments: ["--max-files", "1"])
        let project = try TemporaryDirectory()
        try project.write("a", "1")
        try project.write("b", "2")
        let run = try cluster.master(["run", "--file", "a", "--file", "b", "cat", "a"], directory: project.path)
        #expect(run.status == 69)
        #expect(run.stderr.contains("2 files exceeds the worker's limit of 1"), "\(run.stderr)")
        #expect(run.stderr.contains("--max-files"))
        #expect(cluster.leftoverJobDirectories.isEmpty)
    }

    @Test func bundleOverTheByteLimit_isRefusedWithAClearError() throws {
        let cluster = try TestCluster(workers: 1, workerArguments: ["--max-bundle-bytes", "1000"])
        let project = try TemporaryDirectory()
        try project.write("big", String(repeating: "x", count: 2000))
        let run = try cluster.master(["run", "--file", "big", "true"], directory: project.path)
        #expect(run.status == 69)
        #expect(run.stderr.contains("2000 bytes exceeds the worker's limit of 1000 bytes"), "\(run.stderr)")
        #expect(cluster.leftoverJobDirectories.isEmpty)
    }

    @Test func badPeersFile_exits64NamingFileAndLine() throws {
        let dir = try TemporaryDirectory()
        try dir.write("peers.txt", "good:6969\nbad:port\n")
        let run = try TestProcess.master(
            ["exec", "--peers", dir.path + "/peers.txt", "--", "true"], environment: ["DISTR_SECRET_FILE": try secretFile(in: dir)])
        #expect(run.status == 64)
        #expect(run.stderr.contains("peers.txt:2: 'bad:port': port 'port' is not a number"), "\(run.stderr)")
    }

    @Test func usageErrors_exit64WithTheUsageLine_andHelpExits0() throws {
        let bad = try TestProcess.master(["run", "--frobnicate", "x"])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("unknown option '--frobnicate'"))
        #expect(bad.stderr.contains("usage: distr-master run"))
        let help = try TestProcess.master(["--help"])
        #expect(help.status == 0)
        #expect(help.stdout.contains("--connect-timeout"))
        let workerHelp = TestProcess.run(try TestProcess([Binaries.worker, "--help"]))
        #expect(workerHelp.status == 0 && workerHelp.stdout.contains("--work-dir"))
        let workerBad = TestProcess.run(try TestProcess([Binaries.worker, "--port", "70000"]))
        #expect(workerBad.status == 64 && workerBad.stderr.contains("usage: distr-worker"))
    }

    /// A relative --python-dir is made absolute against the working directory; when that
    /// directory is gone (removed after the shell entered it), the worker says which option it
    /// could not resolve and exits 64 instead of handing ranks a path that names nothing.
    @Test func workerInADeletedDirectory_refusesARelativePythonDirByName() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let secret = try secretFile(in: dir)
        let script = "mkdir gone && cd gone && rmdir ../gone && exec \"$0\" --port 0 --secret-file \"$1\" --work-dir \"$2\" --python-dir modules"
        let run = TestProcess.run(
            try TestProcess(["/bin/sh", "-c", script, Binaries.worker, secret, dir.path], directory: dir.path), timeout: 30)
        #expect(run.status == 64, "\(run.stderr)")
        #expect(run.stderr.contains("cannot make --python-dir 'modules' absolute"), "\(run.stderr)")
    }

    @Test func keygen_writesAPrivateSecretAndRefusesToOverwrite() throws {
        let dir = try TemporaryDirectory()
        // A directory that does not exist is not made (only the default one is), as with ssh-keygen -f.
        let missing = try TestProcess.master(["keygen", "--secret-file", dir.path + "/nested/secret"])
        #expect(missing.status == 64 && missing.stderr.contains("\(dir.path)/nested does not exist; create it first"))
        #expect(!FileIO.exists(dir.path + "/nested"))
        let path = dir.path + "/secret"
        let first = try TestProcess.master(["keygen", "--secret-file", path])
        #expect(first.status == 0)
        #expect(FileIO.mode(path).map { $0 & 0o777 } == 0o600)
        #expect(try ClusterSecret.load(path: path).count == 32)
        let second = try TestProcess.master(["keygen", "--secret-file", path])
        #expect(second.status == 64)
        #expect(second.stderr.contains("already exists"))
    }

    func pidsFrom(_ text: String) -> [pid_t] {
        text.split(separator: "\n").filter { $0.contains("pids ") }.flatMap { line in
            line.split(separator: " ").dropFirst(2).compactMap { pid_t($0) }
        }
    }

    /// A fresh secret in `directory` (removed with it), for a master that never gets to use it.
    func secretFile(in directory: TemporaryDirectory) throws -> String {
        let path = directory.path + "/secret"
        try ClusterSecret.generate(path: path)
        return path
    }
}
