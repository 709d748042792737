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
/// `dshbak -c`: in memory up to `memoryLimit` bytes (and while the job's `OutputBudget` allows),
/// then in a temporary file that has no name (unlinked at creation, so it is gone when the
/// descriptor closes, however the master ends). Appending costs time linear in the bytes
/// appended, and nothing more: `--gather` compares outputs at the end (`digest`), reading back
/// only as much as it must, and spilled bytes go back out with `sendfile`.
///
/// Not thread-safe: one rank's output comes from one worker connection; the owner locks.
package final class OutputSpool {
    /// Bytes appended so far (written or not).
    package private(set) var count = 0
    /// Why bytes were lost (the temporary file could not be made or written), if they were.
    package private(set) var failure: String?
    private var memory: [UInt8] = []
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

    package func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    package func append(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil, !bytes.isEmpty else { return }
        count += bytes.count
        if file < 0 {
            if memory.count + bytes.count <= memoryLimit && budget.reserve(bytes.count) {
                reserved += bytes.count
                memory.append(contentsOf: bytes)
                return
            }
            do { file = try FD.unnamedTemporaryFile(in: directory) } catch {
                fail("\(error); set TMPDIR to a directory with space")
                return
            }
            budget.release(reserved)
            reserved = 0
        }
        if memory.count + bytes.count >= Self.writeBuffer {
            flush()
            if bytes.count >= Self.writeBuffer / 2 {
                writeToFile(bytes)
                return
            }
        }
        memory.append(contentsOf: bytes)
    }

    /// Writes what waits in memory to the file (spilled spools only).
    private func flush() {
        guard file >= 0, !memory.isEmpty else { return }
        memory.withUnsafeBytes { writeToFile($0) }
        if failure == nil { memory.removeAll(keepingCapacity: true) }
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
        memory = []
        budget.release(reserved)
        reserved = 0
    }

    /// The SHA-256 of the first `limit` bytes held (of all of them by default), read back.
    /// - Throws: `SystemError` when the temporary file cannot be read back.
    package func digest(limit: Int = .max) throws(SystemError) -> [UInt8] {
        var hasher = SHA256()
        var left = limit
        try forEachPiece { piece in
            guard left > 0 else { return }
            piece.prefix(left).withUnsafeBytes { hasher.update($0) }
            left -= min(left, piece.count)
        }
        return hasher.finalize()
    }

    /// Calls `body` with the held bytes in order, in pieces of at most about 1 MiB.
    /// - Throws: `SystemError` when the temporary file cannot be read back.
    package func forEachPiece(_ body: ([UInt8]) -> Void) throws(SystemError) {
        try forEachPiece(from: 0, body)
    }

    /// `forEachPiece` from byte `start` of the held bytes.
    private func forEachPiece(from start: Int, _ body: ([UInt8]) -> Void) throws(SystemError) {
        flush()
        var offset = start
        if offset < fileSize {
            var buffer = [UInt8](repeating: 0, count: min(Self.readPiece, fileSize - offset))
            while offset < fileSize {
                let (file, left) = (file, fileSize - offset)
                let n = try buffer.withUnsafeMutableBytes { raw in
                    Result { () throws(SystemError) in try FD.read(file, at: offset, into: raw.baseAddress!, count: min(raw.count, left)) }
                }.get()
                if n == 0 { break }
                body(n == buffer.count ? buffer : Array(buffer[0..<n]))
                offset += n
            }
        }
        let memoryStart = max(0, start - fileSize)
        if memoryStart < memory.count { body(memoryStart == 0 ? memory : Array(memory[memoryStart...])) }
    }

    /// Writes the held bytes to `fd` in order: the spilled part straight from the temporary file
    /// to `fd` in the kernel (`sendfile`), else (where `fd` cannot take that) through a buffer.
    /// Bytes `fd` does not take (its reader has gone) are dropped, as the printer drops output.
    /// - Throws: `SystemError` when the temporary file cannot be read back.
    package func write(to fd: Int32) throws(SystemError) {
        flush()
        var offset = 0
        while offset < fileSize {
            let n: Int
            do { n = try FD.sendFile(from: file, at: offset, count: fileSize - offset, to: fd) } catch { break }
            if n == 0 { break }
            offset += n
        }
        try forEachPiece(from: offset) { piece in
            try? FD.writeAll(fd, piece)  // The reader has gone: dropped, as said above.
        }
    }
}
