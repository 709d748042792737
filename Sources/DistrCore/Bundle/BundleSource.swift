import Dispatch
import Synchronization

/// A local file the master ships, with its place in the bundle.
package struct BundleSource: Sendable, Equatable {
    package var localPath: String
    package var entry: ManifestEntry
    /// For a file whose digest follows its bytes (`entry.digestFollows`): where the digest
    /// appears once the file is hashed.
    package var late: LateDigest?

    package init(localPath: String, entry: ManifestEntry, late: LateDigest? = nil) {
        self.localPath = localPath
        self.entry = entry
        self.late = late
    }

    package static func == (a: Self, b: Self) -> Bool { a.localPath == b.localPath && a.entry == b.entry && a.late === b.late }
}

/// The digest of a file hashed while it is being sent (protocol 5): published by a hashing
/// thread, waited for by each worker's sending thread after it sent the file's last byte.
package final class LateDigest: Sendable {
    private let done = Latch()
    private let result = Mutex<Result<[UInt8], BundleError>?>(nil)

    package init() {}

    func publish(_ outcome: Result<[UInt8], BundleError>) {
        result.withLock { $0 = $0 ?? outcome }
        done.open()
    }

    /// Blocks until the file is hashed.
    /// - Throws: `BundleError.cannotRead` when it could not be.
    package func wait() throws(BundleError) -> [UInt8] {
        done.wait()
        return try result.withLock { $0 ?? .failure(.incomplete("?")) }.get()
    }
}

/// The hashing of the files whose digests follow their bytes, on threads of its own while the
/// master connects and sends. `finish` ends it and saves the digest cache.
package final class LateHashing: Sendable {
    private let work: BundleCollector.HashWork
    private let digests: DigestCache?
    private let threads = DispatchGroup()

    init(_ work: BundleCollector.HashWork, digests: DigestCache?, threads count: Int) {
        self.work = work
        self.digests = digests
        for _ in 0..<count {
            threads.enter()
            Threads.start(name: "distr-hash") { [self] in
                work.run()
                threads.leave()
            }
        }
    }

    /// Stops hashing what no one waits for any more (the job ended early), waits for the
    /// threads, and saves the digest cache with what was hashed.
    package func finish() {
        work.stop()
        threads.wait()
        digests?.save()
    }
}

