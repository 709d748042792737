/// Why a bundle was refused or could not be built.
package enum BundleError: Error, Equatable, Sendable, CustomStringConvertible {
    case emptyPath
    case absolutePath(String)
    case parentReference(String)
    case nulInPath(String)
    case badComponent(String)
    case pathTooLong(String, limit: Int)
    case componentTooLong(String, limit: Int)
    case tooDeep(String, limit: Int)
    case negativeSize(String, Int)
    case sizeOverflow(String)
    case duplicate(String)
    case tooManyFiles(Int, limit: Int)
    case tooLarge(Int, limit: Int)
    case digestMismatch(String)
    /// A manifest digest that is neither a SHA-256 (32 bytes) nor empty (it follows the bytes).
    case badDigest(String, count: Int)
    /// File bytes came before the digests of files the stream had already completed.
    case digestsMissing(String)
    /// Digests came for other files than those waiting for theirs (manifest indices).
    case unexpectedDigests(got: [Int], awaiting: [Int])
    case unexpectedData
    case incomplete(String)
    case cannotCreate(String, SystemError)
    case cannotRead(String, SystemError)

    package var description: String {
        switch self {
        case .emptyPath: "bundle refused: a file has an empty path"
        case .absolutePath(let p): "bundle refused: '\(p)' is an absolute path; bundle paths must be relative"
        case .parentReference(let p): "bundle refused: '\(p)' contains '..'; bundle paths must stay inside the job directory"
        case .nulInPath(let p):
            "bundle refused: '\(p.split(separator: "\0", omittingEmptySubsequences: false).joined(separator: "\\0"))' contains a NUL byte"
        case .badComponent(let p): "bundle refused: '\(p)' has an empty or '.' component"
        case .pathTooLong(let p, let limit): "bundle refused: path '\(p.prefix(80))...' is longer than \(limit) bytes"
        case .componentTooLong(let p, let limit):
            "bundle refused: a name in '\(p.prefix(300))' is longer than \(limit) bytes, the file system's limit for one name"
        case .tooDeep(let p, let limit):
            "bundle refused: '\(p.prefix(80))...' is more than \(limit) directories deep; flatten the directory tree you ship"
        case .negativeSize(let p, let n):
            "bundle refused: the manifest gives '\(p)' a size of \(n) bytes; the master is broken or not a distr master"
        case .sizeOverflow(let p):
            "bundle refused: the manifest's file sizes add up past the largest representable size at '\(p)'; the master is broken or not a distr master"
        case .duplicate(let p): "bundle refused: '\(p)' appears twice (or a file is also used as a directory)"
        case .tooManyFiles(let n, let limit):
            "bundle refused: \(n) files exceeds the worker's limit of \(limit) (raise it with distr-worker --max-files)"
        case .tooLarge(let n, let limit):
            "bundle refused: \(n) bytes exceeds the worker's limit of \(limit) bytes (raise it with distr-worker --max-bundle-bytes)"
        case .digestMismatch(let p): "bundle refused: '\(p)' does not match its SHA-256 digest (changed while shipping, or corrupted)"
        case .badDigest(let p, let n):
            "bundle refused: the manifest gives '\(p)' a digest of \(n) bytes (a SHA-256 has 32, and only a file with bytes may have its digest follow them); the master is broken or not a distr master"
        case .digestsMissing(let p):
            "bundle refused: more file data arrived before the digest of '\(p)', which must follow its last bytes; the master is broken or not a distr master"
        case .unexpectedDigests(let got, let awaiting):
            "bundle refused: digests came for files \(got) while files \(awaiting) awaited theirs; the master is broken or not a distr master"
        case .unexpectedData: "bundle refused: more file data arrived than the manifest announced"
        case .incomplete(let p): "bundle incomplete: the connection ended while receiving '\(p)'"
        case .cannotCreate(let p, let e): "cannot create '\(p)' in the job directory: \(e)"
        case .cannotRead(let p, let e): "cannot read '\(p)': \(e)"
        }
    }
}

