/// The cluster secret: 32 random bytes, stored as hex in a file only its owner can read.
package enum ClusterSecret {
    package static let size = 32

    /// `--secret-file`, else `$DISTR_SECRET_FILE`, else `~/.config/distr/secret`.
    package static func path(explicit: String?) -> String {
        if let explicit { return explicit }
        if let fromEnvironment = Environment.value("DISTR_SECRET_FILE"), !fromEnvironment.isEmpty {
            return fromEnvironment
        }
        return defaultPath
    }

    /// `~/.config/distr/secret`.
    package static var defaultPath: String { (Environment.value("HOME") ?? "/root") + "/.config/distr/secret" }

    /// Reads and checks the secret file.
    /// - Throws: `SecretError` saying how to fix a missing, loose or malformed file.
    package static func load(path: String) throws(SecretError) -> [UInt8] {
        let status: FileStatus
        do { status = try FileStatus(path: path) } catch {
            throw error.code == .noSuchFile ? .missing(path) : .unreadable(path, error.reason)
        }
        guard status.permissions & 0o077 == 0 else { throw .tooOpen(path, mode: status.permissions & 0o777) }
        let bytes: [UInt8]
        do { bytes = try FileIO.readAll(path) } catch { throw .unreadable(path, error.reason) }
        let text = String(decoding: bytes, as: UTF8.self).trimmed(" \t\r\n")
        guard let key = [UInt8](hex: text), key.count == size else { throw .malformed(path) }
        return key
    }

    /// Writes a fresh secret (mode 0600), creating the directory (0700); refuses to overwrite.
    /// Writes a new secret to `path`. Only the default location's directory
    /// (`~/.config/distr`) is created; any other directory must exist, as with `ssh-keygen -f`.
    package static func generate(path: String, force: Bool = false) throws(SecretError) {
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            let directory = String(path[..<slash])
            if path == defaultPath {
                do { try FileIO.makeDirectories(directory) } catch { throw .unwritable(path, error.reason) }
            } else if (try? FileStatus(path: directory))?.kind != .directory {  // missing or unreadable: the same answer
                throw .unwritable(path, "the directory \(directory) does not exist; create it first")
            }
        }
        if !force && FileIO.exists(path) { throw .exists(path) }
        do { try FileIO.write(path, Array((randomBytes(size).hex + "\n").utf8), mode: 0o600, exclusive: !force) } catch {
            throw .unwritable(path, error.reason)
        }
    }
}

package enum SecretError: Error, Equatable, Sendable, CustomStringConvertible {
    case missing(String)
    case tooOpen(String, mode: UInt32)
    case malformed(String)
    case unreadable(String, String)
    case unwritable(String, String)
    case exists(String)

    package var description: String {
        switch self {
        case .missing(let p):
            "secret file '\(p)' does not exist. Run 'distr-master keygen' and copy the file to every node (mode 0600), or pass --secret-file"
        case .tooOpen(let p, let mode):
            "secret file '\(p)' has mode \(String(mode, radix: 8)), readable by other users; run 'chmod 600 \(p)'"
        case .malformed(let p): "secret file '\(p)' must hold 64 hex characters (32 bytes); make one with 'distr-master keygen'"
        case .unreadable(let p, let why): "cannot read secret file '\(p)': \(why)"
        case .unwritable(let p, let why): "cannot write secret file '\(p)': \(why)"
        case .exists(let p): "'\(p)' already exists; keygen does not overwrite a secret (pass --force to replace it)"
        }
    }
}
