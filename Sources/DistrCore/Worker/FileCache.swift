import Synchronization

/// Verified bundle files kept by SHA-256 digest, so a file shipped before need not be shipped
/// again. Bounded by size: the least recently used files go first.
///
/// The directory is private (0700), but ranks run as the worker's user and can rewrite a cached
/// file: a cached file is a second name of the job file it came from (see `store`), and a job
/// borrows a cached file the same way (see `lend`). So a cached file is never trusted by its
/// name. It is trusted by its status: the cache notes each file's identity (inode, size,
/// modification and status-change times) whenever its bytes are known to match its name, and
/// any later write, truncation, `chmod` or link moves the status-change time, which no user
/// call can set back. A file whose identity still matches is lent to the next job as it is (a
/// hard link: no bytes read, copied or hashed, and no new inode); any other is copied into the
/// job with `copyVerified`, which hashes exactly the bytes it writes and drops the entry when
/// they do not match its digest.
///
/// Two rules keep the status check sound. A file is lent to one job at a time (it is lent only
/// while the cache's name is its only one), so a rank can never change a file another job is
/// using. And a job's ranks start only once the clock the kernel stamps file times with has
/// passed the status-change times noted for its files (`waitUntilSettled`): a rank's write then
/// always shows as a new status-change time, even where file times are coarse.
///
/// An in-memory index (name → size, identity and last use, plus a use-ordered queue) is built by
/// one scan at start-up (with no identities: each file is hashed at its first use) and kept up
/// to date, so storing, looking up and evicting never rescan the directory.
final class FileCache: Sendable {
    let directory: String
    let limit: Int
    private let index = Mutex(Index())
    /// The cache directory, open: a streamed file gets its cache name with one `linkat` from
    /// its job directory (see `store(_:entry:file:)`), without walking either path.
    private let directoryFD: Int32

    /// nil when `limit` is 0 (caching off) or the directory cannot be made or read.
    init?(directory: String, limit: Int) {
        guard limit > 0 else { return nil }
        var found: [(name: String, size: Int, stamp: Int64)] = []
        let opened: Int32
        do {
            try FileIO.makeDirectories(directory, mode: 0o700)
            try FileIO.setPermissions(directory, 0o700)
            let entries = try Directory(path: directory).entries()
            for entry in entries where Self.isCacheName(entry.name) {
                let status: FileStatus
                do { status = try FileStatus(path: directory + "/" + entry.string, followingSymlinks: false) } catch { continue }  // Gone: skip.
                guard status.kind == .regular else { continue }
                found.append((entry.string, status.size, status.modified))
            }
            opened = try FileDescriptor.open(directory, .readOnly, options: [.directory, .noFollow]).release()
        } catch {
            return nil
        }
        self.directory = directory
        self.limit = limit
        directoryFD = opened
        index.withLock { index in
            for file in found.sorted(by: { $0.stamp < $1.stamp }) {
                index.insert(file.name, size: file.size, stamp: file.stamp)
            }
            evictOverLimit(&index)
        }
    }

    deinit { FD.close(directoryFD) }

