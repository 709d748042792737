/// Recognises the dynamic loader's complaint about a missing shared library in a rank's stderr,
/// and says what to do about it: a Swift program built the ordinary way needs the Swift runtime
/// (`libswiftCore.so`, …) on every node, which bare nodes do not have.
package enum MissingLibrary {
    /// The loader's words, as glibc's ld.so writes them:
    /// `PROGRAM: error while loading shared libraries: LIB: cannot open shared object file: …`.
    static let marker = "error while loading shared libraries: "

    /// The missing library named in `line`, or nil when the line is not the loader's complaint.
    package static func library(in line: String) -> String? {
        guard let start = line.firstRange(of: marker)?.upperBound else { return nil }
        let rest = line[start...]
        guard let colon = rest.firstIndex(of: ":") else { return nil }
        let name = rest[..<colon].trimmed(" \t\r")
        return name.isEmpty ? nil : name
    }

    /// True for the libraries of the Swift toolchain's runtime.
    package static func isSwiftRuntime(_ library: String) -> Bool {
        ["libswift", "libFoundation", "lib_Foundation", "libdispatch", "libBlocksRuntime", "libXCTest", "libTesting"]
            .contains { library.hasPrefix($0) }
    }

    /// True for the C++ runtime and GCC's unwinder, which a Swift program built with
    /// `--static-swift-stdlib` still loads (the Swift runtime is partly C++).
    package static func isCxxRuntime(_ library: String) -> Bool {
        library.hasPrefix("libstdc++.so") || library.hasPrefix("libgcc_s.so")
    }

    /// The summary line for a rank that could not start because `library` is missing on `node`.
    package static func hint(rank: Int, node: String, library: String) -> String {
        let fix =
            isSwiftRuntime(library)
            ? "the Swift runtime is not installed there; build the program with: swift build -c release --static-swift-stdlib"
            : isCxxRuntime(library)
                ? "install the C++ runtime there (Debian: libstdc++6), or link it into the program; a Swift program: swift build -c release "
                    + "--static-swift-stdlib -Xswiftc -L -Xswiftc /path/to/distr/Linker/static-cxx (README, \"Build\")"
                : "install the package that provides it on that node, or link the program statically"
        return "rank \(rank) on \(node) could not start: shared library \(library) is missing on \(node); \(fix)"
    }
}
