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

    /// Entries whose bytes come from an open local file (the worker's cache) instead of the stream.
    private var cached: [Int: Int32]
    private let completed: (ManifestEntry) -> Void

    /// - Parameters:
    ///   - cached: manifest indices already available locally, with an open descriptor to copy
    ///     from (closed by the extractor); the stream then carries only the other files.
    ///   - completed: called for each streamed file once its digest has been verified.
    /// - Throws: `BundleError` when the manifest breaks a rule or a limit.
    public init(
        directory: String, manifest: [ManifestEntry], limits: Limits, cached: [Int: Int32] = [:],
        completed: @escaping (ManifestEntry) -> Void = { _ in }
    ) throws(BundleError) {
        self.cached = cached
        self.completed = completed
        self.manifest = manifest
        do {
            try BundlePath.validate(manifest: manifest, limits: limits)
        } catch {
            cached.values.forEach(FD.close)
            throw error
        }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            cached.values.forEach(FD.close)
            throw .cannotCreate(directory, .current("open"))
        }
        rootFD = fd
        try openNextFiles()
    }

    deinit {
        FD.close(currentFD)
        FD.close(rootFD)
        cached.values.forEach(FD.close)
    }

    public var isComplete: Bool { index == manifest.count }

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
            try finishFileIfDone()
        }
    }

    private func finishFileIfDone() throws(BundleError) {
        let entry = manifest[index]
        guard written == entry.size else { return }
        FD.close(currentFD)
        currentFD = -1
        guard constantTimeEqual(hasher.finalize(), entry.digest) else { throw .digestMismatch(entry.path) }
        completed(entry)
        index += 1
        try openNextFiles()
    }

    /// Opens the next file; empty files are created and finished at once, cached ones copied.
    private func openNextFiles() throws(BundleError) {
        while index < manifest.count {
            let entry = manifest[index]
            if let source = cached.removeValue(forKey: index) {
                defer { FD.close(source) }
                let target = try create(entry)
                defer { FD.close(target) }
                do { try FileCache.copy(from: source, to: target) } catch { throw .cannotCreate(entry.path, error) }
                index += 1
                continue
            }
            currentFD = try create(entry)
            written = 0
            hasher = SHA256()
            if entry.size > 0 { return }
            try finishFileIfDone()
            return
        }
    }

    private func create(_ entry: ManifestEntry) throws(BundleError) -> Int32 {
        let components = entry.path.split(separator: "/").map(String.init)
        var parent = rootFD
        defer { if parent != rootFD { FD.close(parent) } }
        for name in components.dropLast() {
            if mkdirat(parent, name, 0o755) != 0 && errno != EEXIST {
                throw .cannotCreate(entry.path, .current("mkdirat"))
            }
            let next = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard next >= 0 else {
                let error = SystemError.current("openat")
                if error.errno == ENOTDIR || error.errno == ELOOP { throw .duplicate(entry.path) }
                throw .cannotCreate(entry.path, error)
            }
            if parent != rootFD { FD.close(parent) }
            parent = next
        }
        let mode = mode_t(entry.mode & 0o777)
        let fd = openat(parent, components.last ?? "", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else {
            let error = SystemError.current("openat")
            if error.errno == EEXIST { throw .duplicate(entry.path) }
            throw .cannotCreate(entry.path, error)
        }
        // The umask may have cleared bits the master asked for.
        fchmod(fd, mode)
        return fd
    }
}
