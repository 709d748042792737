import Synchronization

/// Prints rank output on the master: live labelled lines, or per-node blocks at the end.
/// Each batch of lines is written with one `write`, under a lock, so lines of different ranks
/// never mix inside a line. Bytes are passed through as they came.
///
/// Held output (`--group`, `--gather`) goes to one `OutputSpool` per rank and stream: memory
/// and time stay linear in the output, and past `memoryLimitPerRank` (or `memoryLimitTotal` for
/// the whole job) it lives in unnamed temporary files.
///
/// `--gather` prints the first rank's stdout as it arrives once it is known to be a group of its
/// own (`Lead`): its block comes first whatever the others hold, so it need not be held at all.
package final class OutputPrinter: Sendable {
    /// A rank's held stdout and stderr.
    final class Held: Sendable {
        /// `outIsPrinted`: the stdout is printed as it arrives (the `Lead` rank's, once its group is known).
        let spools: Mutex<(out: OutputSpool, err: OutputSpool, outIsPrinted: Bool)>
        init(memoryLimit: Int, budget: OutputBudget, directory: String) {
            spools = Mutex(
                (
                    OutputSpool(memoryLimit: memoryLimit, budget: budget, directory: directory),
                    OutputSpool(memoryLimit: memoryLimit, budget: budget, directory: directory),
                    false
                ))
        }
    }

    /// `--gather`: the first rank's stdout, compared with every other rank's as they arrive. Once
    /// each of them differs from it somewhere in the first `window` bytes, no rank can share its
    /// group, and that group is printed first: its block is printed then, and the rest of its
    /// stdout as it comes, instead of being held (and spilled) to the end. Outputs alike in
    /// their first `window` bytes (or not in memory that far) leave everything held, as before.
    struct Lead {
        static let window = 4096
        let rank: Int
        /// Ranks not yet seen to differ from `rank`, and how many bytes of theirs were compared.
        var open: [Int: Int]
        /// Printing (true) or given up (false); nil while undecided.
        var decided: Bool?
        /// Why the output held before printing began is incomplete, if it is (said at the end).
        var failure: String?
    }

    package static let defaultMemoryLimitPerRank = 8 << 20
    package static let defaultMemoryLimitTotal = 64 << 20

    let mode: OutputMode
    let timestamps: Bool
    let stdoutFD: Int32
    let stderrFD: Int32
    let files: OutputFiles?
    private let writeLock = Mutex(())
    /// The live progress line, when one is drawn: output written while it shows erases it first.
    private let progress = Mutex<ProgressLine?>(nil)
    private let held: [Int: Held]
    private let lead: Mutex<Lead?>
    package let budget: OutputBudget

    /// - Parameters:
    ///   - ranks: the job's ranks (their output is held in group and gather modes).
    ///   - temporaryDirectory: where held output past the memory limits goes (default `$TMPDIR`, else /tmp).
    package init(
        mode: OutputMode, ranks: Range<Int> = 0..<0, timestamps: Bool = false, files: OutputFiles? = nil,
        memoryLimitPerRank: Int = defaultMemoryLimitPerRank, memoryLimitTotal: Int = defaultMemoryLimitTotal,
        temporaryDirectory: String? = nil, stdoutFD: Int32 = 1, stderrFD: Int32 = 2
    ) {
        self.mode = mode
        self.timestamps = timestamps
        self.files = files
        self.stdoutFD = stdoutFD
        self.stderrFD = stderrFD
        let budget = OutputBudget(limit: memoryLimitTotal)
        self.budget = budget
        let directory = temporaryDirectory ?? Environment.value("TMPDIR").flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var held: [Int: Held] = [:]
        if mode != .live {
            for rank in ranks { held[rank] = Held(memoryLimit: memoryLimitPerRank, budget: budget, directory: directory) }
        }
        self.held = held
        let others = ranks.dropFirst().map { ($0, 0) }
        lead = Mutex(mode == .gather ? ranks.first.map { Lead(rank: $0, open: Dictionary(uniqueKeysWithValues: others)) } : nil)
    }

    /// Shows (or, with nil, stops showing) `line` while output is written.
    package func attach(_ line: ProgressLine?) { progress.withLock { $0 = line } }

    /// Writes to the master's stdout or stderr, erasing the progress line first when it shows.
    package func emit(_ fd: Int32, _ bytes: [UInt8]) {
        emitting { Self.write(fd, bytes) }
    }

    /// Runs `body`, which writes output, with the progress line (when one shows) erased first
    /// and not drawn again meanwhile.
    private func emitting<T: Sendable>(_ body: () -> T) -> T {
        guard let line = progress.withLock({ $0 }) else { return body() }
        return line.erased(body)
    }

    /// Prefixes every line of `bytes` (which ends at a line end, or is a final partial line)
    /// with `prefix`; a final partial line gets its line end. Line ends are found with `memchr`,
    /// in one pass: the master labels every byte of live output.
    static func prefixLines(_ bytes: [UInt8], with prefix: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { prefixLines($0, with: prefix) }
    }

    static func prefixLines(_ source: UnsafeRawBufferPointer, with prefix: [UInt8]) -> [UInt8] {
        guard !source.isEmpty else { return [] }
        // Room for a label every 8 bytes is enough for ordinary output; denser output (rare)
        // has its lines counted first, for the exact size.
        if let out = prefixLines(source, with: prefix, capacity: source.count + (source.count / 8 + 1) * prefix.count + 1) {
            return out
        }
        var lines = 1
        var at = 0
        while let end = Memory.firstIndex(of: 10, in: source, from: at) {
            lines += 1
            at = end + 1
        }
        // Exact (or one label more than needed): cannot run short.
        return prefixLines(source, with: prefix, capacity: source.count + lines * prefix.count + 1) ?? []
    }

    /// `prefixLines` into an array of `capacity` bytes; nil when they do not fit.
    private static func prefixLines(_ source: UnsafeRawBufferPointer, with prefix: [UInt8], capacity: Int) -> [UInt8]? {
        var fits = true
        let out = [UInt8](unsafeUninitializedCapacity: capacity) { out, initialized in
            prefix.withUnsafeBytes { label in
                let target = UnsafeMutableRawBufferPointer(out)
                var written = 0
                var start = 0
                while start < source.count {
                    let end = Memory.firstIndex(of: 10, in: source, from: start).map { $0 + 1 } ?? source.count
                    // The line, its label, and a line end for a final partial line.
                    guard written + label.count + end - start + 1 <= capacity else {
                        fits = false
                        initialized = 0
                        return
                    }
                    UnsafeMutableRawBufferPointer(rebasing: target[written..<written + label.count]).copyMemory(from: label)
                    written += label.count
                    UnsafeMutableRawBufferPointer(rebasing: target[written..<written + end - start]).copyMemory(
                        from: UnsafeRawBufferPointer(rebasing: source[start..<end]))
                    written += end - start
                    start = end
                }
                if source[source.count - 1] != 10 {
                    target[written] = 10
                    written += 1
                }
                initialized = written
            }
        }
        return fits ? out : nil
    }

    /// Prefixes every line of `bytes` with `[rank] `.
    static func label(_ bytes: [UInt8], rank: Int) -> [UInt8] {
        prefixLines(bytes, with: Array("[\(rank)] ".utf8))
    }

    /// The `--timestamps` prefix: local time with milliseconds, ISO 8601 without the zone,
    /// `2026-11-22T21:48:43.123 `.
    package static func stamp(_ time: LocalTime) -> String {
        func pad(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(time.year, 4))-\(pad(time.month, 2))-\(pad(time.day, 2))T"
            + "\(pad(time.hour, 2)):\(pad(time.minute, 2)):\(pad(time.second, 2)).\(pad(time.millisecond, 3)) "
    }

    /// One batch of a rank's output; `timestamp` is when the worker read it (ns since the epoch).
    package func output(rank: Int, stream: UInt8, timestamp: UInt64 = 0, bytes: [UInt8]) {
        bytes.withUnsafeBytes { output(rank: rank, stream: stream, timestamp: timestamp, bytes: $0) }
    }

    /// One batch of a rank's output, where the connection read it (labelled or held without
    /// being copied into a message first).
    package func output(rank: Int, stream: UInt8, timestamp: UInt64 = 0, bytes: UnsafeRawBufferPointer) {
        files?.write(rank: rank, stream: stream, bytes: bytes)
        let stamp = timestamps ? Array(Self.stamp(LocalTime(nanosecondsSinceEpoch: timestamp)).utf8) : []
        switch mode {
        case .live:
            let text = Self.prefixLines(bytes, with: stamp + Array("[\(rank)] ".utf8))
            writeLock.withLock { _ in emit(stream == 2 ? stderrFD : stdoutFD, text) }
        case .group, .gather:
            guard let entry = held[rank], !bytes.isEmpty else { return }
            let printed = entry.spools.withLock { spools in
                if stream != 2 && spools.outIsPrinted {
                    writeLock.withLock { _ in
                        emitting {
                            if timestamps {
                                Self.write(stdoutFD, Self.prefixLines(bytes, with: stamp))
                            } else {
                                try? FD.writeAll(stdoutFD, bytes)  // The reader has gone: dropped, as `write` says.
                                if bytes.last != 10 { Self.write(stdoutFD, [10]) }
                            }
                        }
                    }
                    return true
                }
                let spool = stream == 2 ? spools.err : spools.out
                if timestamps {
                    spool.append(Self.prefixLines(bytes, with: stamp))
                } else {
                    spool.append(bytes)
                    if bytes.last != 10 { spool.append([10]) }
                }
                return false
            }
            if stream != 2 && !printed { compareWithLead(rank) }
        }
    }

    /// `--gather`: compares what arrived of `rank`'s stdout with the lead's (or, for the lead
    /// itself, every open rank's), and prints the lead's block once no other rank can share it.
    /// Called without a spool's lock held (it takes the lead's and the other's in turn).
    private func compareWithLead(_ rank: Int) {
        lead.withLock { lead in
            guard var state = lead, state.decided == nil, let first = held[state.rank] else { return }
            let others = rank == state.rank ? Array(state.open.keys) : state.open[rank] == nil ? [] : [rank]
            for other in others {
                guard let entry = held[other], let done = state.open[other] else { continue }
                // Each side's count, then the new common part (at most `window` bytes in all).
                let end = min(Lead.window, first.spools.withLock { $0.out.count }, entry.spools.withLock { $0.out.count })
                guard end > done else { continue }
                let theirs = first.spools.withLock { $0.out.start(done..<end) }
                let mine = entry.spools.withLock { $0.out.start(done..<end) }
                guard let theirs, let mine else {
                    state.decided = false  // Not in memory that far (a tiny --spill-after): held, as before.
                    break
                }
                if theirs != mine {
                    state.open[other] = nil
                } else if end == Lead.window {
                    state.decided = false  // Alike as far as compared: may be one group.
                    break
                } else {
                    state.open[other] = end
                }
            }
            if state.decided == nil && state.open.isEmpty {
                state.decided = true
                state.failure = first.spools.withLock { spools in
                    guard spools.out.failure == nil else { return nil }  // Cut short: printed at the end with its note.
                    spools.outIsPrinted = true
                    return writeLock.withLock { _ in
                        emitting {
                            Self.write(stdoutFD, Array("----- \(Self.fold([state.rank])) -----\n".utf8))
                            do { try spools.out.drain(to: stdoutFD) } catch {
                                return "rank \(state.rank)'s held output could not be read back (\(error)); it is incomplete"
                            }
                            return nil
                        }
                    }
                }
            }
            lead = state
        }
    }

    /// The `--gather` groups: ranks whose outputs are byte for byte the same, in first-seen
    /// order. Outputs are told apart by their size and the digest of their first 64 KiB
    /// (`digest(rank, limit)`), and only ranks still alike then by the digest of all of it:
    /// outputs that differ early (the usual case for large ones) are never read back whole.
    package static func identicalOutputs(_ ranks: [Int], size: (Int) -> Int, digest: (Int, Int) -> [UInt8]) -> [[Int]] {
        struct Key: Hashable {
            var size: Int
            var digest: [UInt8]
        }
        let prefix = 64 * 1024
        var result: [[Int]] = []
        for group in groups(ranks, key: { Key(size: size($0), digest: digest($0, prefix)) }) {
            result += group.count == 1 || size(group[0]) <= prefix ? [group] : groups(group) { digest($0, .max) }
        }
        let order = Dictionary(ranks.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { first, _ in first })
        return result.sorted { order[$0[0], default: 0] < order[$1[0], default: 0] }
    }

    /// Ranks in first-seen order of their key: each group lists the ranks whose key is equal.
    package static func groups<Key: Hashable>(_ ranks: [Int], key: (Int) -> Key) -> [[Int]] {
        var index: [Key: Int] = [:]
        var groups: [[Int]] = []
        for rank in ranks {
            let k = key(rank)
            if let at = index[k] {
                groups[at].append(rank)
            } else {
                index[k] = groups.count
                groups.append([rank])
            }
        }
        return groups
    }

    /// Prints the held blocks (group and gather modes). `names` gives each rank's host.
    package func finish(ranks: [Int], names: [Int: String]) {
        var problems: [String] = []
        defer {
            problems += files?.close() ?? []
            for line in problems { Self.write(stderrFD, Array("distr: \(line)\n".utf8)) }
        }
        guard mode != .live else { return }
        if let why = lead.withLock({ $0?.failure }) { problems.append(why) }
        func copy(_ spool: OutputSpool, rank: Int, to fd: Int32, header: [UInt8]) {
            Self.write(fd, header)
            do { try spool.write(to: fd) } catch {
                problems.append("rank \(rank)'s held output could not be read back (\(error)); it is incomplete")
            }
        }
        for rank in ranks {
            held[rank]?.spools.withLock { spools in
                for (name, spool) in [("stdout", spools.out), ("stderr", spools.err)] {
                    if let why = spool.failure { problems.append("rank \(rank)'s \(name) was cut after \(spool.count) bytes: \(why)") }
                }
            }
        }
        switch mode {
        case .live: return
        case .group:
            for rank in ranks {
                guard let entry = held[rank] else { continue }
                entry.spools.withLock { spools in
                    let header = Array("----- node \(rank) (\(names[rank] ?? "?")) -----\n".utf8)
                    copy(spools.out, rank: rank, to: stdoutFD, header: header)
                    if spools.err.count > 0 { copy(spools.err, rank: rank, to: stderrFD, header: header) }
                }
            }
        case .gather:
            for (stream, fd) in [(0, stdoutFD), (2, stderrFD)] {
                func withSpool<T: Sendable>(_ rank: Int, _ body: (OutputSpool) -> T) -> T? {
                    held[rank]?.spools.withLock { body(stream == 2 ? $0.err : $0.out) }
                }
                // The lead's stdout block is out already (printed as it arrived).
                let printed = stream == 0 ? ranks.filter { held[$0]?.spools.withLock { $0.outIsPrinted } ?? false } : []
                let shown = stream == 0 ? ranks.filter { !printed.contains($0) } : ranks.filter { (withSpool($0) { $0.count } ?? 0) > 0 }
                let groups = Self.identicalOutputs(shown, size: { withSpool($0) { $0.count } ?? 0 }) { rank, limit in
                    withSpool(rank) { spool in
                        // Unreadable: a group of its own (the copy below reports it).
                        (try? spool.digest(limit: limit)) ?? Array("unreadable \(rank)".utf8)  // As said.
                    } ?? []
                }
                for group in groups {
                    let header = Array("----- \(Self.fold(group)) -----\n".utf8)
                    if withSpool(group[0], { copy($0, rank: group[0], to: fd, header: header) }) == nil {
                        Self.write(fd, header)
                    }
                }
            }
        }
    }

    /// Writes a batch of output. Output that cannot be written (the reader of the master's output
    /// has gone, as `head` does) is dropped: the job and its exit status are not affected.
    private static func write(_ fd: Int32, _ bytes: [UInt8]) {
        try? FD.writeAll(fd, bytes)  // The reader has gone: dropped, as said above.
    }

    /// Folds sorted ranks into ranges: [0,1,2,3,5] → "[0-3,5]".
    package static func fold(_ ranks: [Int]) -> String {
        var parts: [String] = []
        var index = 0
        let sorted = ranks.sorted()
        while index < sorted.count {
            var end = index
            while end + 1 < sorted.count && sorted[end + 1] == sorted[end] + 1 { end += 1 }
            parts.append(end == index ? "\(sorted[index])" : "\(sorted[index])-\(sorted[end])")
            index = end + 1
        }
        return "[" + parts.joined(separator: ",") + "]"
    }
}
