@preconcurrency import Glibc

/// An open descriptor that this value owns: it is closed exactly once, by `close()` or when the
/// value goes away. Noncopyable, so two owners cannot both close it (the second `close` could
/// close a descriptor another thread has just been given the same number for).
///
/// Code on the per-message path keeps the raw number (`rawValue`) and calls `FD`'s static
/// functions with it: reading the property costs nothing. Modelled on swift-system's
/// `FileDescriptor`, with ownership added.
package struct FileDescriptor: ~Copyable, Sendable {
    /// The descriptor number, valid while this value lives.
    package let rawValue: Int32

    /// Takes ownership of `rawValue`, which must be open and owned by no one else.
    package init(adopting rawValue: Int32) { self.rawValue = rawValue }

    deinit { FD.close(rawValue) }

    /// Closes the descriptor now. Errors are not reported: Linux releases the number even when
    /// `close` fails, so there is nothing to retry (and EINTR must not be retried).
    /// The corresponding C function is `close`.
    package consuming func close() {
        // The deinit runs here and closes the descriptor.
    }

    /// Gives up ownership without closing: the caller now owns the returned number.
    package consuming func release() -> Int32 {
        let raw = rawValue
        discard self
        return raw
    }

    /// How `open` accesses a file.
    package enum AccessMode: Sendable {
        case readOnly, writeOnly, readWrite

        var flags: Int32 {
            switch self {
            case .readOnly: O_RDONLY
            case .writeOnly: O_WRONLY
            case .readWrite: O_RDWR
            }
        }
    }

    /// Extra `open` flags. Every descriptor distr opens is close-on-exec, so that is not an option.
    package struct Options: OptionSet, Sendable {
        package let rawValue: Int32
        package init(rawValue: Int32) { self.rawValue = rawValue }

        /// `O_CREAT`: create the file if it does not exist.
        package static let create = Options(rawValue: O_CREAT)
        /// `O_EXCL` (with `create`): fail with `.exists` if it does.
        package static let exclusiveCreate = Options(rawValue: O_EXCL)
        /// `O_TRUNC`: empty an existing file.
        package static let truncate = Options(rawValue: O_TRUNC)
        /// `O_APPEND`: every write goes to the end.
        package static let append = Options(rawValue: O_APPEND)
        /// `O_DIRECTORY`: fail with `.notDirectory` unless it is a directory.
        package static let directory = Options(rawValue: O_DIRECTORY)
        /// `O_NOFOLLOW`: fail with `.tooManySymbolicLinks` if the last component is a symlink.
        package static let noFollow = Options(rawValue: O_NOFOLLOW)
    }

    /// Opens `path` (close-on-exec, EINTR retried). `permissions` apply to a file it creates
    /// (the umask still clears bits; see `setPermissions`).
    /// The corresponding C function is `open`.
    /// - Throws: `SystemError` from `open`.
    package static func open(
        _ path: String, _ mode: AccessMode, options: Options = [], permissions: UInt32 = 0o600
    ) throws(SystemError) -> FileDescriptor {
        let flags = mode.flags | options.rawValue | O_CLOEXEC
        return FileDescriptor(adopting: try retryingEINTR("open") { Glibc.open(path, flags, mode_t(permissions)) })
    }

    /// Opens `name` (one path component, as bytes, no NUL) in the directory `directory`
    /// refers to. The corresponding C function is `openat`.
    /// - Throws: `SystemError` from `openat`.
    package static func open(
        _ name: [UInt8], in directory: Int32, _ mode: AccessMode, options: Options = [], permissions: UInt32 = 0o600
    ) throws(SystemError) -> FileDescriptor {
        let flags = mode.flags | options.rawValue | O_CLOEXEC
        while true {
            let (fd, code) = FileIO.call(name) { openat(directory, $0, flags, mode_t(permissions)) }
            if fd >= 0 { return FileDescriptor(adopting: fd) }
            if code != EINTR { throw SystemError("openat", errno: code) }
        }
    }

    /// Sets the permission bits exactly (the umask may have cleared some at creation).
    /// The corresponding C function is `fchmod`.
    /// - Throws: `SystemError` from `fchmod`.
    package func setPermissions(_ permissions: UInt32) throws(SystemError) {
        _ = try retryingEINTR("fchmod") { fchmod(rawValue, mode_t(permissions)) }
    }

    /// Reads up to `buffer.count` bytes; 0 at end of stream. The corresponding C function is `read`.
    /// - Throws: `SystemError` from `read`.
    package func read(into buffer: inout [UInt8]) throws(SystemError) -> Int {
        try FD.read(rawValue, into: &buffer)
    }

    /// Writes all of `bytes`. The corresponding C function is `write`.
    /// - Throws: `SystemError` from `write`.
    package func writeAll(_ bytes: [UInt8]) throws(SystemError) {
        try FD.writeAll(rawValue, bytes)
    }
}
