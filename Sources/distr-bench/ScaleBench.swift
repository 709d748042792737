import DistrCore

/// 64 workers on this machine: `exec true` on all of them against spawning 64 `/bin/true`
/// (and `mpirun -np 64 true`); each worker's resident memory at rest, and after 1,000 jobs.
extension Bench {
    mutating func scale() throws {
        let count = 64
        let workers = try startWorkers(count)
        defer { WorkerProcess.stop(workers) }
        let hosts = workers.map { "127.0.0.1:\($0.port)" }.joined(separator: ",")
        let command = [master, "exec", "-q", "--hosts", hosts, "--secret-file", secretFile, "--", "true"]
        var distr: [Double] = []
        var floor: [Double] = []
        for _ in 0..<(quick ? 3 : 7) {
            distr.append(try time(command, what: "exec true on 64 workers"))
            floor.append(try spawnTrue(count))
        }
        let name = "scale: exec true on 64 workers"
        add(
            name, unit: "s", distr: Self.median(distr), baseline: Self.median(floor), against: "posix_spawn of 64 /bin/true, waited for",
            target: .atMost(0.1))
        if let mpirun = mpirun(),
            let mpi = timeMPI(mpirun + ["-np", "\(count)", "true"], runs: quick ? 2 : 5, timeout: 30, what: "mpirun -np 64 true")
        {
            add(name + " vs mpirun", unit: "s", distr: Self.median(distr), baseline: mpi, against: "mpirun -np 64 true")
        }
        let atRest = try workers.map { try Self.residentMegabytes($0.pid) }
        add(
            "scale: worker memory at rest (largest of 64)", unit: "MB", distr: atRest.max(), baseline: nil,
            against: "none: an absolute target (VmRSS)", target: .atMost(15))
        // The jobs go to 4 of the workers through one `distr-master shell` (a job per line on
        // each): 1,000 jobs each, without 1,000 master start-ups.
        let jobs = quick ? 200 : 1000
        let busy = Array(workers.prefix(4))
        let lines = root + "/jobs.txt"
        try FileIO.write(lines, Array(String(repeating: "true\n", count: jobs).utf8), mode: 0o644, exclusive: false)
        let shellHosts = busy.map { "127.0.0.1:\($0.port)" }.joined(separator: ",")
        try time(
            [master, "shell", "--hosts", shellHosts, "--secret-file", secretFile], stdoutPath: "/dev/null", stdinPath: lines,
            what: "\(jobs) jobs through distr-master shell")
        let before = busy.indices.map { atRest[$0] }.max()
        let after = try busy.map { try Self.residentMegabytes($0.pid) }.max()
        add(
            "scale: worker memory after \(jobs) jobs (largest of the 4 that ran them)", unit: "MB", distr: after, baseline: before,
            against: "the same workers at rest", target: Target.ratioAtMost(1.1).and(.atMost(15)))
    }

    /// VmRSS of a process, in MB (10^6 bytes).
    static func residentMegabytes(_ pid: Int32) throws -> Double {
        let text = String(decoding: try FileIO.readAll("/proc/\(pid)/status"), as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let field = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first, let kilobytes = Double(field)
        else { throw NodeError.badArgument("no VmRSS in /proc/\(pid)/status") }
        return kilobytes * 1024 / 1e6
    }
}
