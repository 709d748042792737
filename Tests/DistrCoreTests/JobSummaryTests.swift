import Testing

@testable import DistrCore

@Suite struct JobSummaryTests {
    /// Two nodes: host-a runs ranks 0 and 1, host-b ranks 2 and 3.
    static let nodes: [(label: String, ranks: [Int])] = [("host-a", [0, 1]), ("host-b", [2, 3])]
    static let names = [0: "host-a", 1: "host-a", 2: "host-b", 3: "host-b"]

    static func summary(
        _ policy: JobPolicy, rankCount: Int = 4, quiet: Bool = false, interrupted: Bool = false, timeLimit: Double? = nil,
        elapsed: Double = 1.5
    ) -> JobSummary {
        JobSummary(
            policy: policy, rankCount: rankCount, nodes: nodes, names: names, quiet: quiet, interrupted: interrupted,
            timeLimit: timeLimit, elapsed: elapsed)
    }

    /// A launched job of two workers whose ranks exited with these statuses.
    static func policy(failFast: Bool = false, exits: [(rank: Int, status: RankStatus)] = [], endedByDistr: Set<Int> = []) -> JobPolicy {
        var policy = JobPolicy(workerCount: 2, failFast: failFast)
        _ = policy.workerReady(0) + policy.workerReady(1)
        for (rank, status) in exits {
            _ = policy.rankExited(worker: rank / 2, rank: rank, status: status, endedByDistr: endedByDistr.contains(rank))
        }
        return policy
    }

    static let allOk: [(rank: Int, status: RankStatus)] = (0..<4).map { ($0, .exited(0)) }

    @Test func summary_allRanksOk_oneLineAndStatusZero() {
        let summary = Self.summary(Self.policy(exits: Self.allOk))
        #expect(summary.lines == ["4 rank(s) on 2 node(s): 4 ok, 0 failed in 1.50 s"])
        #expect(summary.status == 0)
    }

    @Test func summary_quietAndAllOk_printsNothing() {
        let summary = Self.summary(Self.policy(exits: Self.allOk), quiet: true)
        #expect(summary.lines.isEmpty)
        #expect(summary.status == 0)
    }

    @Test func summary_quiet_stillSaysWhatWentWrong() {
        var failed = Self.policy(exits: [(0, .exited(1))])
        #expect(Self.summary(failed, quiet: true).lines.first?.hasPrefix("4 rank(s) on 2 node(s): 0 ok, 1 failed, 3 not started") == true)
        failed = Self.policy(exits: Self.allOk)
        _ = failed.workerFinished(1, error: "connection lost")
        #expect(Self.summary(failed, quiet: true).lines.count == 2)
        #expect(Self.summary(Self.policy(), quiet: true, interrupted: true).lines.count == 2)
        #expect(Self.summary(Self.policy(), quiet: true, timeLimit: 5).lines.count == 2)
    }