/// Bundle path rules, shared by the master (before shipping) and the worker (before extracting).
///
/// Paths are checked as the kernel reads them: as bytes, split at every 0x2F. Comparing Swift
/// `Character`s would be wrong: `"../\u{301}x"` has no `".."` component to Swift, but has one to the kernel.
package enum BundlePath {
    /// The longest name of one path component (`NAME_MAX`).
    package static let maxComponentLength = 255
    /// The most components in one path.
    package static let maxDepth = 256

    /// The components of `path`: its UTF-8 bytes split at every `/` byte (empty ones kept).
    package static func components(_ path: String) -> [[UInt8]] {
        Array(path.utf8).split(separator: 0x2F, omittingEmptySubsequences: false).map(Array.init)
    }

    /// - Throws: `BundleError` naming the rule the path breaks.
    package static func validate(_ path: String, limit: Int = Limits.default.maxPathLength) throws(BundleError) {
        let bytes = Array(path.utf8)
        if bytes.isEmpty { throw .emptyPath }
        if bytes.contains(0) { throw .nulInPath(path) }
        if bytes.count > limit { throw .pathTooLong(path, limit: limit) }
        if bytes[0] == 0x2F { throw .absolutePath(path) }
        let components = bytes.split(separator: 0x2F, omittingEmptySubsequences: false)
        if components.count > maxDepth { throw .tooDeep(path, limit: maxDepth) }
        for component in components {
            if component.elementsEqual([0x2E, 0x2E]) { throw .parentReference(path) }
            if component.isEmpty || component.elementsEqual([0x2E]) { throw .badComponent(path) }
            if component.count > maxComponentLength { throw .componentTooLong(path, limit: maxComponentLength) }
        }
    }

    /// Validates a whole manifest against the worker's limits: every path, every size (never
    /// negative, and summed with overflow checks), duplicates, and files used as directories.
    package static func validate(manifest: [ManifestEntry], limits: Limits) throws(BundleError) {
        if manifest.count > limits.maxFiles { throw .tooManyFiles(manifest.count, limit: limits.maxFiles) }
        var total = 0
        // Each directory gets a number; a name is known by its parent's number and its bytes, so the
        // work is linear in the manifest's size, however deep its paths.
        var directories: [Name: Int] = [:]
        var files = Set<Name>()
        for entry in manifest {
            try validate(entry.path, limit: limits.maxPathLength)
            guard entry.size >= 0 else { throw .negativeSize(entry.path, entry.size) }
            // A digest follows the last bytes of a file: an empty file has none to follow.
            guard entry.digest.count == 32 || entry.digestFollows && entry.size > 0 else {
                throw .badDigest(entry.path, count: entry.digest.count)
            }
            let (sum, overflow) = total.addingReportingOverflow(entry.size)
            if overflow { throw .sizeOverflow(entry.path) }
            total = sum
            if total > limits.maxBundleBytes { throw .tooLarge(total, limit: limits.maxBundleBytes) }
            let components = Self.components(entry.path)
            var parent = 0
            for (depth, component) in components.dropLast().enumerated() {
                let name = Name(parent: parent, bytes: component)
                if files.contains(name) {
                    throw .duplicate(String(decoding: Array(components[...depth].joined(separator: [0x2F])), as: UTF8.self))
                }
                if let known = directories[name] {
                    parent = known
                } else {
                    parent = directories.count + 1
                    directories[name] = parent
                }
            }
            let leaf = Name(parent: parent, bytes: components.last ?? [])
            if files.contains(leaf) || directories[leaf] != nil { throw .duplicate(entry.path) }
            files.insert(leaf)
        }
    }

    /// A name inside a numbered directory (0 is the job directory).
    private struct Name: Hashable {
        var parent: Int
        var bytes: [UInt8]
    }
}
