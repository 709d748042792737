import DistrCore

/// barrier, broadcast of 8 MB and allReduce of 1M doubles on 4 and 8 ranks of one worker,
/// against the same operations in mpi4py under `mpirun -np N` on this machine (Open MPI's shared
/// memory) when `--compare-mpi` finds mpirun and mpi4py with numpy.
extension Bench {
    mutating func collectives() throws {
        let ports = try ports(1)
        let mpi = try mpi4pyCommand()
        for ranks in [4, 8] {
            let peers = try peersFile("collectives-\(ranks)", ["127.0.0.1:\(ports[0]) slots=\(ranks)"])
            let results = try rankJob(["collectives", "-", quick ? "quick" : "full"], peers: peers, what: "collectives job on \(ranks) ranks")
            var baselines: [String: Double] = [:]
            if let mpi {
                let output = try Subprocess(
                    mpi.mpirun + ["-np", "\(ranks)", mpi.python, mpi.script, quick ? "quick" : "full"], environment: Self.mpirunEnvironment,
                    stderrPath: root + "/mpi.log")
                guard output.wait() == .exited(0) else { throw NodeError.badArgument("mpi4py collectives failed\n\(log(root + "/mpi.log"))") }
                for (name, value, _) in RankBench.results(output.text) { baselines[name] = value }
            }
            for (name, distr, _) in results {
                let unit = name == "barrier" ? "µs" : "ms"
                // Issue 9 §2: no slower than mpi4py (allReduce: on 4 ranks).
                let target: Target? = name.hasPrefix("broadcast") || (name.hasPrefix("allReduce") && ranks == 4) ? .ratioAtMost(1) : nil
                add(
                    "collectives: \(name), \(ranks) ranks of one node", unit: unit, distr: distr, baseline: baselines[name],
                    against: mpi == nil ? "none (--compare-mpi: mpi4py)" : "mpi4py on numpy arrays, mpirun -np \(ranks)",
                    target: mpi == nil ? nil : target)
            }
        }
    }

    /// mpirun, python3 and the mpi4py collectives script, when `--compare-mpi` is given and all
    /// are there (else nil, with a note).
    mutating func mpi4pyCommand() throws -> (mpirun: [String], python: String, script: String)? {
        guard let mpirun = mpirun() else { return nil }
        guard let setup = pythonSetup(), setup.mpi4py, setup.numpy else {
            notes.append("mpi4py comparisons skipped: python3 with mpi4py and numpy is not installed (pip install mpi4py numpy)")
            return nil
        }
        let script = root + "/collectives_mpi4py.py"
        try FileIO.write(script, Array(PythonBenchPrograms.collectives.utf8), mode: 0o644, exclusive: false)
        return (mpirun, setup.python, script)
    }
}
