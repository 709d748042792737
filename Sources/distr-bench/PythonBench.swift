@preconcurrency import Glibc
import DistrCore
import Foundation

/// Python ranks (issue 7 §5): the whole command for a 4-rank ring, small-object latency and
/// 16 MiB numpy bandwidth, beside mpirun with the real mpi4py when both are installed. The
/// programs are written into the bench's temporary directory, so the bench needs no checkout.
extension Bench {
    /// `python3` on PATH and which optional modules it has (nil: no python3, Python cases skipped).
    struct PythonSetup {
        var python: String
        var numpy: Bool
        /// The real mpi4py is importable outside distr.
        var mpi4py: Bool
        /// `mpirun` when `--compare-mpi` asks for it and mpi4py is there too.
        var mpirun: [String]?
    }

    /// `python3` on PATH, resolved to the interpreter it starts (`sys.executable`) when it is a
    /// launcher such as pyenv's shim, a shell script that costs more than the interpreter's own
    /// start: distr, mpirun and the floor all run the interpreter itself, and a note says so.
    /// Looked up once per run.
    mutating func pythonSetup() -> PythonSetup? {
        if let found = pythonFound { return found }
        let found = lookUpPython()
        pythonFound = .some(found)
        return found
    }

    private mutating func lookUpPython() -> PythonSetup? {
        guard let onPath = Self.which("python3") else { return nil }
        var python = onPath
        let probe = try? Subprocess([onPath, "-c", "import sys; print(sys.executable)"])  // Cannot start: the cases below fail and say why.
        if let probe, probe.wait() == .exited(0) {
            let resolved = probe.text.trimmingCharacters(in: .whitespacesAndNewlines)
            if resolved.hasPrefix("/"), resolved != onPath, FileIO.isExecutable(resolved) {
                python = resolved
                notes.append(
                    "python3 on PATH (\(onPath)) starts \(resolved); the Python cases run that interpreter directly, "
                        + "under distr, mpirun and the floor alike")
            }
        }
        func imports(_ module: String) -> Bool {
            let probe = try? Subprocess([python, "-c", "import \(module)"])  // Cannot even start python3: treated as missing.
            return probe?.wait() == .exited(0)
        }
        return PythonSetup(python: python, numpy: imports("numpy"), mpi4py: imports("mpi4py"))
    }

    mutating func python() throws {
        guard var setup = pythonSetup() else {
            notes.append("Python cases skipped: no python3 on PATH")
            return
        }
        if let mpirun = mpirun() {
            if setup.mpi4py { setup.mpirun = mpirun } else { notes.append("mpi4py comparisons skipped: mpi4py is not installed") }
        }
        let ports = try ports(2)
        let directory = root + "/python"
        try FileIO.makeDirectories(directory)
        for (name, text) in PythonBenchPrograms.all {
            try FileIO.write(directory + "/" + name, Array(text.utf8), mode: 0o644, exclusive: false)
        }
        try pythonRing(setup, directory: directory)
        try pythonLatency(setup, directory: directory, ports: ports)
        if setup.numpy {
            try pythonBandwidth(setup, directory: directory, ports: ports)
        } else {
            notes.append("Python bandwidth skipped: numpy is not installed")
        }
    }

    /// Runs a command and returns the wall time in seconds, or throws with its log.
    func timed(_ arguments: [String], environment: [String: String] = [:], what: String) throws -> (seconds: Double, output: String) {
        let start = DistrCore.Clock.now
        let job = try Subprocess(arguments, environment: environment, stderrPath: root + "/python.log")
        let status = job.wait()
        let seconds = DistrCore.Clock.now - start
        guard status == .exited(0) else { throw NodeError.badArgument("\(what) failed: \(status); see \(root)/python.log") }
        return (seconds, job.text)
    }

