/// Writes a bundle's files into a job directory as their bytes stream in.
///
/// Every path component is opened relative to its parent's descriptor with `O_NOFOLLOW`, and
/// files are created with `O_EXCL`, so nothing in the bundle can follow a symlink out of the
/// directory or overwrite what is already there. Each file's SHA-256 is checked against the
/// authenticated manifest when its last byte arrives, or, for a file whose digest follows its
/// bytes, against the `fileDigests` frame that comes right after the frame that completed it.
package final class BundleExtractor {
    private let root: FileDescriptor
    var rootFD: Int32 { root.rawValue }
    /// The manifest; a digest that followed its file's bytes is filled in once checked.
    private(set) var manifest: [ManifestEntry]
    /// The next manifest entry to create.
    private var index = 0
    /// Files created and not yet verified, in manifest order: each is whole but the last, which
    /// may still wait for bytes. Verified in batches (`settle`): each written chunk's files are
    /// hashed together, two at a time.
    private var open: [OpenFile] = []
    /// Files whose digest follows their bytes, whole and hashed, waiting for it (in manifest
    /// order, still open): the next frame must be their `fileDigests` (`checkDigests`).
    private var awaiting: [(file: OpenFile, digest: [UInt8])] = []
    private var parents: ParentDirectories

    /// For each manifest entry: already written from the worker's cache, so the stream skips it.
    private var fromCache: [Bool]
    private let completed: (ManifestEntry, StreamedFile) -> Int64?

    /// How many files came from the cache.
    package private(set) var cachedCount = 0
    /// The latest status-change time the cache noted for a file this job shares with it (lent
    /// or stored), in nanoseconds since the epoch: the job's ranks must not start before the
    /// file-time clock has passed it (`FileCache.waitUntilSettled`). 0 when the job shares none.
    package private(set) var latestSharedChange: Int64 = 0
    /// The files this job shares with the cache (lent or stored): its path and the digest.
    package private(set) var sharedFiles: [(path: String, digest: [UInt8])] = []

    /// A streamed file being written: its manifest index, descriptor, hash so far and bytes written.
    private struct OpenFile {
        let entry: Int
        let fd: Int32
        var hasher = SHA256()
        var written = 0
    }

    /// Bytes just written to `open[file]`, not yet hashed.
    private struct Piece {
        var file: Int
        var bytes: UnsafeRawBufferPointer
    }

    /// At most this many files are kept open unverified (a chunk may hold thousands of tiny ones).
    static let openLimit = 64

    /// - Parameter completed: called for each streamed file once its digest has been verified,
    ///   with the file still open; returns the status-change time the cache noted when it kept
    ///   the file (nil: not kept).
    /// - Throws: `BundleError` when the manifest breaks a rule or a limit.
    package convenience init(
        directory: String, manifest: [ManifestEntry], limits: Limits,
        completed: @escaping (ManifestEntry, StreamedFile) -> Int64? = { _, _ in nil }
    ) throws(BundleError) {
        try self.init(directory: directory, manifest: manifest, limits: limits, cache: nil, completed: completed)
    }

    /// Validates the manifest, then writes every file `cache` holds with the right bytes, one
    /// cached file open at a time. Call it before telling the master which files to send
    /// (`streamedIndices`): a cached file that fails its digest check is then simply asked for.
    /// - Throws: `BundleError` when the manifest breaks a rule or a limit, or a file cannot be created.
    init(
        directory: String, manifest: [ManifestEntry], limits: Limits, cache: FileCache?,
        completed: @escaping (ManifestEntry, StreamedFile) -> Int64? = { _, _ in nil }
    ) throws(BundleError) {
        self.completed = completed
        self.manifest = manifest
        fromCache = Array(repeating: false, count: manifest.count)
        try BundlePath.validate(manifest: manifest, limits: limits)
        do { root = try FileDescriptor.open(directory, .readOnly, options: [.directory, .noFollow]) } catch {
            throw .cannotCreate(directory, error)
        }
        parents = ParentDirectories(root: root.rawValue)
        if let cache { try copyCached(from: cache) }
        var none: [Piece] = []
        try advance(&none)
        try settle(&none)
    }

    deinit {
        for file in open { FD.close(file.fd) }
        for waiting in awaiting { FD.close(waiting.file.fd) }
        parents.close()
    }

    package var isComplete: Bool { index == manifest.count && open.isEmpty && awaiting.isEmpty }

    /// The manifest indices of the files waiting for their digests.
    package var awaitingDigests: [Int] { awaiting.map(\.file.entry) }

    /// The manifest indices the stream must carry, in order: what the worker asks the master for.
    package var streamedIndices: [Int] { manifest.indices.filter { !fromCache[$0] } }

    /// The path being received, for error messages.
    package var currentPath: String {
        if let last = open.last, last.written < manifest[last.entry].size { return manifest[last.entry].path }
        return index < manifest.count ? manifest[index].path : ""
    }

    /// Writes the next bytes of the stream, which may span files.
    package func write(_ bytes: [UInt8]) throws(BundleError) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(BundleError) in try write(raw) } }
        try result.get()
    }

    /// Writes the next bytes of the stream, which may span files: each file's part is written,
    /// then the parts are hashed (two files at a time, see `hash`), then the files whose last
    /// byte came are verified and handed to `completed`. `bytes` is not kept.
    package func write(_ bytes: UnsafeRawBufferPointer) throws(BundleError) {
        if let first = awaiting.first { throw .digestsMissing(manifest[first.file.entry].path) }
        var work: [Piece] = []
        var offset = 0
        while offset < bytes.count {
            guard let last = open.indices.last, open[last].written < manifest[open[last].entry].size else { throw .unexpectedData }
            let entry = manifest[open[last].entry]
            let take = min(entry.size - open[last].written, bytes.count - offset)
            let piece = UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + take])
            do { try FD.writeAll(open[last].fd, piece) } catch { throw .cannotCreate(entry.path, error) }
            work.append(Piece(file: last, bytes: piece))
            open[last].written += take
            offset += take
            try advance(&work)
        }
        try settle(&work)
    }

    /// Opens files until one needs bytes from the stream: skips cached files and opens the next
    /// streamed one (an empty one is whole at once). A loop, not recursion: a manifest may list
    /// any number of empty files in a row; at most `openLimit` stay open unverified.
    private func advance(_ work: inout [Piece]) throws(BundleError) {
        while index < manifest.count {
            if let last = open.last, last.written < manifest[last.entry].size { return }
            if fromCache[index] {
                index += 1
                continue
            }
            if open.count >= Self.openLimit { try settle(&work) }
            open.append(OpenFile(entry: index, fd: try create(manifest[index])))
            index += 1
        }
    }

    /// Hashes `work` (then empties it), then verifies each whole file at the front of `open`
    /// against its digest, hands it to `completed` and closes it.
    private func settle(_ work: inout [Piece]) throws(BundleError) {
        hash(work)
        work = []
        while let first = open.first, first.written == manifest[first.entry].size {
            open.removeFirst()
            var hasher = first.hasher
            let digest = hasher.finalize()
            if manifest[first.entry].digestFollows {
                // Bounded by the master's frames (a file whose digest follows is at least
                // `BundleCollector.lateDigestMinimum` bytes), and checked: each stays open.
                guard awaiting.count < Self.openLimit else {
                    FD.close(first.fd)
                    throw .digestsMissing(manifest[first.entry].path)
                }
                awaiting.append((first, digest))
                continue
            }
            defer { FD.close(first.fd) }
            try verified(first, digest: digest)
        }
    }

    /// Checks the digests that followed the files in `awaiting` (all of them, in order), then
    /// hands each file to `completed` as `settle` does.
    /// - Throws: `BundleError.unexpectedDigests` when they are not for exactly those files,
    ///   `.digestMismatch` naming the first file whose bytes do not match.
    package func checkDigests(_ digests: [FileDigest]) throws(BundleError) {
        let waiting = awaiting.map(\.file.entry)
        guard digests.map(\.index) == waiting else { throw .unexpectedDigests(got: digests.map(\.index), awaiting: waiting) }
        for (position, file) in digests.enumerated() {
            manifest[file.index].digest = file.digest
            try verified(awaiting[position].file, digest: awaiting[position].digest)
        }
        for waiting in awaiting { FD.close(waiting.file.fd) }
        awaiting = []
    }

    /// Compares a whole file's `digest` with the manifest's and hands the file to `completed`.
    private func verified(_ file: OpenFile, digest: [UInt8]) throws(BundleError) {
        let entry = manifest[file.entry]
        guard constantTimeEqual(digest, entry.digest) else { throw .digestMismatch(entry.path) }
        let (parent, name) = try openParent(of: entry)
        if let changed = completed(entry, StreamedFile(descriptor: file.fd, directory: parent, name: name)) {
            latestSharedChange = max(latestSharedChange, changed)
            sharedFiles.append((entry.path, entry.digest))
        }
    }

    /// Feeds each piece to its file's hash, two files at once (`SHA256.update(_:with:_:with:)`:
    /// one hash chain leaves the SHA unit idle between its rounds, two keep it busy): a chunk of
    /// the stream usually holds several files. Each piece belongs to a different file.
    private func hash(_ work: [Piece]) {
        let (first, second) = Self.lanes(work)
        var a = first[...]
        var b = second[...]
        while let x = a.first {
            guard let y = b.first else {
                open[x.file].hasher.update(x.bytes)
                a = a.dropFirst()
                continue
            }
            let n = min(x.bytes.count, y.bytes.count)
            assert(x.file != y.file, "the two lanes never hold one file at the same time")
            var one = open[x.file].hasher
            var other = open[y.file].hasher
            SHA256.update(
                &one, with: UnsafeRawBufferPointer(rebasing: x.bytes[..<n]), &other, with: UnsafeRawBufferPointer(rebasing: y.bytes[..<n]))
            open[x.file].hasher = one
            open[y.file].hasher = other
            Self.consume(n, of: &a)
            Self.consume(n, of: &b)
        }
        for y in b { open[y.file].hasher.update(y.bytes) }
    }

    /// Splits the pieces into two lanes of (nearly) equal bytes, hashed side by side. A piece
    /// longer than half of all goes alone. Otherwise the first lane takes the pieces up to the
    /// middle and the second those after it; the piece across the middle is cut there, its
    /// first part leading the second lane and its rest ending the first, so its first part is
    /// hashed before its rest begins (it is no longer than half, see McNaughton's wrap-around
    /// rule for two machines).
    private static func lanes(_ work: [Piece]) -> ([Piece], [Piece]) {
        let total = work.reduce(0) { $0 + $1.bytes.count }
        let half = (total + 1) / 2
        if let long = work.firstIndex(where: { $0.bytes.count > half }) {
            var rest = work
            rest.remove(at: long)
            return (rest, [work[long]])
        }
        var first: [Piece] = []
        var second: [Piece] = []
        var position = 0
        for piece in work {
            let end = position + piece.bytes.count
            if end <= half {
                first.append(piece)
            } else if position >= half {
                second.append(piece)
            } else {
                let lead = end - half
                second.append(Piece(file: piece.file, bytes: UnsafeRawBufferPointer(rebasing: piece.bytes[..<lead])))
                first.append(Piece(file: piece.file, bytes: UnsafeRawBufferPointer(rebasing: piece.bytes[lead...])))
            }
            position = end
        }
        return (first, second)
    }

    /// Drops the first `count` bytes of the lane's first piece (and the piece once it is all hashed).
    private static func consume(_ count: Int, of lane: inout ArraySlice<Piece>) {
        guard let piece = lane.first else { return }
        if piece.bytes.count == count {
            lane = lane.dropFirst()
        } else {
            lane[lane.startIndex].bytes = UnsafeRawBufferPointer(rebasing: piece.bytes[count...])
        }
    }

    /// Puts in place the files the cache has: lent (a second name, see `FileCache.lend`) when the
    /// cache knows them unchanged, else copied and verified; a file whose cached bytes do not
    /// match is removed again and left to the stream.
    private func copyCached(from cache: FileCache) throws(BundleError) {
        // A file whose digest follows its bytes cannot be looked up: the stream carries it.
        for (position, entry) in manifest.enumerated() where !entry.digestFollows {
            let (parent, name) = try openParent(of: entry)
            if let changed = cache.lend(entry, into: parent, name: name) {
                latestSharedChange = max(latestSharedChange, changed)
                sharedFiles.append((entry.path, entry.digest))
                fromCache[position] = true
                cachedCount += 1
                continue
            }
            guard let source = cache.open(entry) else { continue }
            defer { FD.close(source) }
            let target = try create(entry)
            let verified: Bool
            do {
                verified = try cache.copyVerified(entry, from: source, to: target)
            } catch {
                FD.close(target)
                throw .cannotCreate(entry.path, error)
            }
            FD.close(target)
            if verified {
                fromCache[position] = true
                cachedCount += 1
            } else {
                try remove(entry)
            }
        }
    }

    /// Creates `entry`'s file (and its directories) with `O_EXCL`; returns a descriptor to write it.
    private func create(_ entry: ManifestEntry) throws(BundleError) -> Int32 {
        let (parent, name) = try openParent(of: entry)
        let permissions = entry.mode & 0o777
        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(
                name, in: parent, .writeOnly, options: [.create, .exclusiveCreate, .noFollow], permissions: permissions)
        } catch {
            throw error.code == .exists ? .duplicate(entry.path) : .cannotCreate(entry.path, error)
        }
        // The umask may have cleared bits the master asked for.
        do { try file.setPermissions(permissions) } catch { throw .cannotCreate(entry.path, error) }
        return file.release()
    }

    /// Unlinks `entry`'s file (a cached copy that failed its check), so the stream can create it.
    private func remove(_ entry: ManifestEntry) throws(BundleError) {
        let (parent, name) = try openParent(of: entry)
        do { try FD.unlink(name, in: parent) } catch { throw .cannotCreate(entry.path, error) }
    }

    /// The directory that holds `entry` (see `ParentDirectories`) and the file's name in it.
    private func openParent(of entry: ManifestEntry) throws(BundleError) -> (fd: Int32, name: [UInt8]) {
        try parents.open(of: entry)
    }
}

