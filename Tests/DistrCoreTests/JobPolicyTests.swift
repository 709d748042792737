import Testing

@testable import DistrCore

@Suite struct JobPolicyTests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func policy_launchesOnlyWhenEveryWorkerIsReady() {
        var policy = JobPolicy(workerCount: 3, failFast: false)
        #expect(policy.workerReady(0) == [])
        #expect(policy.workerReady(2) == [])
        // The same worker twice does not make two.
        #expect(policy.workerReady(2) == [])
        #expect(!policy.launched)
        #expect(policy.workerReady(1) == [.launchAll])
        #expect(policy.launched)
        #expect(policy.workerReady(1) == [])
    }

    @Test func policy_cancelledBeforeEveryoneIsReady_neverLaunches() {
        var policy = JobPolicy(workerCount: 2, failFast: false)
        #expect(policy.workerReady(0) == [])
        #expect(policy.cancel(reason: "interrupted") == [.cancelAll(reason: "interrupted")])
        #expect(policy.workerReady(1) == [])
        #expect(!policy.launched)
    }

    @Test func policy_cancel_happensOnceWithTheFirstReason() {
        var policy = JobPolicy(workerCount: 1, failFast: false)
        #expect(policy.cancel(reason: "time limit") == [.cancelAll(reason: "time limit")])
        #expect(policy.cancel(reason: "interrupted") == [])
        #expect(policy.cancelReason == "time limit")
    }

    /// A cancel decided while `launchAll` is carried out (the first rank to fail to start
    /// under fail-fast, while later workers are still being sent `launch`) waits until every
    /// worker was sent it: every rank then tries, and the summary names them all.
    @Test func policy_cancelWhileLaunching_waitsUntilEveryWorkerWasLaunched() {
        var policy = JobPolicy(workerCount: 2, failFast: true)
        #expect(policy.workerReady(0) + policy.workerReady(1) == [.launchAll])
        #expect(policy.launching)
        #expect(
            policy.rankExited(worker: 0, rank: 0, status: .failedToStart("not found"), endedByDistr: false) == [
                .relayExit(rank: 0, code: 127, to: [1])
            ])
        #expect(policy.cancelReason == "rank 0 failed (could not start: not found)")
        #expect(policy.cancel(reason: "interrupted") == [])
        #expect(policy.launchSent() == [.cancelAll(reason: "rank 0 failed (could not start: not found)")])
        #expect(!policy.launching)
        #expect(policy.launchSent() == [])
        #expect(policy.cancel(reason: "interrupted") == [])
    }

    @Test func policy_launchSent_withoutACancel_sendsNothing() {
        var policy = JobPolicy(workerCount: 1, failFast: true)
        #expect(policy.workerReady(0) == [.launchAll])
        #expect(policy.launchSent() == [])
        #expect(policy.cancel(reason: "time limit") == [.cancelAll(reason: "time limit")])
    }

    @Test func policy_failFast_cancelsOnTheFirstFailureOnly() {
        var policy = JobPolicy(workerCount: 2, failFast: true)
        _ = policy.workerReady(0) + policy.workerReady(1) + policy.launchSent()
        #expect(
            policy.rankExited(worker: 1, rank: 3, status: .exited(2), endedByDistr: false) == [
                .relayExit(rank: 3, code: 2, to: [0]), .cancelAll(reason: "rank 3 failed (exit 2)"),
            ])
        #expect(policy.rankExited(worker: 0, rank: 0, status: .signaled(11), endedByDistr: false) == [.relayExit(rank: 0, code: 139, to: [1])])
        #expect(policy.firstFailure == 3)
        #expect(policy.cancelReason == "rank 3 failed (exit 2)")
    }

    @Test func policy_withoutFailFast_recordsTheFirstFailureButGoesOn() {
        var policy = JobPolicy(workerCount: 2, failFast: false)
        #expect(
            policy.rankExited(worker: 0, rank: 1, status: .failedToStart("no such file"), endedByDistr: false) == [
                .relayExit(rank: 1, code: 127, to: [1])
            ])
        #expect(policy.firstFailure == 1)
        #expect(policy.cancelReason == nil)
    }

    @Test(arguments: [
        (RankStatus.exited(0), false),
        (.signaled(15), true),
        (.exited(143), true),
    ])
    func policy_exitsThatAreNotFailures_doNotFailFast(_ status: RankStatus, endedByDistr: Bool) {
        var policy = JobPolicy(workerCount: 2, failFast: true)
        #expect(
            policy.rankExited(worker: 0, rank: 1, status: status, endedByDistr: endedByDistr) == [.relayExit(rank: 1, code: status.code, to: [1])])
        #expect(policy.firstFailure == nil)
        #expect(policy.cancelReason == nil)
    }

    @Test func policy_sameRankReportedTwice_countsOnce() {
        var policy = JobPolicy(workerCount: 1, failFast: false)
        _ = policy.rankExited(worker: 0, rank: 0, status: .exited(0), endedByDistr: false)
        #expect(policy.rankExited(worker: 0, rank: 0, status: .exited(1), endedByDistr: false) == [])
        #expect(policy.ranks[0]?.status == .exited(0))
        #expect(policy.firstFailure == nil)
    }

    @Test func policy_workerErrorBeforeLaunch_cancelsEvenWithoutFailFast() {
        var policy = JobPolicy(workerCount: 2, failFast: false)
        _ = policy.workerReady(0)
        #expect(policy.workerFinished(1, error: "refused") == [.cancelAll(reason: "a node failed")])
        #expect(policy.workerErrors == [1: "refused"])
        #expect(policy.workerReady(0) == [])
    }

    @Test(arguments: [(false, [JobPolicy.Action]()), (true, [.cancelAll(reason: "a node failed")])])
    func policy_workerErrorAfterLaunch_cancelsOnlyWithFailFast(_ failFast: Bool, expected: [JobPolicy.Action]) {
        var policy = JobPolicy(workerCount: 2, failFast: failFast)
        _ = policy.workerReady(0) + policy.workerReady(1) + policy.launchSent()
        #expect(policy.workerFinished(0, error: "connection lost") == expected)
        #expect(policy.workerErrors[0] == "connection lost")
    }

    @Test func policy_allFinished_exactlyOnceWhenTheLastWorkerFinishes() {
        var policy = JobPolicy(workerCount: 3, failFast: false)
        _ = policy.workerReady(0) + policy.workerReady(1) + policy.workerReady(2)
        #expect(policy.workerFinished(2, error: nil) == [])
        #expect(policy.workerFinished(2, error: nil) == [])
        #expect(policy.workerFinished(0, error: nil) == [])
        #expect(policy.workerFinished(1, error: nil) == [.allFinished])
        #expect(policy.workerFinished(1, error: nil) == [])
        #expect(policy.workerFinished(0, error: "late") == [])
        #expect(policy.workerErrors.isEmpty)
    }

    @Test func policy_lastWorkerFailing_cancelsThenFinishes() {
        var policy = JobPolicy(workerCount: 2, failFast: true)
        _ = policy.workerFinished(0, error: nil)
        #expect(policy.workerFinished(1, error: "lost") == [.cancelAll(reason: "a node failed"), .allFinished])
    }

    @Test func policy_keptDirectories_byWorker() {
        var policy = JobPolicy(workerCount: 2, failFast: false)
        policy.keptDirectory(worker: 1, path: "/b")
        policy.keptDirectory(worker: 0, path: "/a")
        #expect(policy.keptDirectories == [0: "/a", 1: "/b"])
    }

    @Test func stderrTail_keepsTheLastTwentyLines_andCountsThemAll() {
        var policy = JobPolicy(workerCount: 1, failFast: false)
        policy.output(rank: 0, stream: 2, bytes: Self.bytes((1...20).map { "\($0)\n" }.joined()))
        policy.output(rank: 0, stream: 2, bytes: Self.bytes("21\n22\n\n23\n24"))
        #expect(policy.ranks[0]?.stderrTail == (5...22).map { "\($0)" }.map(Self.bytes) + [[], Self.bytes("23")])
        #expect(policy.ranks[0]?.stderrLineCount == 24)
        // The unfinished last line counts, and pushes out the oldest, when the rank exits.
        _ = policy.rankExited(worker: 0, rank: 0, status: .exited(1), endedByDistr: false)
        #expect(policy.ranks[0]?.stderrTail.count == 20)
        #expect(policy.ranks[0]?.stderrTail.first == Self.bytes("6"))
        #expect(policy.ranks[0]?.stderrTail.last == Self.bytes("24"))
        #expect(policy.ranks[0]?.stderrLineCount == 25)
    }

    @Test func stderrTail_joinsALineSplitAcrossChunks_andKeepsTheUnfinishedLastLine() {
        var policy = JobPolicy(workerCount: 1, failFast: false)
        policy.output(rank: 1, stream: 2, bytes: Self.bytes("par"))
        policy.output(rank: 1, stream: 2, bytes: Self.bytes("tial"))
        policy.output(rank: 1, stream: 2, bytes: Self.bytes(" line\nno newline"))
        #expect(policy.ranks[1]?.stderrTail == [Self.bytes("partial line")])
        #expect(policy.ranks[1]?.partialStderr == Self.bytes("no newline"))
        // The unfinished line counts once the rank has exited.
        _ = policy.rankExited(worker: 0, rank: 1, status: .exited(1), endedByDistr: false)
        #expect(policy.ranks[1]?.stderrTail == [Self.bytes("partial line"), Self.bytes("no newline")])
        #expect(policy.ranks[1]?.partialStderr == [])
    }

    @Test func stderrTail_ignoresStandardOutput() {
        var policy = JobPolicy(workerCount: 1, failFast: false)
        policy.output(rank: 0, stream: 1, bytes: Self.bytes("out\n"))
        #expect(policy.ranks[0] == nil)
    }

    /// A line as runs of one byte ("a×3000"): readable when an expectation on a huge line fails.
    static func runs(_ line: [UInt8]) -> [String] {
        var runs: [(byte: UInt8, count: Int)] = []
        for byte in line {
            if runs.last?.byte == byte { runs[runs.count - 1].count += 1 } else { runs.append((byte, 1)) }
        }
        return runs.map { "\(Character(Unicode.Scalar($0.byte)))×\($0.count)" }
    }

    @Test func stderrTail_keepsOnlyTheStartOfAHugeLine() {
        var policy = JobPolicy(workerCount: 1, failFast: false)
        // Sent in pieces, without a newline: what is held stays bounded.
        for byte in Self.bytes("abc") { policy.output(rank: 0, stream: 2, bytes: [UInt8](repeating: byte, count: 3000)) }
        #expect(Self.runs(policy.ranks[0]?.partialStderr ?? []) == ["a×3000", "b×1096"])
        // The line ends in a later chunk: the summary shows its start, not its start glued to its end.
        policy.output(rank: 0, stream: 2, bytes: Self.bytes("end\nnext\n"))
        #expect(policy.ranks[0]?.stderrTail.map(Self.runs) == [["a×3000", "b×1096"], ["n×1", "e×1", "x×1", "t×1"]])
        // A huge line within one chunk is cut the same way.
        policy.output(rank: 0, stream: 2, bytes: [UInt8](repeating: 100, count: 10_000) + [10])
        #expect(policy.ranks[0]?.stderrTail.last.map(Self.runs) == ["d×4096"])
    }

    @Test func policy_workerLostAfterLaunch_tellsTheOthersItsRanksAreGone() {
        var policy = JobPolicy(workerCount: 2, failFast: false, ranksOfWorker: [0: [0, 1], 1: [2, 3]])
        _ = policy.workerReady(0)
        #expect(policy.workerReady(1) == [.launchAll])
        _ = policy.rankExited(worker: 1, rank: 2, status: .exited(0), endedByDistr: false)
        // Rank 2 has reported; rank 3's fate is unknown: the others must not wait for it.
        #expect(
            policy.workerFinished(1, error: "connection lost")
                == [.relayExit(rank: 3, code: JobPolicy.lostRankCode, to: [0])])
        #expect(policy.cancelReason == nil)
    }

    /// Clean exits wait to be relayed (`holdsCleanExits`): the first asks for a release later,
    /// a failure releases them at once ahead of itself, and a release goes only to the workers
    /// that still run a rank by then.
    @Test func policy_holdsCleanExitsUntilReleasedOrAFailure() {
        var policy = JobPolicy(
            workerCount: 4, failFast: false, ranksOfWorker: [0: [0], 1: [1], 2: [2], 3: [3]], holdsCleanExits: true)
        #expect(policy.rankExited(worker: 0, rank: 0, status: .exited(0), endedByDistr: false) == [.releaseExitsLater])
        #expect(policy.rankExited(worker: 1, rank: 1, status: .exited(0), endedByDistr: false) == [])
        #expect(policy.heldExits.map(\.rank) == [0, 1])
        #expect(
            policy.rankExited(worker: 2, rank: 2, status: .exited(3), endedByDistr: false)
                == [.relayExit(rank: 0, code: 0, to: [3]), .relayExit(rank: 1, code: 0, to: [3]), .relayExit(rank: 2, code: 3, to: [3])])
        #expect(policy.heldExits.isEmpty)
        // Held again; by the release every other worker is done: nothing to send.
        #expect(policy.rankExited(worker: 3, rank: 3, status: .exited(0), endedByDistr: false) == [.releaseExitsLater])
        #expect(policy.releaseHeldExits() == [])
        #expect(policy.releaseHeldExits() == [])
    }

    @Test func policy_releasesHeldExitsToWorkersStillRunning() {
        var policy = JobPolicy(workerCount: 3, failFast: false, ranksOfWorker: [0: [0], 1: [1], 2: [2]], holdsCleanExits: true)
        #expect(policy.rankExited(worker: 0, rank: 0, status: .exited(0), endedByDistr: false) == [.releaseExitsLater])
        #expect(policy.rankExited(worker: 1, rank: 1, status: .exited(0), endedByDistr: false) == [])
        #expect(policy.releaseHeldExits() == [.relayExit(rank: 0, code: 0, to: [2]), .relayExit(rank: 1, code: 0, to: [2])])
        #expect(policy.heldExits.isEmpty)
    }

    @Test func policy_lostWorkerReleasesHeldExitsBeforeItsRanks() {
        var policy = JobPolicy(workerCount: 3, failFast: false, ranksOfWorker: [0: [0], 1: [1], 2: [2]], holdsCleanExits: true)
        for worker in 0..<3 { _ = policy.workerReady(worker) }
        #expect(policy.rankExited(worker: 0, rank: 0, status: .exited(0), endedByDistr: false) == [.releaseExitsLater])
        #expect(
            policy.workerFinished(2, error: "connection lost")
                == [.relayExit(rank: 0, code: 0, to: [1, 2]), .relayExit(rank: 2, code: JobPolicy.lostRankCode, to: [1])])
    }

    /// Exits are relayed only to workers that still run a rank: 64 nodes would otherwise trade
    /// 64 × 63 messages for ranks that have mostly ended.
    @Test func policy_relaysAnExitOnlyToWorkersThatStillRunARank() {
        var policy = JobPolicy(workerCount: 3, failFast: false, ranksOfWorker: [0: [0, 1], 1: [2], 2: [3]])
        #expect(policy.workersWithRunningRanks == [0, 1, 2])
        #expect(policy.rankExited(worker: 0, rank: 0, status: .exited(0), endedByDistr: false) == [.relayExit(rank: 0, code: 0, to: [1, 2])])
        #expect(policy.rankExited(worker: 1, rank: 2, status: .exited(1), endedByDistr: false) == [.relayExit(rank: 2, code: 1, to: [0, 2])])
        #expect(policy.workersWithRunningRanks == [0, 2])
        #expect(
            policy.rankExited(worker: 0, rank: 1, status: .failedToStart("no such program"), endedByDistr: false)
                == [.relayExit(rank: 1, code: 127, to: [2])])
        #expect(policy.rankExited(worker: 2, rank: 3, status: .exited(0), endedByDistr: false) == [.relayExit(rank: 3, code: 0, to: [])])
        #expect(policy.workersWithRunningRanks == [])
    }

    @Test func policy_workerLostBeforeLaunch_relaysNothing() {
        var policy = JobPolicy(workerCount: 2, failFast: false, ranksOfWorker: [0: [0], 1: [1]])
        #expect(policy.workerFinished(1, error: "refused") == [.cancelAll(reason: "a node failed")])
    }
}
