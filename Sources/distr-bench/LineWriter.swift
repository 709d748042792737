@preconcurrency import Glibc
import DistrCore

/// The output relay's rank program, `distr-bench --write-lines BYTES [RANK]`: writes BYTES (rounded
/// down to whole lines) of 100-byte lines `rank R line N xxx...` to stdout in 64 KiB writes of whole
/// lines. RANK defaults to `DISTR_NODE_ID`, else Open MPI's `OMPI_COMM_WORLD_RANK`, else 0, so the
/// same program runs under distr, mpirun and a plain pipe.
enum LineWriter {
    static let lineLength = 100
    static let linesPerWrite = 655

    static func run(_ arguments: [String]) -> Int32 {
        guard let bytesText = arguments.first, let bytes = Int(bytesText), bytes >= 0, bytes <= 1 << 40 else {
            CurrentProcess.printError("usage: distr-bench --write-lines BYTES [RANK]\n")
            return 64
        }
        let rankText = arguments.dropFirst().first ?? Environment.value("DISTR_NODE_ID") ?? Environment.value("OMPI_COMM_WORLD_RANK") ?? "0"
        guard let rank = Int(rankText), rank >= 0 else {
            CurrentProcess.printError("distr-bench --write-lines: rank '\(rankText)' is not a number\n")
            return 64
        }
        let lines = bytes / lineLength
        // Lines are made in place, a decimal counter incremented by hand: the writer must cost
        // next to nothing beside the relay it measures.
        let prefix = Array("rank \(rank) line ".utf8)
        var digits: [UInt8] = [48]
        var buffer = [UInt8](repeating: UInt8(ascii: "x"), count: lineLength * linesPerWrite)
        var written = 0
        while written < lines {
            let count = min(linesPerWrite, lines - written)
            buffer.withUnsafeMutableBufferPointer { out in
                for index in 0..<count {
                    let start = index * lineLength
                    var at = start
                    for byte in prefix {
                        out[at] = byte
                        at += 1
                    }
                    for byte in digits {
                        out[at] = byte
                        at += 1
                    }
                    out[at] = UInt8(ascii: " ")
                    at += 1
                    // Earlier, longer numbers may have left digits here: back to padding.
                    while at < start + lineLength - 1 && out[at] != UInt8(ascii: "x") {
                        out[at] = UInt8(ascii: "x")
                        at += 1
                    }
                    out[start + lineLength - 1] = 10
                    increment(&digits)
                }
            }
            written += count
            do { try buffer.withUnsafeBytes { try FD.writeAll(1, UnsafeRawBufferPointer(rebasing: $0[0..<count * lineLength])) } } catch {
                CurrentProcess.printError("distr-bench --write-lines: \(error)\n")
                return 1
            }
        }
        return 0
    }

    /// Adds one to an ASCII decimal number.
    static func increment(_ digits: inout [UInt8]) {
        var index = digits.count - 1
        while index >= 0 {
            if digits[index] < UInt8(ascii: "9") {
                digits[index] += 1
                return
            }
            digits[index] = UInt8(ascii: "0")
            index -= 1
        }
        digits.insert(UInt8(ascii: "1"), at: 0)
    }

    /// `rank R line N ` padded with `x` to 99 bytes, and a line end.
    static func line(rank: Int, number: Int) -> [UInt8] {
        var text = Array("rank \(rank) line \(number) ".utf8)
        text += [UInt8](repeating: UInt8(ascii: "x"), count: max(0, lineLength - 1 - text.count))
        text.append(10)
        return text
    }
}

/// Checks the master's captured output of the relay case: every line whole, under the right
/// label, each rank's lines all there and in order.
struct RelayCheck {
    let ranks: Int
    let linesPerRank: Int

    /// nil when the output is right, else what is wrong (the first few problems and counts).
    /// - Parameter gathered: `--gather` layout (`----- [r] -----` headers, unlabelled lines)
    ///   instead of live `[r] ` labels.
    func problems(in path: String, gathered: Bool) -> String? {
        let bytes: [UInt8]
        do { bytes = try FileIO.readAll(path) } catch { return "cannot read the captured output \(path): \(error)" }
        var next = [Int](repeating: 0, count: ranks)
        var bad = 0
        var first: String?
        var block: Int?
        var start = 0
        func complain(_ line: ArraySlice<UInt8>, _ why: String) {
            bad += 1
            if first == nil { first = "\(why): '\(String(decoding: line.prefix(120), as: UTF8.self))'" }
        }
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: 10) ?? bytes.count
            let line = bytes[start..<end]
            start = end + 1
            var body = line
            var rank: Int?
            if gathered {
                if line.starts(with: Array("----- [".utf8)) {
                    block = Self.number(line.dropFirst(7), until: UInt8(ascii: "]"))?.value
                    if block == nil { complain(line, "a block header that names more than one rank") }
                    continue
                }
                rank = block
            } else if line.first == UInt8(ascii: "["), let (value, rest) = Self.number(line.dropFirst(), until: UInt8(ascii: "]")),
                rest.first == UInt8(ascii: " ")
            {
                rank = value
                body = rest.dropFirst()
            }
            guard let rank, rank < ranks else {
                complain(line, "a line without a rank's label")
                continue
            }
            guard Self.isLine(body, rank: rank, number: next[rank]) else {
                complain(line, "rank \(rank)'s line \(next[rank]) is cut, mixed or out of order")
                continue
            }
            next[rank] += 1
        }
        let missing = next.enumerated().filter { $0.element != linesPerRank }
        if bad == 0 && missing.isEmpty { return nil }
        var parts: [String] = []
        if bad > 0 { parts.append("\(bad) bad lines, the first \(first ?? "")") }
        for (rank, count) in missing { parts.append("rank \(rank): \(count) of \(linesPerRank) lines") }
        return parts.joined(separator: "; ")
    }

    /// Whether `body` is `LineWriter`'s line `number` of `rank`, without its line end.
    static func isLine(_ body: ArraySlice<UInt8>, rank: Int, number: Int) -> Bool {
        guard body.count == LineWriter.lineLength - 1, body.starts(with: Array("rank ".utf8)),
            let (written, rest) = Self.number(body.dropFirst(5), until: UInt8(ascii: " ")), written == rank,
            rest.starts(with: Array("line ".utf8)), let (line, padding) = Self.number(rest.dropFirst(5), until: UInt8(ascii: " ")),
            line == number
        else { return false }
        return padding.allSatisfy { $0 == UInt8(ascii: "x") }
    }

    /// The decimal number at the start of `bytes`, ending at `terminator`; the rest after it.
    static func number(_ bytes: ArraySlice<UInt8>, until terminator: UInt8) -> (value: Int, rest: ArraySlice<UInt8>)? {
        var value = 0
        var index = bytes.startIndex
        while index < bytes.endIndex, bytes[index] >= 48, bytes[index] <= 57, value < 1 << 40 {
            value = value * 10 + Int(bytes[index] - 48)
            index += 1
        }
        guard index > bytes.startIndex, index < bytes.endIndex, bytes[index] == terminator else { return nil }
        return (value, bytes[(index + 1)...])
    }
}
