@preconcurrency import Glibc
import CDistrSys
import Synchronization

/// Verified bundle files kept by SHA-256 digest, so a file shipped before need not be shipped
/// again. The directory is private (0700) to the worker; ranks get copies, never the cached
/// files themselves, so nothing a rank does can change what a later job receives. Bounded by
/// size: the least recently used files go first.
final class FileCache: Sendable {
    let directory: String
    let limit: Int
    private let lock = Mutex<Void>(())
    /// The last use stamp given, in nanoseconds: file times come from a coarse clock, and files
    /// used microseconds apart must still be ordered.
    private let lastStamp = Mutex<Int64>(0)

    /// nil when `limit` is 0 (caching off) or the directory cannot be made.
    init?(directory: String, limit: Int) {
        guard limit > 0 else { return nil }
        self.directory = directory
        self.limit = limit
        do { try FileIO.makeDirectories(directory, mode: 0o700) } catch { return nil }
        chmod(directory, 0o700)
    }

    func path(for digest: [UInt8]) -> String { directory + "/" + digest.hex }

    /// The cached copy of `entry`, if there is one of the right size (and marks it as used).
    func lookup(_ entry: ManifestEntry) -> String? {
        let path = path(for: entry.digest)
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, Int(info.st_size) == entry.size else { return nil }
        markUsed(path)
        return path
    }

    /// Sets the file's modification time to a strictly increasing "now" (the LRU order).
    private func markUsed(_ path: String) {
        let now = Int64(Clock.wallNanoseconds)
        let stamp = lastStamp.withLock { last -> Int64 in
            last = max(now, last + 1)
            return last
        }
        var times = [
            timespec(tv_sec: Int(stamp / 1_000_000_000), tv_nsec: Int(stamp % 1_000_000_000)),
            timespec(tv_sec: Int(stamp / 1_000_000_000), tv_nsec: Int(stamp % 1_000_000_000)),
        ]
        utimensat(AT_FDCWD, path, &times, 0)
    }

    /// Keeps a copy of a file whose digest has just been verified.
    func store(_ source: String, entry: ManifestEntry) {
        guard entry.size <= limit else { return }
        let target = path(for: entry.digest)
        let temporary = target + ".part-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        guard (try? Self.copy(from: source, to: temporary, mode: 0o600)) != nil else {
            unlink(temporary)
            return
        }
        rename(temporary, target)
        markUsed(target)
        lock.withLock { _ in evict() }
    }

    /// Removes the least recently used files until the cache fits its limit.
    private func evict() {
        guard let dir = opendir(directory) else { return }
        var files: [(path: String, size: Int, used: Int)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name == "." || name == ".." || name.contains(".part-") { continue }
            var info = stat()
            let path = directory + "/" + name
            if stat(path, &info) == 0 { files.append((path, Int(info.st_size), info.st_mtim.tv_sec * 1_000_000_000 + info.st_mtim.tv_nsec)) }
        }
        closedir(dir)
        var total = files.reduce(0) { $0 + $1.size }
        for file in files.sorted(by: { $0.used < $1.used }) where total > limit {
            unlink(file.path)
            total -= file.size
        }
    }

    /// Copies a file's bytes into a new file (the kernel copies: copy_file_range where it can).
    static func copy(from source: String, to target: String, mode: mode_t) throws(SystemError) {
        let input = try retryingEINTR("open") { open(source, O_RDONLY | O_CLOEXEC) }
        defer { FD.close(input) }
        let output = try retryingEINTR("open") { open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode) }
        defer { FD.close(output) }
        try copy(from: input, to: output)
    }

    static func copy(from input: Int32, to output: Int32) throws(SystemError) {
        while true {
            let n = cdistr_copy_file_range(input, output, 1 << 30)
            if n > 0 { continue }
            if n == 0 { return }
            if errno == EINTR { continue }
            break
        }
        // Fallback for file systems without copy_file_range.
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = try FD.read(input, into: &buffer)
            if n == 0 { return }
            try FD.writeAll(output, Array(buffer[0..<n]))
        }
    }
}
