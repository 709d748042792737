import Foundation
import Testing

@testable import DistrCore

/// A fresh private directory under the system's temporary directory (or under `base`); the
/// caller removes it.
func makeTemporaryDirectory(in base: String = NSTemporaryDirectory()) throws -> String {
    var template = Array("\(base)/distr-test-XXXXXX".utf8CString)
    let made = try #require(mkdtemp(&template))
    return String(cString: made)
}

/// A manifest entry describing `bytes`.
func manifestEntry(_ path: String, _ bytes: [UInt8], mode: UInt32 = 0o644) -> ManifestEntry {
    ManifestEntry(path: path, mode: mode, size: bytes.count, digest: SHA256.hash(bytes))
}

/// The names in a directory, as text.
func names(in path: String) throws -> Set<String> {
    Set(try Directory(path: path).entries().map(\.string))
}

extension Trait where Self == TimeLimitTrait {
    /// A hang guard, not a timing check: it counts the wait for a pool thread too (the same as
    /// EndToEndTests' `hangGuard`).
    static var hangGuard: Self { .timeLimit(.minutes(10)) }
}