/// Collects the files named by `--file` and the program into a manifest, hashing each once.
package enum BundleCollector {
    /// Where a local path lands in the job directory: a relative path without `..` keeps its
    /// layout (`lib/util.py`), anything else lands under its last component. Works on the path's
    /// bytes split at `/`, as the kernel does (see `BundlePath`).
    package static func bundlePath(for local: String) -> String {
        let slash: UInt8 = 0x2F
        var path = Array(local.utf8)[...]
        while path.starts(with: [0x2E, slash]) { path = path.dropFirst(2) }
        while path.count > 1 && path.last == slash { path = path.dropLast() }
        let components = path.split(separator: slash)
        let escapes =
            path.isEmpty || path.first == slash
            || components.contains { $0.elementsEqual([0x2E, 0x2E]) || $0.elementsEqual([0x2E]) }
        if escapes {
            return String(decoding: components.last ?? path, as: UTF8.self)
        }
        return String(decoding: Array(components.joined(separator: [slash])), as: UTF8.self)
    }

    /// Expands files and directories (recursively; symlinked files are shipped as their content,
    /// symlinked directories are not followed) and hashes every file: on several threads when
    /// there is much to hash, and not at all for files `digests` knows unchanged (it is saved
    /// afterwards). `digests` is only opened when the files add up to `cacheAbove` bytes or more:
    /// loading the cache costs more than hashing a small bundle.
    /// - Throws: `BundleError.cannotRead` naming the path, or a path-rule error.
    package static func collect(
        _ paths: [String], digests makeDigests: @autoclosure () -> DigestCache? = nil, cacheAbove: Int = 0
    ) throws(BundleError) -> [BundleSource] {
        try collect(paths, digests: makeDigests(), cacheAbove: cacheAbove, lateFrom: nil).sources
    }

    /// Files of at least this many bytes whose digest the master's cache does not know are
    /// hashed while they are sent (`collect(_:digests:cacheAbove:lateFrom:)`). A frame of file
    /// data (256 KiB) then completes at most five of them, which the worker keeps open until
    /// their digests come.
    package static let lateDigestMinimum = 64 << 10

    /// `collect`, but when the digest cache is used (`cacheAbove`), each file of `lateFrom`
    /// bytes or more that the cache does not know is not hashed now: its manifest entry has no
    /// digest, and `hashing` hashes it on threads of its own while the master connects and
    /// sends, publishing the digest in the source's `late` for the `fileDigests` frame that
    /// follows the file's bytes. Without a digest cache a re-run could not name the files by
    /// digest, and the workers' caches would never be used: everything is hashed first, then.
    /// - Throws: `BundleError.cannotRead` naming the path, or a path-rule error.
    package static func collect(
        _ paths: [String], digests makeDigests: @autoclosure () -> DigestCache?, cacheAbove: Int, lateFrom: Int?
    ) throws(BundleError) -> (sources: [BundleSource], hashing: LateHashing?) {
        var found: [(local: String, bundle: String, status: FileStatus)] = []
        var seen = Set<String>()
        for path in paths {
            try add(local: path, bundle: bundlePath(for: path), into: &found, seen: &seen, top: true)
        }
        let digests = found.reduce(0, { $0 + $1.status.size }) >= cacheAbove ? makeDigests() : nil
        let late: [LateDigest?] = found.map { file in
            guard let lateFrom, let digests, file.status.size >= lateFrom, digests.digest(for: DigestCache.Key(file.status)) == nil else {
                return nil
            }
            return LateDigest()
        }
        let now = found.indices.filter { late[$0] == nil }
        let hashes = try hashAll(now.map { (found[$0].local, found[$0].status) }, digests: digests)
        var digestOf = [[UInt8]](repeating: [], count: found.count)
        for (index, digest) in zip(now, hashes) { digestOf[index] = digest }
        let later = found.indices.compactMap { index in
            late[index].map { (index: index, local: found[index].local, status: found[index].status, late: $0) }
        }
        var hashing: LateHashing?
        if later.isEmpty {
            digests?.save()
        } else {
            let work = HashWork(files: later.map { ($0.index, $0.local, $0.status) }, digests: digests, late: later.map(\.late))
            hashing = LateHashing(work, digests: digests, threads: max(1, min(SystemFacts.cores, 4, later.count)))
        }
        let sources = found.indices.map { index in
            let file = found[index]
            return BundleSource(
                localPath: file.local,
                entry: ManifestEntry(path: file.bundle, mode: file.status.permissions & 0o777, size: file.status.size, digest: digestOf[index]),
                late: late[index])
        }
        return (sources, hashing)
    }

    private static func add(
        local: String, bundle: String, into result: inout [(local: String, bundle: String, status: FileStatus)], seen: inout Set<String>,
        top: Bool
    ) throws(BundleError) {
        let status: FileStatus
        do { status = try FileStatus(path: local) } catch { throw .cannotRead(local, error) }
        if status.kind == .directory {
            // A symlinked directory below the top is not followed.
            if !top, (try? FileStatus(path: local, followingSymlinks: false).kind) == .symbolicLink {  // lstat failed: as `stat` saw it.
                return
            }
            let names: [String]
            do {
                names = try Directory(path: local).entries().map(\.string)
            } catch {
                throw .cannotRead(local, error)
            }
            for name in names.sorted() {
                try add(local: local + "/" + name, bundle: bundle + "/" + name, into: &result, seen: &seen, top: false)
            }
            return
        }
        guard status.kind == .regular else { return }
        try BundlePath.validate(bundle)
        guard seen.insert(bundle).inserted else { return }
        result.append((local, bundle, status))
    }

    /// Below this many bytes to hash, threads cost more than they save.
    static let parallelThreshold = 4 << 20

    /// The digest of each file, in order: from `digests` when it knows the file in the state
    /// `stat` saw, else read and hashed, spread over up to `SystemFacts.cores` threads (at most 4)
    /// that take the next file as they finish one.
    /// - Throws: `BundleError.cannotRead` for the first file (in order) that could not be read.
    static func hashAll(_ files: [(local: String, status: FileStatus)], digests: DigestCache?) throws(BundleError) -> [[UInt8]] {
        var results = [[UInt8]?](repeating: nil, count: files.count)
        var missing: [Int] = []
        var missingBytes = 0
        for (index, file) in files.enumerated() {
            if let digest = digests?.digest(for: DigestCache.Key(file.status)) {
                results[index] = digest
            } else {
                missing.append(index)
                missingBytes = missingBytes.addingReportingOverflow(file.status.size).overflow ? Int.max : missingBytes + file.status.size
            }
        }
        // Nothing to read (no files, or all known): no read buffer, whose 1 MiB of zeroed pages
        // cost a fifth of the CPU of a master that ships nothing.
        if missing.isEmpty { return results.map { $0 ?? [] } }
        let threads = missingBytes < parallelThreshold ? 1 : max(1, min(SystemFacts.cores, 4, missing.count))
        let work = HashWork(files: missing.map { (index: $0, local: files[$0].local, status: files[$0].status) }, digests: digests)
        let done = DispatchGroup()
        for _ in 1..<threads {
            done.enter()
            Threads.start(name: "distr-hash") {
                work.run()
                done.leave()
            }
        }
        work.run()
        done.wait()
        let outcome = work.outcome.withLock { $0 }
        if let (_, error) = outcome.errors.min(by: { $0.key < $1.key }) { throw error }
        for (index, digest) in outcome.digests { results[index] = digest }
        return results.map { $0 ?? [] }
    }

    /// Files to hash, shared by the hashing threads.
    final class HashWork: Sendable {
        let files: [(index: Int, local: String, status: FileStatus)]
        let digests: DigestCache?
        /// Where each file's digest (or failure) is published as soon as it is known (late hashing).
        let late: [LateDigest]?
        let next = Atomic<Int>(0)
        let outcome = Mutex<(digests: [Int: [UInt8]], errors: [Int: BundleError])>(([:], [:]))
        private let stopped = Atomic<Bool>(false)

        init(files: [(index: Int, local: String, status: FileStatus)], digests: DigestCache?, late: [LateDigest]? = nil) {
            self.files = files
            self.digests = digests
            self.late = late
        }

        /// Takes no more files; those begun are dropped at their next read.
        func stop() { stopped.store(true, ordering: .releasing) }

        /// Hashes files until none is left, two at a time (`SHA256.update(_:with:_:with:)`:
        /// one hash chain leaves the SHA unit idle between its rounds, two keep it busy), one
        /// read buffer per file being hashed.
        func run() {
            // No larger than the largest file needs: a small bundle's hashing zeroes few pages.
            let size = max(4096, min(512 << 10, files.map(\.status.size).max() ?? 0))
            var buffers = ([UInt8](repeating: 0, count: size), [UInt8](repeating: 0, count: size))
            var first: (position: Int, file: FileHashing)?
            var second: (position: Int, file: FileHashing)?
            while true {
                if stopped.load(ordering: .acquiring) {
                    // No one waits for these any more; a waiter would learn they were not hashed.
                    for dropped in [first, second].compactMap({ $0 }) { fail(dropped, .incomplete(files[dropped.position].local)) }
                    while case let position = next.add(1, ordering: .relaxed).oldValue, position < files.count {
                        late?[position].publish(.failure(.incomplete(files[position].local)))
                    }
                    return
                }
                if first == nil { (first, second) = (second, nil) }
                if first == nil { first = take() }
                if second == nil { second = take() }
                guard let a = first else { return }
                let n: Int
                do { n = try a.file.read(into: &buffers.0, hashing: second == nil) } catch {
                    fail(a, error)
                    first = nil
                    continue
                }
                if let b = second {
                    let m: Int
                    do { m = try b.file.read(into: &buffers.1, hashing: false) } catch {
                        fail(b, error)
                        second = nil
                        m = 0
                    }
                    buffers.0.withUnsafeBytes { bytesA in
                        buffers.1.withUnsafeBytes { bytesB in
                            SHA256.update(
                                &a.file.hasher, with: UnsafeRawBufferPointer(rebasing: bytesA[0..<n]), &b.file.hasher,
                                with: UnsafeRawBufferPointer(rebasing: bytesB[0..<m]))
                        }
                    }
                    if m == 0, second != nil {
                        finish(b)
                        second = nil
                    }
                }
                if n == 0 {
                    finish(a)
                    first = nil
                }
            }
        }

        /// The next file to hash, opened (one that cannot be opened is recorded as failed and skipped).
        private func take() -> (position: Int, file: FileHashing)? {
            while true {
                let position = next.add(1, ordering: .relaxed).oldValue
                guard position < files.count else { return nil }
                let file = files[position]
                do { return (position, try FileHashing(file.local, expecting: file.status, digests: digests)) } catch {
                    outcome.withLock { $0.errors[file.index] = error }
                    late?[position].publish(.failure(error))
                }
            }
        }

        private func fail(_ hashed: (position: Int, file: FileHashing), _ error: BundleError) {
            outcome.withLock { $0.errors[files[hashed.position].index] = error }
            late?[hashed.position].publish(.failure(error))
        }

        private func finish(_ hashed: (position: Int, file: FileHashing)) {
            let digest = hashed.file.finish()
            outcome.withLock { $0.digests[files[hashed.position].index] = digest }
            late?[hashed.position].publish(.success(digest))
        }
    }

    /// Reads and hashes a file. When `digests` is given, the digest is recorded if the file's
    /// status was `expected` (what the manifest says) before and after the reading, and settled.
    package static func hashFile(
        _ path: String, expecting expected: FileStatus?, digests: DigestCache?, buffer: inout [UInt8]
    ) throws(BundleError) -> [UInt8] {
        let file = try FileHashing(path, expecting: expected, digests: digests)
        while try file.read(into: &buffer) > 0 {}
        return file.finish()
    }
}

