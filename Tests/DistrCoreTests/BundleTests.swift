import Foundation
import Testing

@testable import DistrCore

@Suite struct BundleTests {
    func entry(_ path: String, _ bytes: [UInt8], mode: UInt32 = 0o644) -> ManifestEntry {
        manifestEntry(path, bytes, mode: mode)
    }

    func temporaryDirectory() throws -> String { try makeTemporaryDirectory() }

    @Test(arguments: [
        ("", BundleError.emptyPath),
        ("/etc/passwd", BundleError.absolutePath("/etc/passwd")),
        ("../x", BundleError.parentReference("../x")),
        ("a/../../x", BundleError.parentReference("a/../../x")),
        ("a\0b", BundleError.nulInPath("a\0b")),
        ("a//b", BundleError.badComponent("a//b")),
        ("./a", BundleError.badComponent("./a")),
        ("a/", BundleError.badComponent("a/")),
        // A combining mark after a slash makes one Swift Character of "/\u{301}"; the kernel sees
        // the 0x2F byte. Each of these has a '..', '.', empty or absolute component to the kernel.
        ("../\u{301}X", BundleError.parentReference("../\u{301}X")),
        ("/\u{301}X/f", BundleError.absolutePath("/\u{301}X/f")),
        ("a/../\u{301}x", BundleError.parentReference("a/../\u{301}x")),
        ("a/..\u{301}/../../\u{301}x", BundleError.parentReference("a/..\u{301}/../../\u{301}x")),
        ("./\u{301}x", BundleError.badComponent("./\u{301}x")),
        ("a/./\u{301}x", BundleError.badComponent("a/./\u{301}x")),
        ("a//\u{301}x", BundleError.badComponent("a//\u{301}x")),
        ("a/" + String(repeating: "n", count: 256), BundleError.componentTooLong("a/" + String(repeating: "n", count: 256), limit: 255)),
        (
            Array(repeating: "d", count: 257).joined(separator: "/"),
            BundleError.tooDeep(Array(repeating: "d", count: 257).joined(separator: "/"), limit: 256)
        ),
    ])
    func validate_refusesUnsafePath(path: String, error: BundleError) {
        #expect(throws: error) { try BundlePath.validate(path) }
    }

    @Test(arguments: ["a/..\u{301}", "\u{301}/x", "...", ".a/b", "a/" + String(repeating: "n", count: 255)])
    func validate_acceptsNamesThatAreNotDotsToTheKernel(path: String) throws {
        try BundlePath.validate(path)
    }

    @Test func validate_refusesSizesThatOverflowOrAreNegative() {
        var limits = Limits()
        let overflowing = [
            ManifestEntry(path: "a", mode: 0o644, size: 1, digest: []), ManifestEntry(path: "b", mode: 0o644, size: Int.max, digest: []),
        ]
        #expect(throws: BundleError.sizeOverflow("b")) { try BundlePath.validate(manifest: overflowing, limits: limits) }
        limits.maxBundleBytes = Int.max
        #expect(throws: BundleError.sizeOverflow("b")) { try BundlePath.validate(manifest: overflowing, limits: limits) }
        let negative = [ManifestEntry(path: "a", mode: 0o644, size: -5, digest: [])]
        #expect(throws: BundleError.negativeSize("a", -5)) { try BundlePath.validate(manifest: negative, limits: limits) }
    }

