/// A local file the master ships, with its place in the bundle.
package struct BundleSource: Sendable, Equatable {
    package var localPath: String
    package var entry: ManifestEntry
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
    /// symlinked directories are not followed) and hashes every file.
    /// - Throws: `BundleError.cannotRead` naming the path, or a path-rule error.
    package static func collect(_ paths: [String]) throws(BundleError) -> [BundleSource] {
        var result: [BundleSource] = []
        var seen = Set<String>()
        for path in paths {
            try add(local: path, bundle: bundlePath(for: path), into: &result, seen: &seen, top: true)
        }
        return result
    }

    private static func add(
        local: String, bundle: String, into result: inout [BundleSource], seen: inout Set<String>, top: Bool
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
        let digest = try hashFile(local)
        result.append(
            BundleSource(
                localPath: local,
                entry: ManifestEntry(path: bundle, mode: status.permissions & 0o777, size: status.size, digest: digest)))
    }

    static func hashFile(_ path: String) throws(BundleError) -> [UInt8] {
        let file: FileDescriptor
        do { file = try FileDescriptor.open(path, .readOnly) } catch { throw .cannotRead(path, error) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n: Int
            do {
                n = try file.read(into: &buffer)
            } catch { throw .cannotRead(path, error) }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return hasher.finalize()
    }
}