/// A streamed file whose digest has just been verified, still open: its descriptor (for
/// writing), and its name in the directory that holds it (open too). Both descriptors belong to
/// the extractor and are valid only during the `completed` call.
package struct StreamedFile {
    package let descriptor: Int32
    package let directory: Int32
    package let name: [UInt8]
}

/// Opens, creating as needed, the directories that hold a bundle's files: one component at a
/// time, as bytes split at `/` exactly as `BundlePath.validate` checked them, never following a
/// symlink. The last directory opened stays open: a manifest lists a directory's files together,
/// so a file costs no directory calls. Nothing but the extractor writes the job directory
/// while files are put in place (ranks start later), so the open directory stays the one made.
struct ParentDirectories {
    let root: Int32
    /// Whether missing directories are made (false: a missing one is an error).
    let creating: Bool
    private var components: [[UInt8]] = []
    private var fd: Int32 = -1

    init(root: Int32, creating: Bool = true) {
        self.root = root
        self.creating = creating
    }

    /// The directory that holds `entry` (`root` for a top-level file) and the file's name in it.
    /// The directory belongs to this value: the caller must not close it.
    mutating func open(of entry: ManifestEntry) throws(BundleError) -> (fd: Int32, name: [UInt8]) {
        try open(path: entry.path)
    }

