import Synchronization

/// Why `--output-dir` cannot be used.
package enum OutputFilesError: Error, CustomStringConvertible, Equatable {
    case cannotCreateDirectory(String, SystemError)
    case cannotCreateFile(String, SystemError)

    package var description: String {
        switch self {
        case .cannotCreateDirectory(let path, let error):
            "cannot create the output directory '\(path)' (\(error)); choose a directory you can write with --output-dir"
        case .cannotCreateFile(let path, let error):
            "cannot create the output file '\(path)' (\(error)); choose a directory you can write with --output-dir"
        }
    }
}

/// `--output-dir DIR`: each rank's stdout and stderr, as the program wrote them (no labels, no
/// time stamps), in `DIR/<id>.out` and `DIR/<id>.err`. Every file is created (empty when the
/// rank wrote nothing) before the job starts, so a bad directory is reported before anything runs.
package final class OutputFiles: Sendable {
    package let directory: String
    private let files: Mutex<[Int: (out: Int32, err: Int32)]>
    private let failures = Mutex<[String]>([])

    /// Creates `directory` (and its parents) and the files of `ranks`, replacing old ones.
    /// - Throws: `OutputFilesError` naming the directory or file that could not be made.
    package init(directory: String, ranks: Range<Int>) throws(OutputFilesError) {
        self.directory = directory
        do { try FileIO.makeDirectories(directory, mode: 0o755) } catch { throw .cannotCreateDirectory(directory, error) }
        var opened: [Int: (out: Int32, err: Int32)] = [:]
        func open(_ path: String) throws(OutputFilesError) -> Int32 {
            do {
                return try FileDescriptor.open(path, .writeOnly, options: [.create, .truncate], permissions: 0o644).release()
            } catch {
                for (out, err) in opened.values {
                    FD.close(out)
                    FD.close(err)
                }
                throw .cannotCreateFile(path, error)
            }
        }
        for rank in ranks {
            let out = try open("\(directory)/\(rank).out")
            let err: Int32
            do { err = try open("\(directory)/\(rank).err") } catch {
                FD.close(out)
                throw error
            }
            opened[rank] = (out, err)
        }
        files = Mutex(opened)
    }

    deinit { close() }

    /// Appends `bytes` to the rank's file for `stream` (2: stderr). A file that cannot be written
    /// (disk full) is reported once, by `close`, and not written again.
    package func write(rank: Int, stream: UInt8, bytes: [UInt8]) {
        bytes.withUnsafeBytes { write(rank: rank, stream: stream, bytes: $0) }
    }

    package func write(rank: Int, stream: UInt8, bytes: UnsafeRawBufferPointer) {
        guard let pair = files.withLock({ $0[rank] }) else { return }
        let fd = stream == 2 ? pair.err : pair.out
        guard fd >= 0 else { return }
        do { try FD.writeAll(fd, bytes) } catch {
            let path = "\(directory)/\(rank).\(stream == 2 ? "err" : "out")"
            failures.withLock { $0.append("cannot write \(path) (\(error)); it is incomplete") }
            files.withLock { table in
                FD.close(fd)
                if stream == 2 { table[rank]?.err = -1 } else { table[rank]?.out = -1 }
            }
        }
    }

    /// Closes and removes the files of `ranks`, which did not run (`--skip-unreachable` runs
    /// fewer ranks than were planned).
    package func discard(ranks: Range<Int>) {
        let dropped = files.withLock { table in ranks.compactMap { table.removeValue(forKey: $0) } }
        for (out, err) in dropped {
            FD.close(out)
            FD.close(err)
        }
        for rank in ranks {
            FileIO.unlink("\(directory)/\(rank).out")
            FileIO.unlink("\(directory)/\(rank).err")
        }
    }

    /// Closes every file; returns what went wrong while writing them, one line each.
    @discardableResult
    package func close() -> [String] {
        files.withLock { table in
            for (out, err) in table.values {
                FD.close(out)
                FD.close(err)
            }
            table = [:]
        }
        return failures.withLock { $0 }
    }
}
