import Foundation
import Testing

@testable import DistrCore

/// The repository's root (Tests/EndToEndTests/ is two levels below it).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The distr Python module (python/distr) with real workers and the machine's python3: every
/// scenario of Tests/Programs/python-check.py, and Swift and Python ranks in one job.
@Suite(.hangGuard) struct PythonModuleTests {
    init() { Signals.ignorePipe() }

    static let checkScript = repositoryRoot + "/Tests/Programs/python-check.py"
    static let peerScript = repositoryRoot + "/Tests/Programs/python-peer.py"
    static let leanScript = repositoryRoot + "/Tests/Programs/python-lean.py"
    static let swiftCheck = Binaries.example("distr-check")

    /// `python3 python-check.py SCENARIO` on `ranks` local workers.
    func check(_ scenario: String, ranks: Int, options: [String] = []) throws -> MasterRun {
        try TestProcess.master(["run", "-q", "--local", "\(ranks)"] + options + ["python3", Self.checkScript, scenario])
    }

    func expectAllRanks(_ run: MasterRun, _ line: String, ranks: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)", sourceLocation: sourceLocation)
        #expect(
            run.stdoutLines.sorted() == (0..<ranks).map { "[\($0)] \(line)" }.sorted(), "\(run.stdout)\n\(run.stderr)",
            sourceLocation: sourceLocation)
    }

    @Test(arguments: [1, 2, 4])
    func distrCompAPI_identitySendRecvProbeIntoAndTheNodeWrapper(ranks: Int) throws {
        expectAllRanks(try check("api", ranks: ranks), "ok api", ranks: ranks)
    }

    @Test(arguments: [1, 3])
    func transport_postedReceivesWaitAnyCancelAndMembers(ranks: Int) throws {
        expectAllRanks(try check("transport", ranks: ranks), "ok transport", ranks: ranks)
    }

    /// `import distr` (and distr's `from mpi4py import MPI`) and a ring in which every rank dials
    /// another worker load none of pickle, re, socket, hashlib with OpenSSL, hmac or the idna
    /// codec: together about 20 ms of CPU per rank at start.
    @Test(arguments: ["distr", "mpi4py"])
    func ringAcrossWorkers_loadsNoneOfTheModulesKeptOffARanksStart(mode: String) throws {
        let run = try TestProcess.master(["run", "-q", "--local", "4", "python3", Self.leanScript, mode])
        expectAllRanks(run, "ok lean \(mode)", ranks: 4)
    }

    @Test func everyEncoding_travelsBothWaysBetweenPythonRanks() throws {
        expectAllRanks(try check("encodings", ranks: 2), "ok encodings", ranks: 2)
    }

    @Test func pureStandardLibraryPath_withDISTR_NUMPY0_neverImportsNumpy() throws {
        expectAllRanks(try check("pure", ranks: 3, options: ["--env", "DISTR_NUMPY=0"]), "ok pure", ranks: 3)
    }

    @Test(arguments: [1, 2, 3, 5])
    func collectives_everyOperationWithBuiltInOpsAndCallables(ranks: Int) throws {
        expectAllRanks(try check("collectives", ranks: ranks), "ok collectives", ranks: ranks)
    }

    /// A worker started with a relative `--work-dir` hands its ranks absolute paths: the ranks
    /// run inside their job directories, where the relative module directories on PYTHONPATH
    /// named nothing, so `import distr` failed and `from mpi4py import MPI` found an installed
    /// mpi4py (every rank rank 0 of 1) instead of distr's.
    @Test func relativeWorkDirectory_ranksStillGetDistrsModulesAndAnAbsoluteJobDirectory() throws {
        try withTemporaryDirectory { root in
            let secret = root.path + "/secret"
            try ClusterSecret.generate(path: secret)
            try FileIO.makeDirectories(root.path + "/jobs")
            // The worker runs in `root` and is told `--work-dir jobs` (the last one counts).
            let worker = try TestWorker(
                secretFile: secret, workDirectory: root.path + "/unused", arguments: ["--work-dir", "jobs"],
                prefix: ["/usr/bin/env", "-C", root.path])
            defer { worker.stop() }
            let program = "import os, distr, mpi4py; print(os.environ['DISTR_JOB_DIR']); print(distr.__file__); print(mpi4py.__file__)"
            let run = try TestProcess.master(["run", "-q", "--hosts", worker.peer, "--secret-file", secret, "--", "python3", "-c", program])
            #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
            let lines = run.stdoutLines.map { $0.hasPrefix("[0] ") ? String($0.dropFirst(4)) : $0 }
            try #require(lines.count == 3, "\(run.stdout)\n\(run.stderr)")
            #expect(lines[0].hasPrefix("/") && lines[0].contains("/jobs/distr-"), "job directory: \(lines[0])")
            #expect(lines[1].hasPrefix("/") && lines[1].contains("/jobs/.distr-python/"), "distr: \(lines[1])")
            #expect(lines[2].hasPrefix("/") && lines[2].contains("/jobs/.distr-python/") && lines[2].contains("/mpi4py-shim/"), "mpi4py: \(lines[2])")
        }
    }

    @Test func socketPairsFromTheWorker_carryTheSameTraffic() throws {
        // Ranks 0-2 share worker 0 (socket pairs handed over the agent channel), rank 3 is on worker 1 (TCP).
        try withTestCluster(workers: 2, slots: [3, 1]) { cluster in
            for scenario in ["api", "transport", "encodings", "collectives", "bigring"] {
                let run = try cluster.master(["run", "-q"] + ["python3", Self.checkScript, scenario])
                expectAllRanks(run, "ok \(scenario)", ranks: 4)
            }
        }
    }

    @Test(arguments: [2, 3, 4])
    func swiftAndPythonRanks_callTheSameCollectivesTogether(ranks: Int) throws {
        let script =
            "if [ $((DISTR_NODE_ID % 2)) = 0 ]; then exec \(Self.swiftCheck) python-collectives; else exec python3 \(Self.peerScript) collectives; fi"
        let run = try TestProcess.master(["run", "-q", "--local", "\(ranks)"] + ["sh", "-c", script])
        expectAllRanks(run, "ok python-collectives", ranks: ranks)
    }

    @Test func swiftAndPythonRanks_onOneWorker_callTheSameCollectivesTogether() throws {
        let script =
            "if [ $((DISTR_NODE_ID % 2)) = 0 ]; then exec \(Self.swiftCheck) python-collectives; else exec python3 \(Self.peerScript) collectives; fi"
        try withTestCluster(workers: 1, slots: [4]) { cluster in
            let run = try cluster.master(["run", "-q"] + ["sh", "-c", script])
            expectAllRanks(run, "ok python-collectives", ranks: 4)
        }
    }

    @Test func typeMismatch_raisesNamingTheSenderAndBothTypes() throws {
        expectAllRanks(try check("mismatch", ranks: 2), "ok mismatch", ranks: 2)
    }

    @Test func bufferedSends_everyoneSends32MiBBeforeAnyoneReceives() throws {
        expectAllRanks(try check("bigring", ranks: 4), "ok bigring", ranks: 4)
    }

    @Test func deadPeer_raisesPeerExitedInsteadOfHanging() throws {
        let run = try check("dead", ranks: 2, options: ["--keep-going"])
        #expect(run.status == 3, "\(run.stderr)")
        #expect(run.stdoutLines == ["[0] ok dead"], "\(run.stdout)\n\(run.stderr)")
    }

    @Test func abortedJob_raisesJobAbortedInTheRanksThatWait() throws {
        let run = try check("aborted", ranks: 3)
        #expect(run.status == 2, "\(run.stderr)")
        for rank in [0, 2] {
            #expect(run.stdoutLines.contains("[\(rank)] aborted: the job is being ended: rank 1 failed (exit 2)"), "\(run.stdout)")
            #expect(run.stdoutLines.contains("[\(rank)] ok aborted"), "\(run.stdout)\n\(run.stderr)")
        }
    }

    @Test func notLaunchedByDistr_failsWithHowToRunIt() throws {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("DISTR_") }
        environment["PYTHONPATH"] = repositoryRoot + "/python"
        let script = "import distr; print('imported'); print(distr.node_id)"
        let process = try TestProcess(["/usr/bin/env", "-i"] + environment.map { "\($0.key)=\($0.value)" } + ["python3", "-c", script])
        let run = TestProcess.run(process)
        #expect(run.status == 1)
        #expect(run.stdout == "imported\n", "import distr works anywhere; only using it fails")
        #expect(
            run.stderr.contains(
                "DistrError: this program was not started by distr-master (DISTR_NODE_ID is not set); run it with: distr-master run --local 4 <program>"
            ), "\(run.stderr)")
    }

    @Test func malformedHeader_closesTheConnectionAndNamesTheRank() throws {
        expectAllRanks(try check("malformed", ranks: 2), "ok malformed", ranks: 2)
    }

    @Test func oversizedMessage_isRefusedAgainstDISTR_MAX_MESSAGE_BYTES() throws {
        expectAllRanks(try check("oversized", ranks: 2, options: ["--env", "DISTR_MAX_MESSAGE_BYTES=4096"]), "ok oversized", ranks: 2)
        let bad = try check("api", ranks: 1, options: ["--env", "DISTR_MAX_MESSAGE_BYTES=lots"])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("DISTR_MAX_MESSAGE_BYTES=lots is not a byte count"), "\(bad.stderr)")
    }

    @Test func uncaughtException_endsTheJobWithItsTraceback() throws {
        let run = try check("crash", ranks: 2)
        #expect(run.status == 1)
        #expect(run.stderr.contains("[1] Traceback (most recent call last):"), "\(run.stderr)")
        #expect(run.stderr.contains("[1] ValueError: boom in rank 1"), "\(run.stderr)")
    }

    /// As issue 7 writes it: `distr-master run --local 4 ring.py` where ring.py is, not executable.
    @Test func ringExample_runsInDistrCompStyle_asAUserTypesIt() throws {
        let ring = repositoryRoot + "/Examples/python/ring.py"
        #expect(!FileIO.isExecutable(ring), "the README's command must work on a .py without its x bit")
        let run = try TestProcess.master(["run", "-q", "--local", "3", "ring.py"], directory: repositoryRoot + "/Examples/python")
        #expect(run.status == 0, "\(run.stderr)")
        for rank in 0..<3 {
            #expect(run.stdoutLines.contains("[\(rank)] My ID is \(rank)"), "\(run.stdout)")
            #expect(run.stdoutLines.contains("[\(rank)] Next to \((rank + 2) % 3) is \(rank)"), "\(run.stdout)")
        }
    }

    @Test func mixedExample_swiftAndPythonRanksInOneJob() throws {
        let run = try TestProcess.master(
            [
                "run", "-q", "--local", "4", "--env", "MIXED_SWIFT=\(Binaries.example("mixed"))", "--file", "Examples/python/mixed/mixed.py",
                "Examples/python/mixed/run.sh",
            ], directory: repositoryRoot)
        #expect(run.status == 0, "\(run.stderr)")
        let expected = [
            "[0] rank 0 (Swift) got: hello from rank 3 (Python)", "[1] rank 1 (Python) got: hello from rank 0 (Swift)",
            "[2] rank 2 (Swift) got: hello from rank 1 (Python)", "[3] rank 3 (Python) got: hello from rank 2 (Swift)",
            "[0] languages: Swift Python Swift Python", "[0] settings from rank 1: samples=3",
            "[0] element-wise totals: [6.0, 10.0, 14.0], samples per rank: [3, 3, 3, 3]",
        ]
        #expect(run.stdoutLines.sorted() == expected.sorted(), "\(run.stdout)\n\(run.stderr)")
    }
}
