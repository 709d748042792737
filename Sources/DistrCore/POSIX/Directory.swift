@preconcurrency import Glibc

/// An open directory stream, read once into a list of entries, closed when released.
///
/// Names are the kernel's bytes (a name need not be valid UTF-8); `.` and `..` are left out.
/// The corresponding C functions are `opendir`, `fdopendir`, `readdir` and `closedir`.
package final class Directory {
    /// One name in a directory, with the type `readdir` reported (`DT_UNKNOWN` on some file systems).
    package struct Entry: Sendable, Equatable {
        package var name: [UInt8]
        package var type: UInt8

        /// The name as text (invalid UTF-8 shows as U+FFFD): for messages and names distr made itself.
        package var string: String { String(decoding: name, as: UTF8.self) }
        package var isDirectory: Bool { type == UInt8(DT_DIR) }
    }

    private let stream: OpaquePointer

    /// Opens the directory at `path` (following symlinks, like `opendir`).
    /// - Throws: `SystemError` from `opendir`.
    package init(path: String) throws(SystemError) {
        guard let stream = opendir(path) else { throw .current("opendir") }
        self.stream = stream
    }

    /// Reads the directory `fd` refers to, through a duplicate: `fd` stays open and owned by the caller.
    /// - Throws: `SystemError` from `dup` or `fdopendir`.
    package init(duplicating fd: Int32) throws(SystemError) {
        let copy = try retryingEINTR("fcntl") { fcntl(fd, F_DUPFD_CLOEXEC, 0) }
        guard let stream = fdopendir(copy) else {
            let error = SystemError.current("fdopendir")
            FD.close(copy)
            throw error
        }
        // The duplicate shares the original's offset: start from the first entry whatever it was.
        rewinddir(stream)
        self.stream = stream
    }

    deinit { closedir(stream) }

    /// Every entry but `.` and `..`.
    /// - Throws: `SystemError` when `readdir` fails part way.
    package func entries() throws(SystemError) -> [Entry] {
        var result: [Entry] = []
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                if errno != 0 { throw .current("readdir") }
                return result
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name == [0x2E] || name == [0x2E, 0x2E] { continue }
            result.append(Entry(name: name, type: entry.pointee.d_type))
        }
    }
}
