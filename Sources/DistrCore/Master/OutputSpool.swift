import Synchronization

/// Memory shared by every spool of one job: a spool keeps bytes in memory only while the total
/// stays under `limit`.
package final class OutputBudget: Sendable {
    package let limit: Int
    private let used = Atomic<Int>(0)

    package init(limit: Int) { self.limit = limit }

    package var inUse: Int { used.load(ordering: .relaxed) }

    /// Takes `count` bytes of the budget; false (and nothing taken) when that would pass the limit.
    func reserve(_ count: Int) -> Bool {
        var current = used.load(ordering: .relaxed)
        while true {
            guard current + count <= limit else { return false }
            let (exchanged, original) = used.compareExchange(
                expected: current, desired: current + count, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    func release(_ count: Int) { used.subtract(count, ordering: .relaxed) }
}

/// One rank's output on one stream, held until the job ends (`--group`, `--gather`), like
/// `dshbak -c`: its start in memory, up to `memoryLimit` bytes (and while the job's
/// `OutputBudget` allows), the rest in a temporary file that has no name (unlinked at creation,
/// so it is gone when the descriptor closes, however the master ends). Appending costs time
/// linear in the bytes appended, and nothing more: the start stays where it is when the rest
/// spills (it is never written to the file), `--gather` compares outputs at the end (`digest`),
/// reading back only as much as it must, and spilled bytes go back out with `sendfile`.
///
/// Not thread-safe: one rank's output comes from one worker connection; the owner locks.
package final class OutputSpool {
    /// Bytes appended so far (written or not).
    package private(set) var count = 0
    /// Bytes read back from the temporary file so far (`digest`, `forEachPiece`, a failed `sendfile`).
    package private(set) var bytesReadBack = 0
    /// Why bytes were lost (the temporary file could not be made or written), if they were.
    package private(set) var failure: String?
    /// The start of the output, in memory (and in the budget); never written to the file.
    private var head: [UInt8] = []
    /// Appended after the spill, waiting to be written to the file.
    private var pending: [UInt8] = []
    private var file: Int32 = -1
    private var fileSize = 0
    private var reserved = 0
    private let memoryLimit: Int
    private let budget: OutputBudget
    private let directory: String
    /// Bytes collected before one `write` to the file once spilled; a larger append is written
    /// as it is, without being copied first.
    private static let writeBuffer = 256 * 1024
    /// Bytes read back at a time.
    private static let readPiece = 1 << 20

    package init(memoryLimit: Int, budget: OutputBudget, directory: String) {
        self.memoryLimit = memoryLimit
        self.budget = budget
        self.directory = directory
    }

    deinit {
        FD.close(file)
        budget.release(reserved)
    }

    /// True once the bytes no longer fit in memory and went to the temporary file.
    package var isSpilled: Bool { file >= 0 }

    /// Bytes in the temporary file or waiting for it: what did not fit in memory.
    package var spilledBytes: Int { fileSize + pending.count }

    package func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    package func append(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil, !bytes.isEmpty else { return }
        count += bytes.count
        if file < 0 {
            if head.count + bytes.count <= memoryLimit && budget.reserve(bytes.count) {
                reserved += bytes.count
                head.append(contentsOf: bytes)
                return
            }
            do { file = try FD.unnamedTemporaryFile(in: directory) } catch {
                fail("\(error); set TMPDIR to a directory with space")
                return
            }
        }
        if pending.count + bytes.count >= Self.writeBuffer {
            flush()
            if bytes.count >= Self.writeBuffer / 2 {
                writeToFile(bytes)
                return
            }
        }
        pending.append(contentsOf: bytes)
    }

    /// The held bytes in `range`, when they are all in memory at the start (nil otherwise).
    package func start(_ range: Range<Int>) -> ArraySlice<UInt8>? {
        range.upperBound <= head.count ? head[range] : nil
    }

    /// Writes what waits in memory to the file (spilled spools only).
    private func flush() {
        guard file >= 0, !pending.isEmpty else { return }
        pending.withUnsafeBytes { writeToFile($0) }
        if failure == nil { pending.removeAll(keepingCapacity: true) }
    }

    private func writeToFile(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil else { return }
        do { try FD.writeAll(file, bytes) } catch {
            fail("\(error) (temporary file in \(directory)); set TMPDIR to a directory with space")
            return
        }
        fileSize += bytes.count
    }

    private func fail(_ why: String) {
        failure = why
        head = []
        pending = []
        budget.release(reserved)
        reserved = 0
    }

    /// The SHA-256 of the first `limit` bytes held (of all of them by default), read back only
    /// as far as `limit`.
    /// - Throws: `SystemError` when the temporary file cannot be read back.
    package func digest(limit: Int = .max) throws(SystemError) -> [UInt8] {
        var hasher = SHA256()
        try forEachPiece(from: 0, upTo: limit) { piece in piece.withUnsafeBytes { hasher.update($0) } }
        return hasher.finalize()
    }

    /// Calls `body` with the held bytes in order, in pieces of at most about 1 MiB.
    /// - Throws: `SystemError` when the temporary file cannot be read back.
    package func forEachPiece(_ body: ([UInt8]) -> Void) throws(SystemError) {
        try forEachPiece(from: 0, upTo: .max, body)
    }

    /// `forEachPiece` over the held bytes from byte `start` up to byte `end`: the start in
    /// memory, then the file, then what waits for it.
    private func forEachPiece(from start: Int, upTo end: Int, _ body: ([UInt8]) -> Void) throws(SystemError) {
        // What is held now, not `count`: a spool that failed has dropped what it held in memory.
        let end = min(end, head.count + fileSize + pending.count)
        var offset = start
        if offset < min(end, head.count) {
            body(offset == 0 && end >= head.count ? head : Array(head[offset..<min(end, head.count)]))
            offset = min(end, head.count)
        }
        let fileEnd = min(end, head.count + fileSize)
        if offset < fileEnd {
            var buffer = [UInt8](repeating: 0, count: min(Self.readPiece, fileEnd - offset))
            while offset < fileEnd {
                let (file, at, left) = (file, offset - head.count, fileEnd - offset)
                let n = try buffer.withUnsafeMutableBytes { raw in
                    Result { () throws(SystemError) in try FD.read(file, at: at, into: raw.baseAddress!, count: min(raw.count, left)) }
                }.get()
                if n == 0 { break }
                bytesReadBack += n
                body(n == buffer.count ? buffer : Array(buffer[0..<n]))
                offset += n
            }
            offset = max(offset, fileEnd)
        }
        let pendingStart = head.count + fileSize
        if offset < end { body(Array(pending[(offset - pendingStart)..<(end - pendingStart)])) }
    }

    /// Writes the held bytes to `fd` in order: the start from memory, the spilled part straight
    /// from the temporary file to `fd` in the kernel (`sendfile`, or where `fd` cannot take that,
    /// through a buffer), then what had not reached the file. Bytes `fd` does not take (its
    /// reader has gone) are dropped, as the printer drops output.
    /// - Throws: `SystemError` when the temporary file cannot be read back.
    package func write(to fd: Int32) throws(SystemError) {
        try? FD.writeAll(fd, head)  // The reader has gone: dropped, as said above.
        var offset = 0
        while offset < fileSize {
            let n: Int
            do { n = try FD.sendFile(from: file, at: offset, count: fileSize - offset, to: fd) } catch { break }
            if n == 0 { break }
            offset += n
        }
        try forEachPiece(from: head.count + offset, upTo: .max) { piece in
            try? FD.writeAll(fd, piece)  // The reader has gone: dropped, as said above.
        }
    }

    /// Writes the held bytes to `fd` (as `write(to:)`) and lets them go: the spool is empty
    /// again, its memory back in the budget and its temporary file closed.
    package func drain(to fd: Int32) throws(SystemError) {
        defer {
            FD.close(file)
            file = -1
            fileSize = 0
            head = []
            pending = []
            budget.release(reserved)
            reserved = 0
            count = 0
        }
        try write(to: fd)
    }
}