    @Test func summary_failedRanks_listTheirStatusAndStderrTail_statusIsTheHighest() {
        var policy = Self.policy()
        policy.output(rank: 1, stream: 2, bytes: Array("warning\nboom".utf8))
        _ = policy.rankExited(worker: 0, rank: 0, status: .exited(0), endedByDistr: false)
        _ = policy.rankExited(worker: 0, rank: 1, status: .exited(3), endedByDistr: false)
        _ = policy.rankExited(worker: 1, rank: 2, status: .signaled(9), endedByDistr: false)
        _ = policy.rankExited(worker: 1, rank: 3, status: .exited(0), endedByDistr: false)
        let summary = Self.summary(policy, elapsed: 0.25)
        #expect(
            summary.lines == [
                "4 rank(s) on 2 node(s): 2 ok, 2 failed in 0.25 s",
                "rank 1 on host-a: exit 3", "  [1] warning", "  [1] boom",
                "rank 2 on host-b: killed by signal 9 (SIGKILL)",
            ])
        #expect(summary.status == 137)
    }

    @Test func summary_longStderr_showsTheLastTwentyLinesAndSaysHowManyWereCut() {
        var policy = Self.policy()
        policy.output(rank: 1, stream: 2, bytes: Array((1...23).map { "line \($0)\n" }.joined().utf8))
        _ = policy.rankExited(worker: 0, rank: 1, status: .exited(1), endedByDistr: false)
        let lines = Self.summary(policy).lines
        #expect(lines[1] == "rank 1 on host-a: exit 1")
        #expect(lines[2] == "  [1] ... (3 earlier stderr lines cut; the last 20 follow)")
        #expect(Array(lines[3...]) == (4...23).map { "  [1] line \($0)" })
    }

    @Test func summary_endedByDistr_isFoldedAndDoesNotCountTowardsTheStatus() {
        let nodes: [(label: String, ranks: [Int])] = [("host-a", [0, 1, 2, 3]), ("host-b", [4, 5, 6])]
        var policy = JobPolicy(workerCount: 2, failFast: true)
        _ = policy.rankExited(worker: 1, rank: 4, status: .exited(2), endedByDistr: false)
        for rank in [0, 1, 2, 3, 5] {
            _ = policy.rankExited(worker: rank < 4 ? 0 : 1, rank: rank, status: .signaled(15), endedByDistr: true)
        }
        _ = policy.rankExited(worker: 1, rank: 6, status: .exited(0), endedByDistr: true)
        let summary = JobSummary(
            policy: policy, rankCount: 7, nodes: nodes, names: [4: "host-b"], quiet: false, interrupted: false, timeLimit: nil, elapsed: 2)
        #expect(
            summary.lines == [
                "7 rank(s) on 2 node(s): 1 ok, 1 failed, 5 ended by distr in 2.00 s",
                "rank 4 on host-b: exit 2",
                "ranks [0-3,5] were ended by distr: rank 4 failed (exit 2)",
            ])
        #expect(summary.status == 2)
    }

    @Test func summary_rankEndedByItsWorkerWithoutACancel_countsAsFailed() {
        // The worker shut down on its own: distr's master never asked for it.
        let policy = Self.policy(exits: [(0, .exited(0)), (1, .signaled(15))], endedByDistr: [1])
        let summary = Self.summary(policy, rankCount: 2)
        #expect(summary.lines.first == "2 rank(s) on 2 node(s): 1 ok, 1 failed in 1.50 s")
        #expect(summary.status == 143)
    }

    struct PrecedenceCase: Sendable, CustomTestStringConvertible {
        var interrupted = false
        var timeLimit: Double?
        var nodeError = false
        var rankFailure = false
        var status: Int32
        var testDescription: String {
            let limit = timeLimit.map { "\($0) s" } ?? "none"
            return "interrupted \(interrupted), time limit \(limit), node error \(nodeError), rank failure \(rankFailure) → \(status)"
        }
    }

    @Test(arguments: [
        PrecedenceCase(interrupted: true, timeLimit: 10, nodeError: true, rankFailure: true, status: 130),
        PrecedenceCase(timeLimit: 10, nodeError: true, rankFailure: true, status: 124),
        PrecedenceCase(nodeError: true, rankFailure: true, status: 69),
        PrecedenceCase(rankFailure: true, status: 3),
        PrecedenceCase(status: 0),
    ])
    func summary_statusPrecedence_interruptedThenTimeLimitThenNodeThenRanks(_ test: PrecedenceCase) {
        var policy = Self.policy(exits: [(0, test.rankFailure ? .exited(3) : .exited(0))])
        if test.nodeError { _ = policy.workerFinished(1, error: "connection lost") }
        #expect(Self.summary(policy, interrupted: test.interrupted, timeLimit: test.timeLimit).status == test.status)
    }

    @Test func summary_interrupted_namesEveryNodeAndItsRanks() {
        let summary = Self.summary(Self.policy(), interrupted: true)
        #expect(summary.lines.last == "interrupted: the job was ended on host-a (ranks [0-1]), host-b (ranks [2-3])")
    }

    @Test func summary_timeLimit_saysItWasReached() {
        let summary = Self.summary(Self.policy(), timeLimit: 10)
        #expect(summary.lines.last == "time limit of 10.0 s reached; the job was ended")
    }

    @Test func summary_nodeErrorsAndKeptDirectories_byNodeInOrder() {
        var policy = Self.policy(exits: Self.allOk)
        policy.keptDirectory(worker: 1, path: "/tmp/b")
        policy.keptDirectory(worker: 0, path: "/tmp/a")
        _ = policy.workerFinished(1, error: "connection lost")
        _ = policy.workerFinished(0, error: "refused")
        #expect(
            Self.summary(policy).lines == [
                "4 rank(s) on 2 node(s): 4 ok, 0 failed in 1.50 s",
                "node host-a: job directory kept at /tmp/a",
                "node host-b: job directory kept at /tmp/b",
                "node host-a: refused",
                "node host-b: connection lost",
            ])
    }

    @Test func summary_quiet_stillSaysWhereDirectoriesWereKept() {
        var policy = Self.policy(exits: Self.allOk)
        policy.keptDirectory(worker: 0, path: "/tmp/a")
        #expect(Self.summary(policy, quiet: true).lines == ["node host-a: job directory kept at /tmp/a"])
    }

    @Test(arguments: [(0.05, "0.05"), (2, "2.00"), (3.07, "3.07"), (0.999, "1.00"), (61.5, "61.50"), (0, "0.00")])
    func summary_elapsed_inHundredthsOfASecond(_ elapsed: Double, shown: String) {
        let summary = Self.summary(Self.policy(exits: Self.allOk), elapsed: elapsed)
        #expect(summary.lines == ["4 rank(s) on 2 node(s): 4 ok, 0 failed in \(shown) s"])
    }
}

