@preconcurrency import Glibc

/// Whole-file helpers for small files (secrets, peers lists).
public enum FileIO {
    /// The corresponding C functions are `open` and `read`.
    public static func readAll(_ path: String) throws(SystemError) -> [UInt8] {
        let fd = try retryingEINTR("open") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { FD.close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = try FD.read(fd, into: &chunk)
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
        }
    }

    /// Writes `bytes` to a new file created with `mode` (fails if it exists and `exclusive`).
    public static func write(_ path: String, _ bytes: [UInt8], mode: mode_t, exclusive: Bool) throws(SystemError) {
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC)
        let fd = try retryingEINTR("open") { open(path, flags, mode) }
        defer { FD.close(fd) }
        fchmod(fd, mode)
        try FD.writeAll(fd, bytes)
    }

    /// `mkdir -p` with the given mode for the directories it creates.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o700) throws(SystemError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, mode) != 0 && errno != EEXIST { throw .current("mkdir") }
        }
    }

    /// Removes a directory tree without following symlinks. The corresponding C functions are
    /// `unlinkat` and `rmdir`.
    public static func removeTree(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd >= 0 {
            removeContents(fd)
            FD.close(fd)
        }
        rmdir(path)
    }

    private static func removeContents(_ dirFD: Int32) {
        let dupFD = dup(dirFD)
        guard dupFD >= 0, let dir = fdopendir(dupFD) else { return }
        defer { closedir(dir) }
        var names: [(String, Bool)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." { continue }
            names.append((name, entry.pointee.d_type == UInt8(DT_DIR)))
        }
        for (name, isDirectory) in names {
            if isDirectory || unlinkat(dirFD, name, 0) != 0 {
                let child = openat(dirFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if child >= 0 {
                    // A rank may have left a directory without write permission.
                    fchmod(child, 0o700)
                    removeContents(child)
                    FD.close(child)
                }
                unlinkat(dirFD, name, AT_REMOVEDIR)
            }
        }
    }

    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    public static func mode(_ path: String) -> mode_t? {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode : nil
    }
}
