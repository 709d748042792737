@preconcurrency import Glibc

/// The process environment, read with `getenv` and `environ`.
package enum Environment {
    package static func value(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// Every `NAME=VALUE` pair.
    package static var all: [String: String] {
        var values: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "=") {
                values[String(text[..<eq])] = String(text[text.index(after: eq)...])
            }
            pointer += 1
        }
        return values
    }

    /// `$TMPDIR`, else `/tmp`.
    package static var temporaryDirectory: String {
        value("TMPDIR").flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
    }

    /// distr's per-user cache: `$XDG_CACHE_HOME/distr`, else `$HOME/.cache/distr`; nil when
    /// neither is an absolute path.
    package static var userCacheDirectory: String? {
        if let base = value("XDG_CACHE_HOME"), base.hasPrefix("/") { return base + "/distr" }
        if let home = value("HOME"), home.hasPrefix("/") { return home + "/.cache/distr" }
        return nil
    }

    /// The directory holding this executable (from /proc/self/exe).
    package static var executableDirectory: String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let path = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return String(path[..<slash])
    }
}
