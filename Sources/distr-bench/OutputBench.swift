@preconcurrency import Glibc
import DistrCore

extension Bench {
    /// 4 ranks on one worker each write BYTES of 100-byte lines (`--write-lines`); distr-master's
    /// stdout goes to a file, live and `--gather`, against the same four writers into one pipe to
    /// `cat` (to a file too), and against `mpirun -np 4` of the same program. distr's captured
    /// output is then checked: every line whole, under its rank's label, all there, in order.
    mutating func relay() throws {
        let ranks = 4
        let bytesPerRank = quick ? 10_000_000 : 50_000_000
        let runs = quick ? 1 : 3
        let ports = try ports(1)
        let peers = try peersFile("relay", ["127.0.0.1:\(ports[0]) slots=\(ranks)"])
        let output = root + "/relay.out"
        defer { unlink(output) }
        let megabytes = Double(ranks * bytesPerRank) / 1e6
        let check = RelayCheck(ranks: ranks, linesPerRank: bytesPerRank / LineWriter.lineLength)
        let writer = [me, "--write-lines", "\(bytesPerRank)"]
        let writers = (0..<ranks).map { "\(me) --write-lines \(bytesPerRank) \($0) &" }.joined(separator: " ")
        var cat: [Double] = []
        for _ in 0..<runs {
            cat.append(try time(["/bin/sh", "-c", "(\(writers) wait) | cat"], stdoutPath: output, what: "the writers piped to cat"))
        }
        let catRate = megabytes / Self.median(cat)
        var mpiRate: Double?
        if let mpirun = mpirun(), let mpi = timeMPI(mpirun + ["-np", "\(ranks)"] + writer, runs: runs, stdoutPath: output, what: "mpirun writers") {
            mpiRate = megabytes / mpi
        }
        for gathered in [false, true] {
            var times: [Double] = []
            var problem: String?
            for run in 0..<runs {
                let command =
                    [master, "run", "-q", "--timeout", "600"] + (gathered ? ["--gather"] : []) + [
                        "--peers", peers, "--secret-file", secretFile, "--",
                    ] + writer
                times.append(try time(command, stdoutPath: output, what: "the relay job"))
                // The first run's output is checked (the others are timed only: checking takes a while).
                if run == 0 { problem = check.problems(in: output, gathered: gathered) }
            }
            let rate = megabytes / Self.median(times)
            let name = "relay: 4 ranks x \(bytesPerRank / 1_000_000) MB of 100-byte lines, " + (gathered ? "--gather" : "live")
            add(
                name, unit: "MB/s", distr: rate, baseline: catRate, against: "the same 4 writers into one pipe to cat",
                target: .ratioAtLeast(0.5), problem: problem)
            if let mpiRate {
                add(
                    name + " vs mpirun", unit: "MB/s", distr: rate, baseline: mpiRate, against: "mpirun -np 4 of the same writer",
                    target: .ratioAtLeast(3), problem: problem)
            }
        }
        notes.append("relay: output goes to a file in every variant; distr's file is then checked line by line (the 'problem' lines)")
    }

    /// `distr-master exec --gather` on one worker whose rank writes 10, 20 and 40 MB of 1000-byte
    /// lines (stdout to /dev/null). Held output must cost time linear in its size: each row's
    /// baseline is the 10 MB time scaled by size, so a ratio near 1 is linear (it was 4 per
    /// doubling when every chunk copied the output held so far).
    mutating func gather() throws {
        let port = try ports(1)[0]
        var first: Double?
        for megabytes in [10, 20, 40] {
            let bytes = megabytes * 1_000_000
            let command =
                "exec \(master) exec -q --gather --hosts 127.0.0.1:\(port) --secret-file \(secretFile) -- "
                + "'head -c \(bytes) /dev/zero | tr \"\\\\0\" x | fold -w 999' > /dev/null"
            var times: [Double] = []
            for _ in 0..<(quick ? 1 : 3) { times.append(try time(["/bin/sh", "-c", command], what: "--gather of \(megabytes) MB")) }
            let seconds = Self.median(times)
            let scaled = first.map { $0 * Double(megabytes) / 10 }
            if first == nil { first = seconds }
            add(
                "--gather, 1 rank x \(megabytes) MB", unit: "s", distr: seconds, baseline: scaled, against: "the 10 MB time x \(megabytes / 10)",
                target: scaled == nil ? nil : .ratioAtMost(1.5))
        }
    }
}