/// One file being read and hashed for the manifest (`BundleCollector.hashFile`): open, with its
/// status before the reading; `finish` gives the digest and, with a digest cache, records it if
/// the file's status was the expected one before and after the reading, and settled. The file
/// is closed when this object ends.
final class FileHashing {
    let path: String
    let expected: FileStatus?
    let digests: DigestCache?
    let start: Int64
    let fd: Int32
    let before: FileStatus?
    var hasher = SHA256()

    /// - Throws: `BundleError.cannotRead` naming `path`.
    init(_ path: String, expecting expected: FileStatus?, digests: DigestCache?) throws(BundleError) {
        self.path = path
        self.expected = expected
        self.digests = digests
        start = Int64(clamping: Clock.wallNanoseconds)
        do { fd = try FileDescriptor.open(path, .readOnly).release() } catch { throw .cannotRead(path, error) }
        before = try? FileStatus(descriptor: fd)  // Unknown: the digest is not kept.
    }

    deinit { FD.close(fd) }

    /// Reads the next bytes into `buffer` and (unless told not to) hashes them; 0 at the end.
    /// - Throws: `BundleError.cannotRead` naming the path.
    func read(into buffer: inout [UInt8], hashing: Bool = true) throws(BundleError) -> Int {
        let n: Int
        do { n = try FD.read(fd, into: &buffer) } catch { throw .cannotRead(path, error) }
        if hashing { buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) } }
        return n
    }

    /// The digest of what was read.
    func finish() -> [UInt8] {
        let digest = hasher.finalize()
        if let digests, let expected, let before, let after = try? FileStatus(descriptor: fd),  // Unknown: not kept.
            DigestCache.Key(before) == DigestCache.Key(expected), DigestCache.Key(after) == DigestCache.Key(expected),
            digests.isSettled(expected, hashingFrom: start)
        {
            digests.record(DigestCache.Key(expected), digest: digest)
        }
        return digest
    }
}
