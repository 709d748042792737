import DistrCore

extension Bench {
    /// `distr-master exec --gather` on one worker whose rank writes 10, 20 and 40 MB of 1000-byte
    /// lines (stdout to /dev/null). Held output must cost time linear in its size: each row's
    /// baseline is the 10 MB time scaled by size, so a ratio near 1 is linear (it was 4 per
    /// doubling when every chunk copied the output held so far).
    mutating func gather(port: Int) throws {
        var first: Double?
        for megabytes in [10, 20, 40] {
            let bytes = megabytes * 1_000_000
            let command =
                "exec \(master) exec -q --gather --hosts 127.0.0.1:\(port) --secret-file \(secretFile) -- "
                + "'head -c \(bytes) /dev/zero | tr \"\\\\0\" x | fold -w 999' > /dev/null"
            var times: [Double] = []
            for _ in 0..<(quick ? 1 : 3) {
                let start = DistrCore.Clock.now
                let status = try Subprocess(["/bin/sh", "-c", command], stderrPath: root + "/master.log").wait()
                guard status == .exited(0) else { throw NodeError.badArgument("--gather bench failed: \(status)") }
                times.append(DistrCore.Clock.now - start)
            }
            let time = Self.median(times)
            let scaled = first.map { $0 * Double(megabytes) / 10 }
            if first == nil { first = time }
            add("--gather, 1 rank × \(megabytes) MB (baseline: 10 MB time × \(megabytes / 10))", unit: "s", distr: time, baseline: scaled)
        }
    }
}
