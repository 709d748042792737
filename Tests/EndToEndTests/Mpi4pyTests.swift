import Foundation
import Testing

@testable import DistrCore

/// distr's mpi4py layer (python/mpi4py) with real workers: every call of the subset, its errors,
/// and, where Open MPI and the real mpi4py are installed, the same programs under `mpirun`.
@Suite(.hangGuard) struct Mpi4pyTests {
    init() { Signals.ignorePipe() }

    static let repository = repositoryRoot
    static let check = repository + "/Tests/Programs/mpi4py/check.py"
    static let scenarios = repository + "/Tests/Programs/mpi4py/scenarios.py"
    static let examples = repository + "/Examples/python"

    /// The repository's copy of distr's packages, for a python3 started outside distr.
    static let pythonPath = repository + "/python"

    /// `distr-master run [-q] --local N` of a Python program; ranks import distr's packages from
    /// the copy the worker carries.
    static func run(
        _ ranks: Int, _ program: String, _ arguments: [String] = [], environment: [String: String] = [:], quiet: Bool = true
    ) throws -> MasterRun {
        let options = environment.sorted { $0.key < $1.key }.flatMap { ["--env", "\($0.key)=\($0.value)"] }
        return try TestProcess.master(["run"] + (quiet ? ["-q"] : []) + ["--local", "\(ranks)"] + options + ["python3", program] + arguments)
    }

    /// The lines a run printed, without distr's `[rank] ` labels, sorted.
    static func unlabelled(_ run: MasterRun) -> [String] {
        run.stdoutLines.map { line in
            guard line.hasPrefix("["), let close = line.firstIndex(of: "]") else { return line }
            return String(line[(line.index(close, offsetBy: 2, limitedBy: line.endIndex) ?? line.endIndex)...])
        }.sorted()
    }