    /// A cache file's name: the digest's 64 lowercase hex digits.
    private static func isCacheName(_ name: [UInt8]) -> Bool {
        name.count == 64 && name.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    func path(for digest: [UInt8]) -> String { directory + "/" + digest.hex }

    /// The longest a job's ranks wait after the last status change noted for its files (see
    /// `waitUntilSettled`): more than a kernel timestamp tick (at most 10 ms).
    static let settle: Int64 = 25_000_000

    /// Waits until a rank's write can no longer carry the status-change time `change` noted
    /// for a file the job shares with the cache: until the clock the kernel stamps file times
    /// with has passed it (at most one tick, often already over), and for no longer than
    /// `settle`. Waiting for the clock itself, not a fixed `settle` after the note, spares the
    /// last worker of a first shipping most of 25 ms before its ranks start.
    static func waitUntilSettled(_ change: Int64) {
        guard change > 0 else { return }
        let limit = Deadline.after(Double(settle) / 1e9)
        while Clock.fileTimeNanoseconds <= change, limit.remaining > 0 { Deadline.pause(min(0.001, limit.remaining)) }
    }

    /// Lends the cached file for `entry` to a job: gives it the second name `target` in
    /// `directory`, when the file is unchanged since its bytes were last checked (its identity
    /// matches) and no job holds it (the cache's is its only name). Its permission bits are set
    /// to the entry's first.
    /// - Returns: the file's status-change time once lent, which the job's ranks must wait for
    ///   (`waitUntilSettled`); nil when the file cannot be lent (the caller copies it instead).
    func lend(_ entry: ManifestEntry, into directory: Int32, name target: [UInt8]) -> Int64? {
        let mode = entry.mode & 0o777
        // A file its owner cannot read could not be checked again later.
        guard entry.digest.count == 32, mode & 0o400 != 0 else { return nil }
        let name = entry.digest.hex
        let path = path(for: entry.digest)
        return index.withLock { index -> Int64? in
            guard let record = index.files[name], record.size == entry.size, let trusted = record.identity else { return nil }
            let before: FileStatus
            do { before = try FileStatus(path: path, followingSymlinks: false) } catch { return nil }  // Gone: copied from the master.
            guard before.kind == .regular, before.links == 1, Identity(before) == trusted else { return nil }
            do {
                if before.permissions & 0o777 != mode { try FileIO.setPermissions(path, mode) }
                try FD.link(path, into: directory, name: target)
            } catch {
                return nil  // The caller copies the file (and reports a name that is taken).
            }
            let stamp = index.touch(name)
            // The file's time keeps the LRU order across restarts.
            try? FileIO.setTimes(path, nanoseconds: stamp)  // Then only a restart's LRU order is off.
            let after: FileStatus
            do { after = try FileStatus(target, in: directory) } catch { return nil }  // The caller's create reports it.
            guard after.inode == before.inode, after.device == before.device else {
                // Replaced between the check and the link: not the file that was checked.
                try? FD.unlink(target, in: directory)  // The caller's create reports a name still taken.
                return nil
            }
            index.files[name]?.identity = Identity(after)
            return after.changed
        }
    }

    /// Takes back the files a job shared with the cache (`BundleExtractor.sharedFiles`, in the
    /// job's `directory`) before the directory is removed, once nothing of the job runs: a file
    /// whose identity is still the one noted (the job left it alone; a write would have moved
    /// its status-change time, see `settle`) loses its job name here, and its new identity is
    /// noted, so the next job may borrow it. Any other is left to the removal, and its next use
    /// hashes it.
    ///
    /// The job's directories are opened one component at a time, never following a symlink (a
    /// rank may have replaced one), and each file is looked at and unlinked by its name in its
    /// open directory: a first shipping shares every file, and walking each path three times
    /// was about a twentieth of a worker's CPU, at the job's end, before the master hears of it.
    func takeBack(_ shared: [(path: String, digest: [UInt8])], from directory: String) {
        guard !shared.isEmpty else { return }
        let root: Int32
        do { root = try FileDescriptor.open(directory, .readOnly, options: [.directory, .noFollow]).release() } catch {
            return  // Gone or replaced: the files are left to the removal, and hashed at their next use.
        }
        defer { FD.close(root) }
        var parents = ParentDirectories(root: root, creating: false)
        defer { parents.close() }
        index.withLock { index in
            for file in shared {
                let name = file.digest.hex
                guard let noted = index.files[name]?.identity else { continue }
                let place = try? parents.open(path: file.path)  // A directory gone or replaced: left to the removal.
                guard let (parent, jobName) = place else { continue }
                let status = try? FileStatus(jobName, in: parent)  // Gone: left to the removal.
                guard let status, Identity(status) == noted else { continue }
                do { try FD.unlink(jobName, in: parent) } catch {
                    continue  // Left to the removal, which moves its status-change time: hashed at its next use.
                }
                guard let after = try? FileStatus(Array(name.utf8), in: directoryFD),  // Gone: nothing to note.
                    after.inode == noted.inode, after.device == noted.device, after.size == noted.size, after.modified == noted.modified
                else {
                    index.files[name]?.identity = nil
                    continue
                }
                index.files[name]?.identity = Identity(after)
            }
        }
    }

    /// Opens the cached file for `entry` if the index has one of its size: one descriptor, which
    /// the caller closes before opening the next. Not yet trusted: copy it with `copyVerified`.
    func open(_ entry: ManifestEntry) -> Int32? {
        guard entry.digest.count == 32 else { return nil }
        let name = entry.digest.hex
        guard index.withLock({ $0.files[name]?.size }) == entry.size else { return nil }
        do { return try FileDescriptor.open(directory + "/" + name, .readOnly, options: .noFollow).release() } catch {
            // Gone (or replaced by a symlink) behind the worker's back: forget it.
            index.withLock { $0.remove(name) }
            return nil
        }
    }

    /// Copies `source` (from `open`) into `target`, hashing exactly the bytes written, so what the
    /// job receives is what was checked, whatever happens to the cached file meanwhile.
    /// - Returns: true when the bytes match `entry` (the entry is marked used); false when they do
    ///   not or cannot be read (the entry is removed from the cache, and `target` holds garbage).
    /// - Throws: `SystemError` when writing `target` fails (the cached file is not to blame).
    func copyVerified(_ entry: ManifestEntry, from source: Int32, to target: Int32) throws(SystemError) -> Bool {
        let before = try? FileStatus(descriptor: source)  // Unknown: the file is checked, not trusted next time.
        var hasher = SHA256()
        var total = 0
        // Small files need a small buffer; one byte more than expected shows a file that grew.
        var buffer = [UInt8](repeating: 0, count: entry.size < 1 << 20 ? entry.size + 1 : 1 << 20)
        while total <= entry.size {
            let n: Int
            do {
                n = try FD.read(source, into: &buffer)
            } catch {
                break  // An unreadable cached file is a miss: the digest check below fails.
            }
            if n == 0 { break }
            total += n
            if total > entry.size { break }
            let result = buffer.withUnsafeBytes { raw in
                let chunk = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                hasher.update(chunk)
                return Result { () throws(SystemError) in try FD.writeAll(target, chunk) }
            }
            try result.get()
        }
        let name = entry.digest.hex
        guard total == entry.size, constantTimeEqual(hasher.finalize(), entry.digest) else {
            index.withLock { index in
                index.remove(name)
                FileIO.unlink(directory + "/" + name)
            }
            return false
        }
        // Unchanged while it was read, and held by no job: what was hashed is what it holds.
        let now = try? FileStatus(descriptor: source)  // Unknown: not trusted.
        let unchanged = before.map { $0.links == 1 && now == $0 } ?? false
        let stamp = index.withLock { $0.touch(name) }
        // The file's time keeps the LRU order across restarts.
        try? FD.setTimes(source, nanoseconds: stamp)  // Then only a restart's LRU order is off.
        if unchanged, let after = try? FileStatus(descriptor: source) {  // Unknown: checked again next time.
            index.withLock { $0.files[name]?.identity = Identity(after) }
        }
        return true
    }

    /// Keeps a file whose digest has just been verified, then evicts the least recently used
    /// files until the cache fits its limit.
    ///
    /// The job's file gets a second name in the cache (a hard link), so caching costs no copy of
    /// the bytes. A rank that later rewrites its file in place rewrites the cached one too; that
    /// is caught like any other damage: `copyVerified` hashes what it copies and drops a cached
    /// file that no longer matches, and the next job asks the master for it. A file the owner
    /// cannot read (mode without 0400), or one on another file system, is copied instead.
    /// - Returns: the cached file's status-change time, noted with its identity (the job's ranks
    ///   wait for it, `waitUntilSettled`); nil when the file was not kept.
    ///
    /// `file`, when given, is the verified file still open and its name in its open directory:
    /// the cache name is then made with one `linkat` between the two directories, and the time
    /// and identity are set and read through the descriptor (a first shipping stores every file,
    /// and the path-walking link, rename, unlink, time and status calls were about a fifth of a
    /// worker's CPU). A cache name already taken, or a link refused, goes the general way below.
    @discardableResult
    func store(_ source: String, entry: ManifestEntry, file: StreamedFile? = nil) -> Int64? {
        guard entry.size <= limit, entry.digest.count == 32 else { return nil }
        let name = entry.digest.hex
        if let file, entry.mode & 0o400 != 0,
            (try? FD.link(file.name, in: file.directory, to: Array(name.utf8), in: directoryFD)) != nil  // Refused: linked or copied below.
        {
            return noteStored(name, size: entry.size) { stamp throws(SystemError) in
                try? FD.setTimes(file.descriptor, nanoseconds: stamp)  // Then only a restart's LRU order is off.
                return try FileStatus(descriptor: file.descriptor)
            }
        }
        let target = directory + "/" + name
        let temporary = target + ".part-\(CurrentProcess.id)-\(UInt64.random(in: 0...UInt64.max))"
        var linked = false
        if entry.mode & 0o400 != 0 {
            do {
                try FileIO.link(source, to: temporary)
                linked = true
            } catch {
                FileIO.unlink(temporary)  // Not linked (another file system, say): copied below.
            }
        }
        if !linked {
            do {
                try Self.copy(from: source, to: temporary, mode: 0o600)
            } catch {
                // Caching is best effort: the job has its file; only a later job's transfer is lost.
                FileIO.unlink(temporary)
                return nil
            }
        }
        do { try FileIO.rename(temporary, to: target) } catch {
            FileIO.unlink(temporary)  // Best effort too, as above.
            return nil
        }
        // rename does nothing when both names are already one file: the temporary name stays.
        FileIO.unlink(temporary)
        return noteStored(name, size: entry.size) { stamp throws(SystemError) in
            try? FileIO.setTimes(target, nanoseconds: stamp)  // Then only a restart's LRU order is off.
            return try FileStatus(path: target, followingSymlinks: false)
        }
    }

    /// Enters a file just stored under `name` in the index (evicting what no longer fits), gives
    /// it its stamp as file time (`touch`: the time keeps the LRU order across restarts), and
    /// notes its identity: the bytes were verified before they were stored, and nothing but the
    /// worker has touched them since (the job's ranks have not started).
    /// - Returns: the file's status-change time; nil when its status cannot be read (nothing noted).
    private func noteStored(_ name: String, size: Int, touch: (Int64) throws(SystemError) -> FileStatus) -> Int64? {
        let stamp = index.withLock { index in
            let stamp = index.insert(name, size: size, stamp: nil)
            evictOverLimit(&index)
            return stamp
        }
        guard let status = try? touch(stamp) else { return nil }  // Gone: nothing noted.
        index.withLock { $0.files[name]?.identity = Identity(status) }
        return status.changed
    }

    /// Removes the least recently used files until the total fits the limit: O(files evicted),
    /// amortized, under the lock.
    private func evictOverLimit(_ index: inout Index) {
        while index.total > limit, let victim = index.leastRecentlyUsed() {
            index.remove(victim)
            FileIO.unlink(directory + "/" + victim)
        }
    }

    /// Copies a file's bytes into a new file (the kernel copies: copy_file_range where it can).
    static func copy(from source: String, to target: String, mode: UInt32) throws(SystemError) {
        let input = try FileDescriptor.open(source, .readOnly)
        let output = try FileDescriptor.open(target, .writeOnly, options: [.create, .exclusiveCreate, .noFollow], permissions: mode)
        try copy(from: input.rawValue, to: output.rawValue)
        // Closed here, after the copy: a noncopyable value may otherwise end at its last use.
        input.close()
        output.close()
    }

    static func copy(from input: Int32, to output: Int32) throws(SystemError) {
        while true {
            let n: Int
            do { n = try FD.copyRange(from: input, to: output, count: 1 << 30) } catch { break }  // Not here: copy below.
            if n == 0 { return }
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

extension FileCache {
    /// What a cache file looked like when its bytes were known to match its name.
    struct Identity: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: Int
        var modified: Int64
        var changed: Int64

        init(_ status: FileStatus) {
            device = status.device
            inode = status.inode
            size = status.size
            modified = status.modified
            changed = status.changed
        }
    }

    /// What the cache holds, by file name, and the order of last use.
    struct Index {
        struct Record {
            var size: Int
            var stamp: Int64
            /// The file as it was when its bytes last matched its name; nil: not known (hash it).
            var identity: Identity?
        }

        var files: [String: Record] = [:]
        /// Bytes held (saturating: sizes are at most the limit, but the sum is checked anyway).
        var total = 0
        /// (stamp, name) in increasing stamp order. A use appends a new pair; pairs whose stamp is
        /// no longer the file's are stale and skipped, and dropped when they outnumber the live ones.
        private var order: [(stamp: Int64, name: String)] = []
        private var head = 0
        private var lastStamp: Int64 = 0

        /// A strictly increasing "now": file times come from a coarse clock, and files used
        /// microseconds apart must still be ordered.
        private mutating func nextStamp() -> Int64 {
            lastStamp = max(Int64(clamping: Clock.wallNanoseconds), lastStamp + 1)
            return lastStamp
        }

        /// Adds or replaces a file; `stamp` nil means "used now". Stamps must be given in increasing
        /// order. Returns the stamp given.
        @discardableResult
        mutating func insert(_ name: String, size: Int, stamp: Int64?) -> Int64 {
            remove(name)
            let stamp = stamp ?? nextStamp()
            lastStamp = max(lastStamp, stamp)
            files[name] = Record(size: size, stamp: stamp)
            let (sum, overflow) = total.addingReportingOverflow(size)
            total = overflow ? Int.max : sum
            order.append((stamp, name))
            compactIfStale()
            return stamp
        }

        /// Marks a file used now; returns the stamp given.
        mutating func touch(_ name: String) -> Int64 {
            let stamp = nextStamp()
            guard files[name] != nil else { return stamp }
            files[name]?.stamp = stamp
            order.append((stamp, name))
            compactIfStale()
            return stamp
        }

        mutating func remove(_ name: String) {
            guard let record = files.removeValue(forKey: name) else { return }
            total -= min(record.size, total)
        }

        /// The least recently used file's name, or nil when the cache is empty.
        mutating func leastRecentlyUsed() -> String? {
            while head < order.count {
                let (stamp, name) = order[head]
                head += 1
                if files[name]?.stamp == stamp { return name }
            }
            return nil
        }

        /// Keeps the queue linear in the number of files: each rebuild is paid for by the stale
        /// pairs (at least as many as the live ones) it drops.
        private mutating func compactIfStale() {
            guard order.count - head > 2 * files.count + 64 else { return }
            order = order[head...].filter { files[$0.name]?.stamp == $0.stamp }
            head = 0
        }
    }
}
