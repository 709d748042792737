import Synchronization

/// Prints rank output on the master: live labelled lines, or per-node blocks at the end.
/// Each batch of lines is written with one `write`, under a lock, so lines of different ranks
/// never mix inside a line. Bytes are passed through as they came.
package final class OutputPrinter: Sendable {
    let mode: OutputMode
    let stdoutFD: Int32
    let stderrFD: Int32
    private let lock = Mutex<[Int: (out: [UInt8], err: [UInt8])]>([:])

    package init(mode: OutputMode, stdoutFD: Int32 = 1, stderrFD: Int32 = 2) {
        self.mode = mode
        self.stdoutFD = stdoutFD
        self.stderrFD = stderrFD
    }

    /// Prefixes every line of `bytes` (which ends at a line end, or is a final partial line).
    static func label(_ bytes: [UInt8], rank: Int) -> [UInt8] {
        let prefix = Array("[\(rank)] ".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + prefix.count * 4)
        var start = 0
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: 10).map { $0 + 1 } ?? bytes.count
            out.append(contentsOf: prefix)
            out.append(contentsOf: bytes[start..<end])
            if bytes[end - 1] != 10 { out.append(10) }
            start = end
        }
        return out
    }

    package func output(rank: Int, stream: UInt8, bytes: [UInt8]) {
        lock.withLock { held in
            switch mode {
            case .live:
                Self.write(stream == 2 ? stderrFD : stdoutFD, Self.label(bytes, rank: rank))
            case .group, .gather:
                var entry = held[rank] ?? ([], [])
                var chunk = bytes
                if chunk.last != 10 { chunk.append(10) }
                if stream == 2 { entry.err += chunk } else { entry.out += chunk }
                held[rank] = entry
            }
        }
    }

    /// Prints the held blocks (group and gather modes). `names` gives each rank's host.
    package func finish(ranks: [Int], names: [Int: String]) {
        let held = lock.withLock { $0 }
        switch mode {
        case .live: return
        case .group:
            for rank in ranks {
                let entry = held[rank] ?? ([], [])
                let header = Array("----- node \(rank) (\(names[rank] ?? "?")) -----\n".utf8)
                Self.write(stdoutFD, header + entry.out)
                if !entry.err.isEmpty { Self.write(stderrFD, header + entry.err) }
            }
        case .gather:
            for (stream, fd) in [(0, stdoutFD), (1, stderrFD)] {
                var groups: [[UInt8]: [Int]] = [:]
                var order: [[UInt8]] = []
                for rank in ranks {
                    let entry = held[rank] ?? ([], [])
                    let text = stream == 0 ? entry.out : entry.err
                    if stream == 1 && text.isEmpty { continue }
                    if groups[text] == nil { order.append(text) }
                    groups[text, default: []].append(rank)
                }
                for text in order {
                    let header = Array("----- \(Self.fold(groups[text] ?? [])) -----\n".utf8)
                    Self.write(fd, header + text)
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
