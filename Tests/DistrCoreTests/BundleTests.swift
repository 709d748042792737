import Foundation
import Testing

@testable import DistrCore

@Suite struct BundleTests {
    func entry(_ path: String, _ bytes: [UInt8], mode: UInt32 = 0o644) -> ManifestEntry {
        ManifestEntry(path: path, mode: mode, size: bytes.count, digest: SHA256.hash(bytes))
    }

    func temporaryDirectory() throws -> String {
        var template = Array("\(NSTemporaryDirectory())/distr-test-XXXXXX".utf8CString)
        let made = try #require(mkdtemp(&template))
        return String(cString: made)
    }

    @Test(arguments: [
        ("", BundleError.emptyPath),
        ("/etc/passwd", BundleError.absolutePath("/etc/passwd")),
        ("../x", BundleError.parentReference("../x")),
        ("a/../../x", BundleError.parentReference("a/../../x")),
        ("a\0b", BundleError.nulInPath("a\0b")),
        ("a//b", BundleError.badComponent("a//b")),
        ("./a", BundleError.badComponent("./a")),
        ("a/", BundleError.badComponent("a/")),
    ])
    func validate_refusesUnsafePath(path: String, error: BundleError) {
        #expect(throws: error) { try BundlePath.validate(path) }
    }

    @Test func validate_refusesDuplicatesAndFileUsedAsDirectory() {
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

    @Test func cache_keepsVerifiedFilesAndEvictsTheLeastRecentlyUsed() throws {
        let dir = try temporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let cache = try #require(FileCache(directory: dir + "/cache", limit: 10))
        #expect(FileIO.mode(dir + "/cache").map { $0 & 0o777 } == 0o700)
        var entries: [ManifestEntry] = []
        for (index, text) in ["aaaa", "bbbb", "cccc"].enumerated() {
            try FileIO.write(dir + "/f\(index)", Array(text.utf8), mode: 0o644, exclusive: true)
            let entry = entry("f\(index)", Array(text.utf8))
            entries.append(entry)
            #expect(cache.lookup(entry) == nil)
            cache.store(dir + "/f\(index)", entry: entry)
            #expect(try FileIO.readAll(try #require(cache.lookup(entry))) == Array(text.utf8))
        }
        // 12 bytes over a limit of 10: the oldest one went.
        #expect(cache.lookup(entries[0]) == nil)
        #expect(cache.lookup(entries[2]) != nil)
        // A file of the wrong size is not a hit.
        #expect(cache.lookup(ManifestEntry(path: "x", mode: 0o644, size: 5, digest: entries[2].digest)) == nil)
        #expect(FileCache(directory: dir + "/off", limit: 0) == nil)
    }

    @Test func extractor_copiesCachedEntriesAndTakesTheRestFromTheStream() throws {
        let dir = try temporaryDirectory()
        defer { FileIO.removeTree(dir) }
        try FileIO.makeDirectories(dir + "/job")
        try FileIO.write(dir + "/cached", Array("from cache".utf8), mode: 0o600, exclusive: true)
        let manifest = [entry("a", Array("from cache".utf8), mode: 0o755), entry("b/c", Array("streamed".utf8))]
        var completed: [String] = []
        let source = open(dir + "/cached", O_RDONLY)
        let extractor = try BundleExtractor(directory: dir + "/job", manifest: manifest, limits: Limits(), cached: [0: source]) {
            completed.append($0.path)
        }
        try extractor.write(Array("streamed".utf8))
        #expect(extractor.isComplete)
        #expect(completed == ["b/c"])
        #expect(try FileIO.readAll(dir + "/job/a") == Array("from cache".utf8))
        #expect(FileIO.mode(dir + "/job/a").map { $0 & 0o777 } == 0o755)
        #expect(try FileIO.readAll(dir + "/job/b/c") == Array("streamed".utf8))
    }

    @Test func collector_placesPaths() {
        #expect(BundleCollector.bundlePath(for: "./prog") == "prog")
        #expect(BundleCollector.bundlePath(for: "build/prog") == "build/prog")
        #expect(BundleCollector.bundlePath(for: "lib/") == "lib")
        #expect(BundleCollector.bundlePath(for: "/abs/data.csv") == "data.csv")
        #expect(BundleCollector.bundlePath(for: "../up/data.csv") == "data.csv")
    }

    @Test func collector_reportsMissingFile() {
        #expect(throws: BundleError.self) { try BundleCollector.collect(["/nonexistent/distr/file"]) }
    }
}
