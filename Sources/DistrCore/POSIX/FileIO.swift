@preconcurrency import Glibc

/// Whole-file helpers for small files (secrets, peers lists).
package enum FileIO {
    /// The corresponding C functions are `open` and `read`.
    package static func readAll(_ path: String) throws(SystemError) -> [UInt8] {
        let fd = try retryingEINTR("open") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { FD.close(fd) }
        var out: [UInt8] = []
        // A page first: most files read whole are small (the secret, a peers file, /proc and
        // cgroup files), and a 64 KiB buffer made for them was 16 pages to zero and fault in
        // (on the master's way to connect). A file that fills it gets larger reads.
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try FD.read(fd, into: &chunk)
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
            if n == chunk.count && chunk.count < 64 * 1024 { chunk = [UInt8](repeating: 0, count: chunk.count * 4) }
        }
    }

    /// Writes `bytes` to a new file created with `mode` (fails if it exists and `exclusive`).
    package static func write(_ path: String, _ bytes: [UInt8], mode: mode_t, exclusive: Bool) throws(SystemError) {
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC)
        let fd = try retryingEINTR("open") { open(path, flags, mode) }
        defer { FD.close(fd) }
        fchmod(fd, mode)
        try FD.writeAll(fd, bytes)
    }

    /// Writes `bytes` over the file at `path` (made with `mode` if missing) and cuts it to their
    /// length, without first truncating it to nothing: on ext4 a file truncated to zero and then
    /// written is flushed to the disk at its close (`auto_da_alloc`), a block write for every
    /// rewrite of a small file that is kept and reused. The corresponding C functions are
    /// `open`, `write` and `ftruncate`.
    package static func overwrite(_ path: String, _ bytes: [UInt8], mode: mode_t) throws(SystemError) {
        let fd = try retryingEINTR("open") { open(path, O_WRONLY | O_CREAT | O_CLOEXEC, mode) }
        defer { FD.close(fd) }
        fchmod(fd, mode)
        try FD.writeAll(fd, bytes)
        _ = try retryingEINTR("ftruncate") { ftruncate(fd, off_t(bytes.count)) }
    }

    /// `mkdir -p` with the given mode for the directories it creates.
    package static func makeDirectories(_ path: String, mode: mode_t = 0o700) throws(SystemError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, mode) != 0 && errno != EEXIST { throw .current("mkdir") }
        }
    }

    /// Calls `body` with `name` as a NUL-terminated C string; returns its result and, when the result is
    /// negative, the `errno` it left (read at once, before the temporary string is freed), else 0.
    /// `name` must not contain NUL (a directory entry's name or a validated bundle path component never does).
    static func call(_ name: [UInt8], _ body: (UnsafePointer<CChar>) -> Int32) -> (result: Int32, errno: Int32) {
        (name + [0]).withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { cName in
                let result = body(cName.baseAddress!)
                return (result, result < 0 ? Glibc.errno : 0)
            }
        }
    }

    /// Removes a file; a file that is already gone is not an error. The corresponding C
    /// function is `unlink`.
    package static func unlink(_ path: String) { _ = Glibc.unlink(path) }

    /// Renames `source` to `target`, replacing `target` if it exists (atomically, within one file
    /// system). The corresponding C function is `rename`.
    /// - Throws: `SystemError` from `rename`.
    package static func rename(_ source: String, to target: String) throws(SystemError) {
        if Glibc.rename(source, target) != 0 { throw .current("rename") }
    }

    /// Gives the file `source` a second name `target` (which must not exist), without following
    /// a symlink at `source`. The corresponding C function is `linkat`.
    /// - Throws: `SystemError` from `linkat` (`EXDEV` across file systems).
    package static func link(_ source: String, to target: String) throws(SystemError) {
        if linkat(AT_FDCWD, source, AT_FDCWD, target, 0) != 0 { throw .current("linkat") }
    }

    /// Sets the permission bits of `path` exactly (following symlinks). The corresponding C
    /// function is `chmod`.
    /// - Throws: `SystemError` from `chmod`.
    package static func setPermissions(_ path: String, _ permissions: UInt32) throws(SystemError) {
        if chmod(path, mode_t(permissions)) != 0 { throw .current("chmod") }
    }

    /// Sets the access and modification times of `path` itself (not of a symlink's target) to
    /// `nanoseconds` since the epoch. The corresponding C function is `utimensat`.
    /// - Throws: `SystemError` from `utimensat`.
    package static func setTimes(_ path: String, nanoseconds: Int64) throws(SystemError) {
        var times = [timespec(nanoseconds), timespec(nanoseconds)]
        if utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW) != 0 { throw .current("utimensat") }
    }

    static func timespec(_ nanoseconds: Int64) -> Glibc.timespec {
        Glibc.timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
    }

    /// Makes a new directory, mode 0700, named `template` with its trailing `XXXXXX` replaced by
    /// random characters; returns its path. The corresponding C function is `mkdtemp`.
    /// - Throws: `SystemError` from `mkdtemp`.
    /// Makes the directory `path` with `mode` (less the umask), which must not exist yet: the
    /// one step of `mkdtemp` for a name the caller chose. The corresponding C function is `mkdir`.
    /// - Returns: false when something is there already.
    /// - Throws: `SystemError` from `mkdir` for any other failure.
    package static func makeNewDirectory(_ path: String, mode: mode_t) throws(SystemError) -> Bool {
        if mkdir(path, mode) == 0 { return true }
        if errno == EEXIST { return false }
        throw .current("mkdir \(path)")
    }

    package static func makeTemporaryDirectory(template: String) throws(SystemError) -> String {
        var bytes = Array(template.utf8CString)
        guard let made = mkdtemp(&bytes) else { throw .current("mkdtemp") }
        return String(cString: made)
    }

    /// Writes every file system's dirty data to its disk and waits for that. The corresponding C
    /// function is `sync`.
    package static func syncAll() { Glibc.sync() }

    /// Whether this process may execute `path`. The corresponding C function is `access`.
    package static func isExecutable(_ path: String) -> Bool { access(path, X_OK) == 0 }

    package static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    package static func mode(_ path: String) -> mode_t? {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode : nil
    }
}