@Suite struct MissingLibraryTests {
    @Test(arguments: [
        (
            "./ring: error while loading shared libraries: libswiftCore.so: cannot open shared object file: No such file or directory",
            "libswiftCore.so"
        ),
        ("/tmp/x/prog: error while loading shared libraries: libfoo.so.1: cannot open shared object file: No such file or directory", "libfoo.so.1"),
    ])
    func library_readsTheLoadersMessage(line: String, library: String) {
        #expect(MissingLibrary.library(in: line) == library)
    }

    @Test(arguments: [
        "", "ordinary output", "error while loading shared libraries: ", "error while loading shared libraries: : x",
        "error while loading shared libraries: libfoo.so",
    ])
    func library_ignoresOtherLines(line: String) {
        #expect(MissingLibrary.library(in: line) == nil)
    }

    @Test func hint_namesLibraryNodeAndFix() {
        #expect(
            MissingLibrary.hint(rank: 2, node: "rpi-1:6969", library: "libswiftCore.so")
                == "rank 2 on rpi-1:6969 could not start: shared library libswiftCore.so is missing on rpi-1:6969; the Swift runtime is not installed there; build the program with: swift build -c release --static-swift-stdlib"
        )
        #expect(
            MissingLibrary.hint(rank: 0, node: "n", library: "libfoo.so.1").hasSuffix(
                "install the package that provides it on that node, or link the program statically"))
        // What a program built with --static-swift-stdlib still loads.
        for library in ["libstdc++.so.6", "libgcc_s.so.1"] {
            #expect(
                MissingLibrary.hint(rank: 1, node: "n", library: library)
                    == "rank 1 on n could not start: shared library \(library) is missing on n; install the C++ runtime there (Debian: libstdc++6), "
                    + "or link it into the program; a Swift program: swift build -c release --static-swift-stdlib -Xswiftc -L -Xswiftc "
                    + "/path/to/distr/Linker/static-cxx (README, \"Build\")")
        }
        #expect(!MissingLibrary.isCxxRuntime("libstdc++fs.a") && !MissingLibrary.isCxxRuntime("libgcc.so"))
    }

    @Test func summary_addsTheHintForALoaderFailureOnly() {
        var policy = JobSummaryTests.policy()
        let loader =
            "./prog: error while loading shared libraries: libswiftFoundation.so: cannot open shared object file: No such file or directory\n"
        policy.output(rank: 1, stream: 2, bytes: Array(loader.utf8))
        _ = policy.rankExited(worker: 0, rank: 1, status: .exited(127), endedByDistr: false)
        policy.output(rank: 2, stream: 2, bytes: Array(loader.utf8))
        _ = policy.rankExited(worker: 1, rank: 2, status: .exited(1), endedByDistr: false)
        let lines = JobSummaryTests.summary(policy).lines
        #expect(lines.contains { $0.hasPrefix("rank 1 on host-a could not start: shared library libswiftFoundation.so is missing on host-a;") })
        #expect(!lines.contains { $0.hasPrefix("rank 2 on host-b could not start") }, "exit 1 is not the loader's")
    }
}
