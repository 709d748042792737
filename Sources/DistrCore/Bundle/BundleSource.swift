@preconcurrency import Glibc

/// A local file the master ships, with its place in the bundle.
public struct BundleSource: Sendable, Equatable {
    public var localPath: String
    public var entry: ManifestEntry
}

/// Collects the files named by `--file` and the program into a manifest, hashing each once.
public enum BundleCollector {
    /// Where a local path lands in the job directory: a relative path without `..` keeps its
    /// layout (`lib/util.py`), anything else lands under its last component.
    public static func bundlePath(for local: String) -> String {
        var path = local
        while path.hasPrefix("./") { path.removeFirst(2) }
        while path.hasSuffix("/") && path.count > 1 { path.removeLast() }
        let components = path.split(separator: "/")
        if path.hasPrefix("/") || components.contains("..") || components.contains(".") || path.isEmpty || path == "." {
            return components.last.map(String.init) ?? path
        }
        return components.joined(separator: "/")
    }

    /// Expands files and directories (recursively; symlinked files are shipped as their content,
    /// symlinked directories are not followed) and hashes every file.
    /// - Throws: `BundleError.cannotRead` naming the path, or a path-rule error.
    public static func collect(_ paths: [String]) throws(BundleError) -> [BundleSource] {
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
        var info = stat()
        guard stat(local, &info) == 0 else { throw .cannotRead(local, .current("stat")) }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            if !top {
                var link = stat()
                if lstat(local, &link) == 0 && (link.st_mode & S_IFMT) == S_IFLNK { return }
            }
            guard let dir = opendir(local) else { throw .cannotRead(local, .current("opendir")) }
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(dir)
            for name in names.sorted() {
                try add(local: local + "/" + name, bundle: bundle + "/" + name, into: &result, seen: &seen, top: false)
            }
            return
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else { return }
        try BundlePath.validate(bundle)
        guard seen.insert(bundle).inserted else { return }
        let digest = try hashFile(local)
        result.append(
            BundleSource(
                localPath: local,
                entry: ManifestEntry(path: bundle, mode: UInt32(info.st_mode & 0o777), size: Int(info.st_size), digest: digest)))
    }

    static func hashFile(_ path: String) throws(BundleError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotRead(path, .current("open")) }
        defer { FD.close(fd) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n: Int
            do {
                n = try FD.read(fd, into: &buffer)
            } catch { throw .cannotRead(path, error) }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return hasher.finalize()
    }
}