    func expectSuccess(_ run: MasterRun, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)", sourceLocation: sourceLocation)
        #expect(!run.stdout.contains("FAILED") && !run.stderr.contains("FAILED"), "\(run.stderr)", sourceLocation: sourceLocation)
    }

    @Test func subset_everyCallGivesMPIsResults() throws {
        let run = try Self.run(4, Self.check)
        expectSuccess(run)
        let lines = Set(Self.unlabelled(run))
        let expected = [
            "rank 0: constants -1 -1 -2 -32766 0 2147483647",
            "rank 2: ring recv {'from': 1, 'list': [1, 1, 1]} 1 1 11 11 0 True",
            "rank 1: by tag two one",
            "rank 3: proc null None -2 -1 0",
            "rank 1: probe True 0 21",
            "rank 0: any source [1, 2, 3]",
            "rank 0: posting order ['first 3', 'second 3']",
            "rank 2: wait status 1 1 42",
            "rank 1: waitany [0, 1, 2] -32766",
            "rank 3: gather [0, 1, 2, 3]",
            "rank 2: gather None",
            "rank 3: reduce lists [0, 1, 2, 3]",
            "rank 0: maxloc (1, 1) (-1, 1)",
            "rank 1: noncommutative 0123 0123",
            "rank 3: scan 10 [0, 1, 2, 3] 0123",
            "rank 0: exscan None None",
            "rank 3: exscan 6 012",
            "rank 1: contexts on dup on world",
            "rank 0: any tag stays in its communicator any tag on dup False",
            "rank 0: split 1 2 [2, 0]",
            "rank 3: split recv 1 1 5",
            "rank 0: undefined color True -",
            "rank 1: Send/Recv array [0.5, 0.5, 0.5, 0.5] 0 70 4 32",
            "rank 1: count spec [0, 1, 2, -1, -1, -1] 3",
            "rank 1: displacements [0, 3, 4, -1, -1, -1]",
            "rank 3: Gather [0, 0, 1, -1, 2, -2, 3, -3]",
            "rank 2: Alltoall [2, 12, 22, 32]",
            "rank 0: user op [1234]",
            "rank 3: user op reduce [1234]",
            "rank 3: Exscan [6]",
            "rank 2: Allreduce IN_PLACE [6, 12]",
            "rank 0: Reduce IN_PLACE [24]",
            "rank 1: Allgather IN_PLACE [0, 100, 200, 300]",
            "rank 0: Gather IN_PLACE [5, 6, 7, 8]",
            "rank 2: Scatter IN_PLACE [2]",
            "rank 3: Alltoall IN_PLACE [3, 13, 23, 33]",
            "rank 0: finalized True",
        ]
        for line in expected { #expect(lines.contains(line), "missing '\(line)' in:\n\(run.stdout)") }
        #expect(lines.count > 350, "\(run.stdout)")
    }

    @Test func subset_pureBufferPathsWithoutNumpy() throws {
        let run = try Self.run(3, Self.check, environment: ["DISTR_NUMPY": "0"])
        expectSuccess(run)
        let lines = Set(Self.unlabelled(run))
        for line in [
            "rank 0: numpy skipped", "rank 1: Allreduce SUM [6, 1]", "rank 2: Allreduce LXOR [1, 1]", "rank 0: Allreduce BXOR [0, 1]",
            "rank 2: user op reduce [123]", "rank 1: Allreduce double [0.5]",
        ] {
            #expect(lines.contains(line), "missing '\(line)' in:\n\(run.stdout)")
        }
    }

    @Test func errors_unsupportedCallsBadRanksAndBufferSpecs() throws {
        for ranks in [1, 3] {
            let run = try Self.run(ranks, Self.scenarios, ["errors"])
            expectSuccess(run)
            #expect(Self.unlabelled(run) == Array(repeating: "ok errors", count: ranks), "\(run.stdout)\n\(run.stderr)")
        }
    }

    @Test func ring_everyoneSends32MiBBeforeAnyoneReceives() throws {
        let run = try Self.run(4, Self.scenarios, ["ring", "32"])
        expectSuccess(run)
        #expect(Self.unlabelled(run) == Array(repeating: "ok ring 32 MiB", count: 4), "\(run.stdout)\n\(run.stderr)")
    }

    @Test func distrModuleAndCommWorld_shareTheJobsCollectiveCalls() throws {
        let run = try Self.run(3, Self.scenarios, ["two-apis"])
        expectSuccess(run)
        #expect(Self.unlabelled(run) == Array(repeating: "ok two-apis", count: 3), "\(run.stdout)\n\(run.stderr)")
    }

    @Test func deadPeer_receivesRaiseInsteadOfHanging() throws {
        let run = try Self.run(3, Self.scenarios, ["dead-peer"])
        expectSuccess(run)
        #expect(
            run.stdoutLines.sorted() == [
                "[0] ok dead-peer",
                "[1] ok dead-peer: every other rank of this communicator (world ranks 2) has exited and no matching message is pending",
                "[1] ok dead-peer: rank 2 has exited (status 0) and no matching message from it is pending",
            ], "\(run.stdout)\n\(run.stderr)")
    }

    @Test func abort_endsTheJobWithTheGivenCode() throws {
        let run = try Self.run(3, Self.scenarios, ["abort"], quiet: false)
        #expect(run.status == 7, "\(run.stdout)\n\(run.stderr)")
        #expect(run.stderr.contains("[1] distr: MPI.Comm.Abort(7) called by rank 1; ending the job"), "\(run.stderr)")
        #expect(!run.stdout.contains("recv returned after Abort") && !run.stderr.contains("recv returned after Abort"))
    }

    @Test func notLaunchedByDistr_isAClearErrorNotRank0Of1() throws {
        let program = "from mpi4py import MPI\nprint('rank', MPI.COMM_WORLD.Get_rank(), 'of', MPI.COMM_WORLD.Get_size())"
        let run = TestProcess.run(try TestProcess(["python3", "-c", program], environment: ["PYTHONPATH": Self.pythonPath]))
        #expect(run.status == 1)
        #expect(run.stdout == "")
        #expect(run.stderr.contains(MessagingTests.notStartedByDistr), "\(run.stderr)")
    }

    @Test func examples_scatterAndPi() throws {
        // As issue 7 writes it: `distr-master run --local 4 scatter.py`, in the example's directory.
        let scatter = try TestProcess.master(["run", "-q", "--local", "4", "scatter.py"], directory: Self.examples)
        expectSuccess(scatter)
        #expect(
            Self.unlabelled(scatter) == [
                "rank 0 has data: 1", "rank 1 has data: 2", "rank 2 has data: 9", "rank 3 has data: 64", "we will be scattering: [1, 2, 9, 64]",
            ], "\(scatter.stdout)\n\(scatter.stderr)")
        for numpy in ["1", "0"] {
            let pi = try Self.run(3, Self.examples + "/pi.py", ["30000"], environment: ["DISTR_NUMPY": numpy])
            expectSuccess(pi)
            #expect(pi.stdoutLines.count == 1 && pi.stdout.hasPrefix("[0] pi is about 3.14159265"), "\(pi.stdout)\n\(pi.stderr)")
        }
    }

    // MARK: - the real thing

    /// True when `mpirun` and a real mpi4py (not this layer) are installed.
    static let realMPIAvailable: Bool = {
        let probe = "command -v mpirun >/dev/null && python3 -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec(\"mpi4py\") is None)'"
        guard let process = try? TestProcess(["/bin/sh", "-c", probe], environment: ["PYTHONPATH": ""]) else { return false }
        return TestProcess.run(process, timeout: 30).status == 0
    }()

    /// What `mpirun -np 4 python3 program` printed, every rank's stdout (from `--output-filename`), sorted.
    static func underMpirun(_ program: String, _ arguments: [String], directory: TemporaryDirectory) throws -> [String] {
        let output = directory.path + "/mpirun-" + (program as NSString).lastPathComponent
        let run = TestProcess.run(
            try TestProcess(
                ["mpirun", "--allow-run-as-root", "--oversubscribe", "--output-filename", output, "-np", "4", "python3", program] + arguments,
                environment: ["PYTHONPATH": ""]),
            timeout: 120)
        #expect(run.status == 0, "mpirun: \(run.stdout)\n\(run.stderr)")
        var lines: [String] = []
        let files = FileManager.default.enumerator(atPath: output)
        while let file = files?.nextObject() as? String {
            guard (file as NSString).lastPathComponent == "stdout" else { continue }
            let text = try String(contentsOfFile: output + "/" + file, encoding: .utf8)
            lines += text.split(separator: "\n").map(String.init)
        }
        return lines.sorted()
    }

    @Test(.enabled(if: realMPIAvailable, "needs mpirun (Open MPI) and the real mpi4py"), arguments: ["check", "scatter", "pi"])
    func sameOutputAsMpirunWithTheRealMpi4py(program: String) throws {
        let path = program == "check" ? Self.check : Self.examples + "/\(program).py"
        let arguments = program == "pi" ? ["200000"] : []
        try withTemporaryDirectory { directory in
            let real = try Self.underMpirun(path, arguments, directory: directory)
            let ours = try Self.run(4, path, arguments)
            expectSuccess(ours)
            #expect(!real.isEmpty)
            #expect(Self.unlabelled(ours) == real, "distr:\n\(ours.stdout)\nmpirun:\n\(real.joined(separator: "\n"))")
        }
    }
}
