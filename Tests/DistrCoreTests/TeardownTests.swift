import CDistrSys
import Testing

@testable import DistrCore

/// Stopping a child: SIGTERM, a grace period, SIGKILL, and always a wait for the reaper.
@Suite(.hangGuard) struct TeardownTests {
    init() { Signals.ignorePipe() }

    /// Starts `/bin/sh -c script`; returns once the script has printed its first line (it does
    /// so when it is ready for the signal), with that line.
    static func start(_ script: String) throws -> (pid: Int32, exit: ChildExit, line: String) {
        let out = try FD.pipe()
        let exit = ChildExit()
        let pid = try Spawner.spawn(
            SpawnRequest(arguments: ["/bin/sh", "-c", script], environment: ["PATH=/usr/bin:/bin"], stdout: out.write, stderr: 2),
            onExit: exit.record)
        FD.close(out.write)
        defer { FD.close(out.read) }
        let line = try #require(FD.readLine(out.read, until: .after(20)), "no first line from: \(script)")
        return (pid, exit, String(decoding: line, as: UTF8.self))
    }

    @Test func end_givesAChildThatExitsOnSIGTERMNoSIGKILL() throws {
        let child = try Self.start("echo ready; exec sleep 100")
        // The grace is only an upper bound: the call returns as soon as the child is reaped.
        #expect(Teardown.end(.process(child.pid), grace: 60, exited: child.exit.exited))
        #expect(child.exit.status == .signaled(Signal.terminate.rawValue))
    }

    @Test func end_killsAChildThatIgnoresSIGTERMAfterTheGrace() throws {
        let child = try Self.start("trap '' TERM; echo ready; exec sleep 100")
        #expect(!Teardown.end(.process(child.pid), grace: 0.2, exited: child.exit.exited))
        #expect(child.exit.status == .signaled(Signal.kill.rawValue))
    }

    @Test func end_ofAProcessGroupAlsoEndsWhatTheLeaderStarted() throws {
        let child = try Self.start("trap '' TERM; sleep 100 & echo $!; wait")
        let background = try #require(Int32(child.line), "\(child.line)")
        let pidfd = cdistr_pidfd_open(background)
        try #require(pidfd >= 0, "the background sleep \(background) is already gone")
        defer { FD.close(pidfd) }
        #expect(!Teardown.end(.processGroup(child.pid), grace: 0.2, exited: child.exit.exited))
        #expect(child.exit.status == .signaled(Signal.kill.rawValue))
        // The sleep was not our child (init reaps it): its pidfd turns readable when it exits.
        #expect((try? FD.waitReadable(pidfd, until: .after(20))) == true)  // An error fails the test as a timeout does.
    }

    @Test func end_ofSeveral_killsOnlyThoseThatIgnoreSIGTERM() throws {
        let polite = try Self.start("echo ready; exec sleep 100")
        let stubborn = try Self.start("trap '' TERM; echo ready; exec sleep 100")
        let killed = Teardown.end(
            [(.process(polite.pid), polite.exit.exited), (.process(stubborn.pid), stubborn.exit.exited)], grace: 0.5)
        #expect(killed == 1)
        #expect(polite.exit.status == .signaled(Signal.terminate.rawValue))
        #expect(stubborn.exit.status == .signaled(Signal.kill.rawValue))
    }

    @Test func end_ofAChildThatHasExited_signalsNothingAndKeepsItsStatus() throws {
        let child = try Self.start("echo ready; exit 3")
        #expect(child.exit.wait(until: .after(20)) == .exited(3))
        #expect(Teardown.end(.process(child.pid), grace: 0, exited: child.exit.exited))
        #expect(child.exit.status == .exited(3))
    }

    @Test func readLine_givesNilAtTheDeadlineAndAtEndOfStream() throws {
        let pipe = try FD.pipe()
        defer { FD.close(pipe.read) }
        #expect(FD.readLine(pipe.read, until: .after(0.05)) == nil)
        try FD.writeAll(pipe.write, Array("one\ntwo".utf8))
        FD.close(pipe.write)
        #expect(FD.readLine(pipe.read, until: .after(20)) == Array("one".utf8))
        #expect(FD.readLine(pipe.read, until: .after(20)) == nil)
    }
}

@Suite struct JobRecordsTests {
    /// A worker killed between writing a record's rewrite and renaming it leaves `.part-<job>`;
    /// reclaiming the job removes that too (seen once in a 20-run loop of the kill -9 test).
    @Test func reclaim_removesARewriteItsWorkerDiedIn() throws {
        let work = try makeTemporaryDirectory()
        defer { _ = FileIO.removeTree(work) }
        let records = try JobRecords(workDirectory: work)
        let directory = work + "/job"
        try FileIO.makeDirectories(directory)
        let record = JobRecord(jobID: "0123456789abcdef", directory: directory, workerPID: 999_999_999, workerStart: 1)
        try records.write(record)
        try FileIO.write(records.directory + "/.part-0123456789abcdef", Array("job 0123".utf8), mode: 0o600, exclusive: true)
        let lines = Reclaimer.reclaimAbandoned(records, deadWorker: 999_999_999)
        #expect(lines.count == 1, "\(lines)")
        #expect(try names(in: records.directory).isEmpty)
        #expect(!FileIO.exists(directory))
    }

    /// `--local` removes its workers' directories once they have stopped; a sentinel that only
    /// then learns its worker is gone (a loaded machine) finds no records and makes nothing.
    @Test func sentinel_leavesARemovedWorkDirectoryRemoved_andReclaimsFromOneThatIsThere() throws {
        let root = try makeTemporaryDirectory()
        defer { _ = FileIO.removeTree(root) }
        let work = root + "/work"
        let records = try JobRecords(workDirectory: work)
        try FileIO.makeDirectories(work + "/job")
        try records.write(JobRecord(jobID: "0123456789abcdef", directory: work + "/job", workerPID: 999_999_999, workerStart: 1))
        #expect(Sentinel.reclaim(workDirectory: work, deadWorker: 999_999_999).count == 1)
        #expect(!FileIO.exists(work + "/job"))
        FileIO.removeTree(work)
        #expect(Sentinel.reclaim(workDirectory: work, deadWorker: 999_999_999).isEmpty)
        #expect(!FileIO.exists(work))
    }
}