    /// The directory that holds the file at `path` (relative to `root`, checked by
    /// `BundlePath.validate`) and the file's name in it. The directory belongs to this value.
    mutating func open(path: String) throws(BundleError) -> (fd: Int32, name: [UInt8]) {
        let all = BundlePath.components(path)
        let directories = Array(all.dropLast())
        let name = all.last ?? []
        if directories.isEmpty { return (root, name) }
        if fd >= 0 && directories == components { return (fd, name) }
        close()
        var parent = root
        for component in directories {
            let next: Result<Int32, SystemError> = Result { () throws(SystemError) in
                if creating {
                    do throws(SystemError) { try FD.makeDirectory(component, in: parent, permissions: 0o755) } catch {
                        // Made by an earlier entry (or a file of that name, which openat refuses below).
                        guard error.code == .exists else { throw error }
                    }
                }
                return try FileDescriptor.open(component, in: parent, .readOnly, options: [.directory, .noFollow]).release()
            }
            if parent != root { FD.close(parent) }
            switch next {
            case .success(let opened): parent = opened
            case .failure(let error):
                if error.code == .notDirectory || error.code == .tooManySymbolicLinks { throw .duplicate(path) }
                throw .cannotCreate(path, error)
            }
        }
        fd = parent
        components = directories
        return (parent, name)
    }

    /// Closes the directory kept open.
    mutating func close() {
        if fd >= 0 { FD.close(fd) }
        fd = -1
        components = []
    }
}
