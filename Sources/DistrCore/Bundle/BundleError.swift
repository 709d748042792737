/// Why a bundle was refused or could not be built.
public enum BundleError: Error, Equatable, Sendable, CustomStringConvertible {
    case emptyPath
    case absolutePath(String)
    case parentReference(String)
    case nulInPath(String)
    case badComponent(String)
    case pathTooLong(String, limit: Int)
    case duplicate(String)
    case tooManyFiles(Int, limit: Int)
    case tooLarge(Int, limit: Int)
    case digestMismatch(String)
    case unexpectedData
    case incomplete(String)
    case cannotCreate(String, SystemError)
    case cannotRead(String, SystemError)

    public var description: String {
        switch self {
        case .emptyPath: "bundle refused: a file has an empty path"
        case .absolutePath(let p): "bundle refused: '\(p)' is an absolute path; bundle paths must be relative"
        case .parentReference(let p): "bundle refused: '\(p)' contains '..'; bundle paths must stay inside the job directory"
        case .nulInPath(let p):
            "bundle refused: '\(p.split(separator: "\0", omittingEmptySubsequences: false).joined(separator: "\\0"))' contains a NUL byte"
        case .badComponent(let p): "bundle refused: '\(p)' has an empty or '.' component"
        case .pathTooLong(let p, let limit): "bundle refused: path '\(p.prefix(80))...' is longer than \(limit) bytes"
        case .duplicate(let p): "bundle refused: '\(p)' appears twice (or a file is also used as a directory)"
        case .tooManyFiles(let n, let limit):
            "bundle refused: \(n) files exceeds the worker's limit of \(limit) (raise it with distr-worker --max-files)"
        case .tooLarge(let n, let limit):
            "bundle refused: \(n) bytes exceeds the worker's limit of \(limit) bytes (raise it with distr-worker --max-bundle-bytes)"
        case .digestMismatch(let p): "bundle refused: '\(p)' does not match its SHA-256 digest (changed while shipping, or corrupted)"
        case .unexpectedData: "bundle refused: more file data arrived than the manifest announced"
        case .incomplete(let p): "bundle incomplete: the connection ended while receiving '\(p)'"
        case .cannotCreate(let p, let e): "cannot create '\(p)' in the job directory: \(e)"
        case .cannotRead(let p, let e): "cannot read '\(p)': \(e)"
        }
    }
}

/// Bundle path rules, shared by the master (before shipping) and the worker (before extracting).
public enum BundlePath {
    /// - Throws: `BundleError` naming the rule the path breaks.
    public static func validate(_ path: String, limit: Int = Limits.default.maxPathLength) throws(BundleError) {
        if path.isEmpty { throw .emptyPath }
        if path.utf8.contains(0) { throw .nulInPath(path) }
        if path.utf8.count > limit { throw .pathTooLong(path, limit: limit) }
        if path.hasPrefix("/") { throw .absolutePath(path) }
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        for component in components {
            if component == ".." { throw .parentReference(path) }
            if component.isEmpty || component == "." { throw .badComponent(path) }
        }
    }

    /// Validates a whole manifest against the worker's limits.
    public static func validate(manifest: [ManifestEntry], limits: Limits) throws(BundleError) {
        if manifest.count > limits.maxFiles { throw .tooManyFiles(manifest.count, limit: limits.maxFiles) }
        var total = 0
        var files = Set<String>()
        var directories = Set<String>()
        for entry in manifest {
            try validate(entry.path, limit: limits.maxPathLength)
            guard entry.size >= 0 else { throw .tooLarge(entry.size, limit: limits.maxBundleBytes) }
            total += entry.size
            if total > limits.maxBundleBytes { throw .tooLarge(total, limit: limits.maxBundleBytes) }
            if files.contains(entry.path) || directories.contains(entry.path) { throw .duplicate(entry.path) }
            files.insert(entry.path)
            var prefix = ""
            for component in entry.path.split(separator: "/").dropLast() {
                prefix += prefix.isEmpty ? String(component) : "/" + component
                if files.contains(prefix) { throw .duplicate(prefix) }
                directories.insert(prefix)
            }
        }
    }
}
