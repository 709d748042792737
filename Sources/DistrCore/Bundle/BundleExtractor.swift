@preconcurrency import Glibc

/// Writes a bundle's files into a job directory as their bytes stream in.
///
/// Every path component is opened relative to its parent's descriptor with `O_NOFOLLOW`, and
/// files are created with `O_EXCL`, so nothing in the bundle can follow a symlink out of the
/// directory or overwrite what is already there. Each file's SHA-256 is checked against the
/// authenticated manifest when its last byte arrives.
public final class BundleExtractor {
    let rootFD: Int32
    let manifest: [ManifestEntry]
    private var index = 0
    private var written = 0
    private var currentFD: Int32 = -1
    private var hasher = SHA256()

    /// For each manifest entry: already written from the worker's cache, so the stream skips it.
    private var fromCache: [Bool]
    private let completed: (ManifestEntry) -> Void

    /// How many files came from the cache.
    public private(set) var cachedCount = 0

    /// - Parameter completed: called for each streamed file once its digest has been verified.
    /// - Throws: `BundleError` when the manifest breaks a rule or a limit.
    public convenience init(
        directory: String, manifest: [ManifestEntry], limits: Limits, completed: @escaping (ManifestEntry) -> Void = { _ in }
    ) throws(BundleError) {
        try self.init(directory: directory, manifest: manifest, limits: limits, cache: nil, completed: completed)
    }

    /// Validates the manifest, then writes every file `cache` holds with the right bytes, one
    /// cached file open at a time. Call it before telling the master which files to send
    /// (`streamedIndices`): a cached file that fails its digest check is then simply asked for.
    /// - Throws: `BundleError` when the manifest breaks a rule or a limit, or a file cannot be created.
    init(
        directory: String, manifest: [ManifestEntry], limits: Limits, cache: FileCache?,
        completed: @escaping (ManifestEntry) -> Void = { _ in }
    ) throws(BundleError) {
        self.completed = completed
        self.manifest = manifest
        fromCache = Array(repeating: false, count: manifest.count)
        try BundlePath.validate(manifest: manifest, limits: limits)
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw .cannotCreate(directory, .current("open")) }
        rootFD = fd
        if let cache { try copyCached(from: cache) }
        try advance()
    }

    deinit {
        FD.close(currentFD)
        FD.close(rootFD)
    }

    public var isComplete: Bool { index == manifest.count }

    /// The manifest indices the stream must carry, in order: what the worker asks the master for.
    public var streamedIndices: [Int] { manifest.indices.filter { !fromCache[$0] } }

    /// The path being received, for error messages.
    public var currentPath: String { index < manifest.count ? manifest[index].path : "" }

    /// Writes the next bytes of the stream, which may span files.
    public func write(_ bytes: [UInt8]) throws(BundleError) {
        var offset = 0
        while offset < bytes.count {
            guard index < manifest.count else { throw .unexpectedData }
            let entry = manifest[index]
            let take = min(entry.size - written, bytes.count - offset)
            let fd = currentFD
            let result = bytes.withUnsafeBytes { raw in
                let slice = UnsafeRawBufferPointer(rebasing: raw[offset..<offset + take])
                hasher.update(slice)
                return Result { () throws(SystemError) in try FD.writeAll(fd, slice) }
            }
            if case .failure(let error) = result { throw .cannotCreate(entry.path, error) }
            written += take
            offset += take
            try advance()
        }
    }

    /// Finishes the current file if its last byte has arrived, then moves on until a file needs
    /// bytes from the stream: skips cached files, opens the next streamed one, and finishes empty
    /// ones at once. A loop, not recursion: a manifest may list any number of empty files in a row.
    private func advance() throws(BundleError) {
        while index < manifest.count {
            if fromCache[index] {
                index += 1
                continue
            }
            let entry = manifest[index]
            if currentFD < 0 {
                currentFD = try create(entry)
                written = 0
                hasher = SHA256()
            }
            guard written == entry.size else { return }
            FD.close(currentFD)
            currentFD = -1
            guard constantTimeEqual(hasher.finalize(), entry.digest) else { throw .digestMismatch(entry.path) }
            completed(entry)
            index += 1
        }
    }

    /// Writes the files the cache has, verified; a file whose cached bytes do not match is
    /// removed again and left to the stream.
    private func copyCached(from cache: FileCache) throws(BundleError) {
        for (position, entry) in manifest.enumerated() {
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
        defer { if parent != rootFD { FD.close(parent) } }
        let mode = mode_t(entry.mode & 0o777)
        let (fd, code) = FileIO.call(name) { openat(parent, $0, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode) }
        guard fd >= 0 else {
            if code == EEXIST { throw .duplicate(entry.path) }
            throw .cannotCreate(entry.path, SystemError("openat", errno: code))
        }
        // The umask may have cleared bits the master asked for.
        fchmod(fd, mode)
        return fd
    }

    /// Unlinks `entry`'s file (a cached copy that failed its check), so the stream can create it.
    private func remove(_ entry: ManifestEntry) throws(BundleError) {
        let (parent, name) = try openParent(of: entry)
        defer { if parent != rootFD { FD.close(parent) } }
        let code = FileIO.call(name) { unlinkat(parent, $0, 0) }.errno
        if code != 0 { throw .cannotCreate(entry.path, SystemError("unlinkat", errno: code)) }
    }

    /// Opens, creating as needed, the directory that holds `entry`: one component at a time, as
    /// bytes split at `/` exactly as `BundlePath.validate` checked them, never following a symlink.
    /// - Returns: the directory (`rootFD` for a top-level file: the caller must not close that) and
    ///   the file's name in it.
    private func openParent(of entry: ManifestEntry) throws(BundleError) -> (fd: Int32, name: [UInt8]) {
        let components = BundlePath.components(entry.path)
        var parent = rootFD
        for name in components.dropLast() {
            let made = FileIO.call(name) { mkdirat(parent, $0, 0o755) }.errno
            var (next, code) = (Int32(-1), made)
            if made == 0 || made == EEXIST {
                (next, code) = FileIO.call(name) { openat(parent, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            }
            if parent != rootFD { FD.close(parent) }
            guard next >= 0 else {
                if code == ENOTDIR || code == ELOOP { throw .duplicate(entry.path) }
                throw .cannotCreate(entry.path, SystemError(made == 0 || made == EEXIST ? "openat" : "mkdirat", errno: code))
            }
            parent = next
        }
        return (parent, components.last ?? [])
    }
}