    @Test func validate_refusesDuplicatesAndFileUsedAsDirectory() throws {
        let limits = Limits()
        #expect(throws: BundleError.duplicate("a")) {
            try BundlePath.validate(manifest: [entry("a", [1]), entry("a", [2])], limits: limits)
        }
        #expect(throws: BundleError.duplicate("a")) {
            try BundlePath.validate(manifest: [entry("a", [1]), entry("a/b", [2])], limits: limits)
        }
        #expect(throws: BundleError.duplicate("a")) {
            try BundlePath.validate(manifest: [entry("a/b", [1]), entry("a", [2])], limits: limits)
        }
        #expect(throws: BundleError.duplicate("x/a/b")) {
            try BundlePath.validate(manifest: [entry("x/a/b", [1]), entry("x/a/b/c", [2])], limits: limits)
        }
        // Canonically equivalent to Swift, different names to the kernel: both are fine.
        try BundlePath.validate(manifest: [entry("\u{E9}", [1]), entry("e\u{301}", [2])], limits: limits)
    }

    @Test(arguments: ["../\u{301}X", "/\u{301}X/f", "a/../\u{301}x", "./\u{301}x", "a//\u{301}x"])
    func extractor_refusesPathsThatLeaveTheDirectoryAsBytes(path: String) throws {
        let outside = try temporaryDirectory()
        defer { FileIO.removeTree(outside) }
        let dir = outside + "/job"
        try FileIO.makeDirectories(dir)
        #expect(throws: BundleError.self) {
            _ = try BundleExtractor(directory: dir, manifest: [entry(path, [1])], limits: Limits())
        }
        #expect(try names(in: dir).isEmpty)
        #expect(try names(in: outside) == ["job"])
        #expect(!FileIO.exists("/\u{301}X"))
    }

    @Test func extractor_writesDotLookingNamesInsideTheDirectory() throws {
        let outside = try temporaryDirectory()
        defer { FileIO.removeTree(outside) }
        let dir = outside + "/job"
        try FileIO.makeDirectories(dir)
        let extractor = try BundleExtractor(directory: dir, manifest: [entry("a/..\u{301}", [7])], limits: Limits())
        try extractor.write([7])
        #expect(extractor.isComplete)
        #expect(try FileIO.readAll(dir + "/a/..\u{301}") == [7])
        #expect(try names(in: outside) == ["job"])
    }

    @Test func extractor_createsTwentyThousandEmptyFilesInARow() throws {
        let dir = try temporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let manifest = (0..<20_000).map { entry("e/\($0)", []) } + [entry("last", [1, 2])]
        let extractor = try BundleExtractor(directory: dir, manifest: manifest, limits: Limits())
        #expect(extractor.currentPath == "last")
        try extractor.write([1, 2])
        #expect(extractor.isComplete)
        #expect(try Directory(path: dir + "/e").entries().count == 20_000)
    }

    @Test func validate_enforcesCountSizeAndPathLimits() {
        var limits = Limits()
        limits.maxFiles = 1
        #expect(throws: BundleError.tooManyFiles(2, limit: 1)) {
            try BundlePath.validate(manifest: [entry("a", []), entry("b", [])], limits: limits)
        }
        limits = Limits()
        limits.maxBundleBytes = 3
        #expect(throws: BundleError.tooLarge(4, limit: 3)) {
            try BundlePath.validate(manifest: [entry("a", [1, 2]), entry("b", [3, 4])], limits: limits)
        }
        limits = Limits()
        limits.maxPathLength = 4
        #expect(throws: BundleError.self) { try BundlePath.validate(manifest: [entry("abcde", [])], limits: limits) }
    }

    @Test func extractor_writesFilesWithModesAcrossChunkBoundaries() throws {
        let dir = try temporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let a: [UInt8] = Array("hello\n".utf8)
        let b: [UInt8] = Array(repeating: 42, count: 1000)
        let manifest = [entry("bin/run", a, mode: 0o755), entry("empty", []), entry("data/deep/b", b, mode: 0o600)]
        let extractor = try BundleExtractor(directory: dir, manifest: manifest, limits: Limits())
        let stream = a + b
        var offset = 0
        while offset < stream.count {
            let n = min(7, stream.count - offset)
            try extractor.write(Array(stream[offset..<offset + n]))
            offset += n
        }
        #expect(extractor.isComplete)
        #expect(try FileIO.readAll(dir + "/bin/run") == a)
        #expect(try FileIO.readAll(dir + "/data/deep/b") == b)
        #expect(try FileIO.readAll(dir + "/empty") == [])
        #expect(FileIO.mode(dir + "/bin/run").map { $0 & 0o777 } == 0o755)
        #expect(FileIO.mode(dir + "/data/deep/b").map { $0 & 0o777 } == 0o600)
    }

    /// The paths an extractor handed over as verified, in order.
    final class VerifiedPaths {
        var paths: [String] = []
    }

    /// An extractor of `manifest` into `dir` that notes each file it verified.
    func notingExtractor(_ dir: String, _ manifest: [ManifestEntry]) throws -> (BundleExtractor, VerifiedPaths) {
        let verified = VerifiedPaths()
        let extractor = try BundleExtractor(directory: dir, manifest: manifest, limits: Limits()) { entry, _ in
            verified.paths.append(entry.path)
            return nil
        }
        return (extractor, verified)
    }

    /// Files of many sizes (empty, under a block, unaligned, several blocks), streamed in chunks
    /// that each hold many of them: every file is whole and verified, more files in one chunk
    /// than are kept open unverified at a time (`openLimit`) included, and the files hashed two
    /// at a time get the digests hashed one at a time would.
    @Test func extractor_verifiesManyFilesPerChunk_hashedTwoAtATime() throws {
        let dir = try temporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let sizes = [0, 1, 63, 64, 65, 200, 4096, 5000, 70_000, 3, 0, 128, 300_000, 17] + Array(repeating: 5, count: 2 * BundleExtractor.openLimit)
        var state: UInt32 = 1
        let contents = sizes.map { size in
            (0..<size).map { _ -> UInt8 in
                state = state &* 1_664_525 &+ 1_013_904_223
                return UInt8(truncatingIfNeeded: state >> 24)
            }
        }
        let manifest = contents.enumerated().map { entry("d\($0.offset % 3)/f\($0.offset)", $0.element) }
        let (extractor, verified) = try notingExtractor(dir, manifest)
        let stream = contents.flatMap { $0 }
        var offset = 0
        for chunk in [100_000, 1, 256 << 10, 1000, stream.count] where offset < stream.count {
            let n = min(chunk, stream.count - offset)
            try extractor.write(Array(stream[offset..<offset + n]))
            offset += n
        }
        #expect(extractor.isComplete)
        #expect(verified.paths == manifest.map(\.path), "each file verified once, in order")
        for (index, bytes) in contents.enumerated() {
            #expect(try FileIO.readAll(dir + "/d\(index % 3)/f\(index)") == bytes)
        }
    }

    /// A file whose bytes do not match, with whole files after it in the same chunk, is named;
    /// the files before it were verified.
    @Test func extractor_namesTheMismatchingFileInsideAChunk() throws {
        let dir = try temporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let files: [[UInt8]] = [Array(repeating: 1, count: 1000), Array(repeating: 2, count: 3000), Array(repeating: 3, count: 500)]
        let (extractor, verified) = try notingExtractor(dir, files.enumerated().map { entry("f\($0.offset)", $0.element) })
        var stream = files.flatMap { $0 }
        stream[2000] ^= 0xFF
        #expect(throws: BundleError.digestMismatch("f1")) { try extractor.write(stream) }
        #expect(verified.paths == ["f0"])
    }

    @Test func extractor_refusesContentThatDoesNotMatchDigest() throws {
        let dir = try temporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let extractor = try BundleExtractor(directory: dir, manifest: [entry("a", [1, 2, 3])], limits: Limits())
        #expect(throws: BundleError.digestMismatch("a")) { try extractor.write([1, 2, 4]) }
    }

    @Test func extractor_refusesDataBeyondManifest() throws {
        let dir = try temporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let extractor = try BundleExtractor(directory: dir, manifest: [entry("a", [1])], limits: Limits())
        #expect(throws: BundleError.unexpectedData) { try extractor.write([1, 2]) }
    }

    @Test func extractor_doesNotFollowSymlinkOutOfDirectory() throws {
        let dir = try temporaryDirectory()
        let outside = try temporaryDirectory()
        defer {
            FileIO.removeTree(dir)
            FileIO.removeTree(outside)
        }
        // Even if something planted a symlink in the job directory, extraction must not follow it.
        #expect(symlink(outside, dir + "/link") == 0)
        #expect(throws: BundleError.self) {
            _ = try BundleExtractor(directory: dir, manifest: [entry("link/pwned", [1])], limits: Limits())
        }
        #expect(!FileIO.exists(outside + "/pwned"))
        #expect(symlink(outside + "/target", dir + "/file") == 0)
        #expect(throws: BundleError.self) {
            _ = try BundleExtractor(directory: dir, manifest: [entry("file", [1])], limits: Limits())
        }
        #expect(!FileIO.exists(outside + "/target"))
    }

    @Test func collector_keepsRelativeLayoutAndModes() throws {
        let dir = try temporaryDirectory()
        defer { FileIO.removeTree(dir) }
        try FileIO.makeDirectories(dir + "/lib/sub")
        try FileIO.write(dir + "/lib/sub/x.py", Array("x".utf8), mode: 0o640, exclusive: true)
        try FileIO.write(dir + "/lib/tool", Array("t".utf8), mode: 0o755, exclusive: true)
        let sources = try BundleCollector.collect([dir + "/lib"])
        #expect(sources.map(\.entry.path) == ["lib/sub/x.py", "lib/tool"])
        #expect(sources.map(\.entry.mode) == [0o640, 0o755])
        #expect(sources[0].entry.digest == SHA256.hash(Array("x".utf8)))
    }

    /// Enough bytes for several hashing threads, each hashing two files at a time: files of
    /// many sizes, some larger than a read, get the digests hashed one at a time would.
    @Test func collector_hashesTwoFilesAtATime_asOneAtATimeWould() throws {
        let dir = try temporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let sizes = [0, 1, 64, 100, 1 << 20, 3_000_001, 65, 700_000, 5, 2_000_000, 12_345, 0, 999]
        var contents: [[UInt8]] = []
        for (index, size) in sizes.enumerated() {
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) }
            contents.append(bytes)
            try FileIO.write(dir + "/f\(String(format: "%02d", index))", bytes, mode: 0o644, exclusive: true)
        }
        #expect(sizes.reduce(0, +) > BundleCollector.parallelThreshold)
        let sources = try BundleCollector.collect([dir])
        #expect(sources.map(\.entry.digest) == contents.map { SHA256.hash($0) })
    }

    @Test func collector_placesPaths() {
        #expect(BundleCollector.bundlePath(for: "./prog") == "prog")
        #expect(BundleCollector.bundlePath(for: "build/prog") == "build/prog")
        #expect(BundleCollector.bundlePath(for: "lib/") == "lib")
        #expect(BundleCollector.bundlePath(for: "/abs/data.csv") == "data.csv")
        #expect(BundleCollector.bundlePath(for: "../up/data.csv") == "data.csv")
        // Split as bytes: each of these is absolute, or has '..' or '.', to the kernel.
        #expect(BundleCollector.bundlePath(for: "/\u{301}abs/x") == "x")
        #expect(BundleCollector.bundlePath(for: "../\u{301}x") == "\u{301}x")
        #expect(BundleCollector.bundlePath(for: "./\u{301}x") == "\u{301}x")
        #expect(BundleCollector.bundlePath(for: "a//\u{301}x/") == "a/\u{301}x")
    }

    @Test func collector_reportsMissingFile() {
        #expect(throws: BundleError.self) { try BundleCollector.collect(["/nonexistent/distr/file"]) }
    }
}