    /// The `RESULT <number>` line a Python benchmark rank prints.
    static func result(_ output: String) -> Double? {
        for line in output.split(separator: "\n") {
            guard let start = line.range(of: "RESULT ") else { continue }
            return Double(line[start.upperBound...].trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    mutating func pythonRing(_ setup: PythonSetup, directory: String) throws {
        let runs = quick ? 3 : 7
        var distr: [Double] = []
        var mpi: [Double] = []
        var floor: [Double] = []
        for _ in 0..<runs {
            // The floor: four interpreters started at once and waited for, doing nothing.
            let start = DistrCore.Clock.now
            let idle = try (0..<4).map { _ in try Subprocess([setup.python, "-c", "pass"]) }
            for process in idle { process.wait() }
            floor.append(DistrCore.Clock.now - start)
            let command = [master, "run", "-q", "--local", "4", "--", setup.python, directory + "/ring_distr.py"]
            distr.append(try timed(command, what: "the Python ring under distr").seconds)
            if let mpirun = setup.mpirun {
                let command = mpirun + ["-np", "4", setup.python, directory + "/ring_mpi4py.py"]
                mpi.append(try timed(command, environment: Self.mpirunEnvironment, what: "the Python ring under mpirun").seconds)
            }
        }
        add(
            "python: 4-rank ring, whole command (distr-master run --local 4)", unit: "ms", distr: Self.median(distr) * 1e3,
            baseline: Self.median(floor) * 1e3, against: "four idle python3 started at once (the interpreter floor)")
        if !mpi.isEmpty {
            add(
                "python: 4-rank ring, whole command vs mpirun", unit: "ms", distr: Self.median(distr) * 1e3, baseline: Self.median(mpi) * 1e3,
                against: "the same ring in mpi4py, mpirun -np 4", target: .ratioAtMost(0.33))
        }
    }

    mutating func pythonLatency(_ setup: PythonSetup, directory: String, ports: [Int]) throws {
        let script = directory + "/pingpong.py"
        let twoWorkers = ["--hosts", "127.0.0.1:\(ports[0]),127.0.0.1:\(ports[1])"]
        let oneWorker = root + "/peers-python-one-worker"
        try FileIO.write(oneWorker, Array("127.0.0.1:\(ports[0]) slots=2\n".utf8), mode: 0o644, exclusive: false)
        func distr(_ api: String, hosts: [String]) throws -> Double {
            let command = [master, "run", "-q"] + hosts + ["--secret-file", secretFile, "--", setup.python, script, api]
            let output = try timed(command, what: "the Python ping-pong (\(api))").output
            guard let value = Self.result(output) else { throw NodeError.badArgument("the Python ping-pong printed no result: \(output)") }
            return value
        }
        var mpiTCP: Double?
        var mpiShared: Double?
        if let mpirun = setup.mpirun {
            let tcp = try timed(
                mpirun + ["-np", "2", "--mca", "btl", "tcp,self", setup.python, script, "mpi4py"], environment: Self.mpirunEnvironment,
                what: "mpi4py ping-pong over TCP")
            mpiTCP = Self.result(tcp.output)
            let shared = try timed(
                mpirun + ["-np", "2", setup.python, script, "mpi4py"], environment: Self.mpirunEnvironment, what: "mpi4py ping-pong")
            mpiShared = Self.result(shared.output)
        }
        let module = try distr("distr", hosts: twoWorkers)
        let layer = try distr("mpi4py", hosts: twoWorkers)
        let sameNode = try distr("distr", hosts: ["--peers", oneWorker])
        // Without --compare-mpi these have no baseline in the run: shown, not judged.
        let overTCP = mpiTCP == nil ? "none (--compare-mpi: mpi4py over TCP)" : "mpi4py over TCP, mpirun -np 2 --mca btl tcp,self"
        add(
            "python: small-object send/recv, distr module, two workers", unit: "µs one way", distr: module, baseline: mpiTCP,
            against: overTCP, target: mpiTCP == nil ? nil : .ratioAtMost(2))
        add(
            "python: small-object send/recv, distr's mpi4py layer, two workers", unit: "µs one way", distr: layer, baseline: mpiTCP,
            against: overTCP)
        add(
            "python: small-object send/recv, distr module, one worker", unit: "µs one way", distr: sameNode, baseline: mpiShared,
            against: mpiShared == nil ? "none (--compare-mpi: mpi4py, shared memory)" : "mpi4py, shared memory, mpirun -np 2")
    }

    mutating func pythonBandwidth(_ setup: PythonSetup, directory: String, ports: [Int]) throws {
        let hosts = "127.0.0.1:\(ports[0]),127.0.0.1:\(ports[1])"
        let command = [master, "run", "-q", "--hosts", hosts, "--secret-file", secretFile, "--", setup.python, directory + "/stream.py"]
        let output = try timed(command, what: "the Python 16 MiB stream").output
        guard let python = Self.result(output) else { throw NodeError.badArgument("the Python stream printed no result: \(output)") }
        let swiftName = "messaging: bandwidth 16 MiB, two workers on loopback"
        if !cases.contains(where: { $0.name == swiftName }) {
            let peers = try peersFile("python-swift", ["127.0.0.1:\(ports[0])", "127.0.0.1:\(ports[1])"])
            try messaging(label: "two workers on loopback", peers: peers, transport: "tcp")
        }
        let swift = cases.first { $0.name == swiftName }?.distr
        add(
            "python: numpy Send/Recv 16 MiB, two workers", unit: "MB/s", distr: python, baseline: swift,
            against: "Swift ranks on the same path (distr)", target: .ratioAtLeast(0.7))
    }
}

/// The Python programs the bench runs. The same mpi4py programs run under mpirun (the real
/// mpi4py) and under distr (distr's layer).
enum PythonBenchPrograms {
    static let all: [(String, String)] = [
        ("ring_distr.py", ringDistr), ("ring_mpi4py.py", ringMPI), ("pingpong.py", pingPong), ("stream.py", stream),
    ]

    static let ringDistr = """
        import distr

        me, n = distr.node_id, distr.n_node
        print(f"My ID is {me}")
        distr.send((me + 1) % n, f"Next to {me} is {(me + 1) % n}")
        print(distr.recv((me - 1) % n))

        """

    static let ringMPI = """
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        me, n = comm.Get_rank(), comm.Get_size()
        print(f"My ID is {me}")
        comm.send(f"Next to {me} is {(me + 1) % n}", dest=(me + 1) % n)
        print(comm.recv(source=(me - 1) % n))

        """

    /// One-way latency of a small object, median of five batches, printed by rank 0 in µs.
    static let pingPong = """
        import sys
        import time

        if sys.argv[1] == "distr":
            import distr
            me, barrier = distr.node_id, distr.barrier
            send = lambda obj, dest: distr.send(dest, obj)
            recv = lambda source: distr.recv(source)
        else:
            from mpi4py import MPI
            comm = MPI.COMM_WORLD
            me, barrier = comm.Get_rank(), comm.barrier
            send = lambda obj, dest: comm.send(obj, dest=dest)
            recv = lambda source: comm.recv(source=source)
        peer = 1 - me


        def batch(iterations):
            barrier()
            start = time.perf_counter()
            for _ in range(iterations):
                if me == 0:
                    send(42, peer)
                    recv(peer)
                else:
                    send(recv(peer), peer)
            return (time.perf_counter() - start) / (2 * iterations)


        batch(500)
        times = sorted(batch(4000) for _ in range(5))
        if me == 0:
            print("RESULT", times[2] * 1e6, flush=True)

        """

    /// Collectives on numpy arrays, timed as RankBench.collectives times distr's: `RESULT name value -1`.
    static let collectives = """
        import sys
        import time

        import numpy as np
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        me, n = comm.Get_rank(), comm.Get_size()
        repeats = 3 if sys.argv[1:] == ["quick"] else 7


        def report(name, values, scale):
            if me == 0:
                print(f"RESULT {name}\t{sorted(values)[len(values) // 2] * scale}\t-1", flush=True)


        barriers = []
        comm.Barrier()
        for _ in range(repeats):
            comm.Barrier()
            start = time.perf_counter()
            for _ in range(100):
                comm.Barrier()
            barriers.append((time.perf_counter() - start) / 100)
        report("barrier", barriers, 1e6)

        data = np.full(1 << 20, 1.5 if me == 0 else 0.0)
        comm.Bcast(data, root=0)
        broadcasts = []
        for _ in range(repeats):
            comm.Barrier()
            start = time.perf_counter()
            comm.Bcast(data, root=0)
            comm.Barrier()
            broadcasts.append(time.perf_counter() - start)
            assert data[12345] == 1.5
        report("broadcast 8 MB", broadcasts, 1e3)

        values = np.full(1 << 20, float(me))
        result = np.empty_like(values)
        comm.Allreduce(values, result, op=MPI.SUM)
        reductions = []
        for _ in range(repeats):
            comm.Barrier()
            start = time.perf_counter()
            comm.Allreduce(values, result, op=MPI.SUM)
            reductions.append(time.perf_counter() - start)
            assert result[12345] == n * (n - 1) / 2
        report("allReduce 1M doubles", reductions, 1e3)

        """

    /// 16 MiB numpy messages one way (8 per batch, then a one-byte acknowledgement), in MB/s.
    static let stream = """
        import time

        import numpy as np
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        me = comm.Get_rank()
        peer = 1 - me
        size, count = 16 << 20, 8
        buffer = np.ones(size, dtype=np.uint8)
        ack = np.zeros(1, dtype=np.uint8)


        def batch():
            comm.barrier()
            start = time.perf_counter()
            if me == 0:
                for _ in range(count):
                    comm.Send(buffer, dest=peer)
                comm.Recv(ack, source=peer)
            else:
                for _ in range(count):
                    comm.Recv(buffer, source=peer)
                comm.Send(ack, dest=peer)
            return size * count / (time.perf_counter() - start) / 1e6


        batch()
        rates = sorted(batch() for _ in range(5))
        if me == 0:
            print("RESULT", rates[2], flush=True)

        """
}
