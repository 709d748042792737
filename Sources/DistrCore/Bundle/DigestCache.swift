import Synchronization

/// The master's record of the files it has hashed, so that shipping unchanged files again does
/// not read and hash them again.
///
/// A file is known by what identifies its content without reading it: device, inode, size,
/// modification time and status-change time (nanoseconds). The status-change time (`st_ctim`)
/// moves on every write and no user call can set it back, so a file rewritten in place with its
/// old size and modification time restored still misses. A digest is recorded only when the
/// file's times were already `settle` (2) seconds old when hashing began and its status did not
/// change while it was read: a write in the same timestamp tick as the hashing (the "racily
/// clean" case git knows) could otherwise leave a stale digest behind the same key.
///
/// The cache only saves hashing, never checking: a worker verifies every file it receives
/// against the manifest's digest, so a stale or wrong digest makes the job fail with a digest
/// mismatch; it cannot make a worker accept bytes the master did not send. (A digest that is
/// wrong on purpose and names another file the worker caches would give the job that file: the
/// cache file is therefore private, mode 0600 in a 0700 directory, like the cluster secret.)
///
/// Kept in one file, written whole to a temporary file and renamed in, so a crash or a
/// concurrent master leaves either the old or the new file. A file that is damaged (wrong magic,
/// a length that is not whole records, a checksum that does not match) or larger than
/// `maxEntries` records is ignored, and replaced at the next save.
package final class DigestCache: Sendable {
    /// What identifies a file's content without reading it.
    package struct Key: Hashable, Sendable {
        var device: UInt64
        var inode: UInt64
        var size: UInt64
        var modified: Int64
        var changed: Int64

        package init(_ status: FileStatus) {
            device = status.device
            inode = status.inode
            size = UInt64(clamping: status.size)
            modified = status.modified
            changed = status.changed
        }
    }

    /// At most this many files are remembered (a cache file of at most 7.2 MB); the files of the
    /// latest saves are kept first.
    package static let maxEntries = 20_000
    /// The bundle size from which the master uses the cache: loading a full cache (about 5 ms)
    /// costs more than hashing a smaller bundle with the SHA extensions (about 1 GB/s), and every
    /// run, even `exec true`, would pay it.
    package static let worthAbove = 32 << 20
    /// Seconds a file's times must be older than the start of its hashing for its digest to be
    /// kept: more than any local file system's timestamp tick.
    package let settle: Double

    static let magic = Array("distr-digests-1\n".utf8)
    static let recordSize = 5 * 8 + SHA256.digestSize

    package let path: String
    private let state: Mutex<State>

    private struct State {
        /// Read from the file, in its order (most recently saved first).
        var loaded: [(key: Key, digest: [UInt8])] = []
        var known: [Key: [UInt8]] = [:]
        /// Looked up or added since loading: saved first.
        var used: [Key: [UInt8]] = [:]
    }

    /// `$XDG_CACHE_HOME/distr/digests`, else `$HOME/.cache/distr/digests`; nil without either.
    package static var standardPath: String? { Environment.userCacheDirectory.map { $0 + "/digests" } }

    /// The cache in `standardPath`, or nil when there is none.
    package static func standard() -> DigestCache? { standardPath.map { DigestCache(path: $0) } }

    /// Loads the cache file at `path`; a missing, unreadable, damaged or oversized file gives an
    /// empty cache.
    package init(path: String, settle: Double = 2) {
        self.path = path
        self.settle = settle
        var state = State()
        if let records = Self.load(path) {
            for record in records where state.known[record.key] == nil {
                state.known[record.key] = record.digest
                state.loaded.append(record)
            }
        }
        self.state = Mutex(state)
    }

    /// How many digests the file held (for tests).
    package var loadedCount: Int { state.withLock { $0.loaded.count } }

    /// The digest recorded for a file in this state, if any.
    package func digest(for key: Key) -> [UInt8]? {
        state.withLock { state in
            guard let digest = state.known[key] else { return nil }
            state.used[key] = digest
            return digest
        }
    }

    /// Records a digest just computed from a file whose status was `key` before and after reading.
    package func record(_ key: Key, digest: [UInt8]) {
        guard digest.count == SHA256.digestSize else { return }
        state.withLock { state in
            state.known[key] = digest
            state.used[key] = digest
        }
    }

    /// Whether a file with this status, hashed from `start` (wall-clock nanoseconds), may be kept.
    func isSettled(_ status: FileStatus, hashingFrom start: Int64) -> Bool {
        let limit = start - Int64(settle * 1e9)
        return status.changed < limit && status.modified < limit
    }

    /// Writes the cache: the files used since loading first, then the others loaded, up to
    /// `maxEntries`. Best effort: a cache that cannot be written only costs hashing next time.
    package func save() {
        let bytes: [UInt8] = state.withLock { state in
            var writer = ByteWriter(capacity: Self.magic.count + Self.recordSize * min(Self.maxEntries, state.known.count) + 32)
            writer.raw(Self.magic)
            var count = 0
            func add(_ key: Key, _ digest: [UInt8]) {
                writer.u64(key.device)
                writer.u64(key.inode)
                writer.u64(key.size)
                writer.u64(UInt64(bitPattern: key.modified))
                writer.u64(UInt64(bitPattern: key.changed))
                writer.raw(digest)
                count += 1
            }
            for (key, digest) in state.used where count < Self.maxEntries { add(key, digest) }
            for (key, digest) in state.loaded where count < Self.maxEntries && state.used[key] == nil { add(key, digest) }
            writer.raw(SHA256.hash(writer.bytes))
            return writer.bytes
        }
        guard let slash = path.utf8.lastIndex(of: 0x2F) else { return }
        let directory = String(path[..<slash])
        let temporary = path + ".part-\(CurrentProcess.id)-\(UInt64.random(in: 0...UInt64.max))"
        do {
            try FileIO.makeDirectories(directory, mode: 0o700)
            try FileIO.write(temporary, bytes, mode: 0o600, exclusive: true)
            try FileIO.rename(temporary, to: path)
        } catch {
            FileIO.unlink(temporary)  // Best effort, as the whole save is.
        }
    }

    /// The records of the file at `path`, or nil when it is missing, unreadable or damaged.
    static func load(_ path: String) -> [(key: Key, digest: [UInt8])]? {
        let largest = magic.count + maxEntries * recordSize + SHA256.digestSize
        var bytes: [UInt8] = []
        do {
            let file = try FileDescriptor.open(path, .readOnly, options: .noFollow)
            let status = try FileStatus(descriptor: file.rawValue)
            guard status.kind == .regular, status.size <= largest else { return nil }
            var chunk = [UInt8](repeating: 0, count: 256 * 1024)
            // Read to the end, but never past the limit whatever the file grew to since fstat.
            while bytes.count <= largest {
                let n = try file.read(into: &chunk)
                if n == 0 { break }
                bytes.append(contentsOf: chunk[0..<n])
            }
        } catch {
            return nil  // Missing or unreadable: no cache.
        }
        guard bytes.count <= largest else { return nil }
        let body = bytes.count - SHA256.digestSize
        guard body >= magic.count, (body - magic.count) % recordSize == 0, bytes.starts(with: magic) else { return nil }
        let checksum = bytes.withUnsafeBytes { SHA256.hash(UnsafeRawBufferPointer(rebasing: $0[0..<body])) }
        guard constantTimeEqual(checksum, Array(bytes[body...])) else { return nil }
        var reader = ByteReader(Array(bytes[magic.count..<body]))
        var records: [(key: Key, digest: [UInt8])] = []
        records.reserveCapacity((body - magic.count) / recordSize)
        do {
            while !reader.isAtEnd {
                let key = Key(
                    device: try reader.u64(), inode: try reader.u64(), size: try reader.u64(),
                    modified: Int64(bitPattern: try reader.u64()), changed: Int64(bitPattern: try reader.u64()))
                records.append((key, try reader.raw(SHA256.digestSize)))
            }
        } catch {
            return nil  // Cannot happen after the length check; a damaged file is no cache anyway.
        }
        return records
    }
}

extension DigestCache.Key {
    init(device: UInt64, inode: UInt64, size: UInt64, modified: Int64, changed: Int64) {
        self.device = device
        self.inode = inode
        self.size = size
        self.modified = modified
        self.changed = changed
    }
}
