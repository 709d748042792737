import Foundation
import Testing

@testable import DistrCore

@Suite struct DigestCacheTests {
    /// A directory with `count` files of `size` bytes each (distinct contents), and their paths.
    func makeFiles(count: Int, size: Int) throws -> (directory: String, paths: [String], contents: [[UInt8]]) {
        let directory = try makeTemporaryDirectory()
        var paths: [String] = []
        var contents: [[UInt8]] = []
        for index in 0..<count {
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index) }
            let path = directory + "/f\(index)"
            try FileIO.write(path, bytes, mode: 0o644, exclusive: true)
            paths.append(path)
            contents.append(bytes)
        }
        return (directory, paths, contents)
    }

    /// A cache that keeps digests of files written a moment ago (the real one waits 2 s).
    func eagerCache(_ path: String) -> DigestCache { DigestCache(path: path, settle: -60) }

    @Test func collect_takesTheDigestOfAnUnchangedFileFromTheCache() throws {
        let files = try makeFiles(count: 1, size: 100)
        defer { FileIO.removeTree(files.directory) }
        let cache = eagerCache(files.directory + "/cache/digests")
        let key = DigestCache.Key(try FileStatus(path: files.paths[0]))
        // A digest the file does not have: only a lookup, not a reading, can return it.
        let planted = [UInt8](repeating: 0xAB, count: 32)
        cache.record(key, digest: planted)
        let sources = try BundleCollector.collect([files.paths[0]], digests: cache)
        #expect(sources.map(\.entry.digest) == [planted])
    }

    /// A bundle smaller than `cacheAbove` is hashed without opening the cache at all (loading it
    /// cost every small run, `exec true` included, more than the hashing it saved).
    @Test func collect_smallBundle_neitherOpensNorWritesTheCache() throws {
        let files = try makeFiles(count: 3, size: 1000)
        defer { FileIO.removeTree(files.directory) }
        let path = files.directory + "/cache/digests"
        var opened = 0
        func open() -> DigestCache {
            opened += 1
            return eagerCache(path)
        }
        let small = try BundleCollector.collect(files.paths, digests: open(), cacheAbove: 3001)
        #expect(opened == 0 && !FileIO.exists(path))
        #expect(small.map(\.entry.digest) == files.contents.map { SHA256.hash($0) })
        _ = try BundleCollector.collect(files.paths, digests: open(), cacheAbove: 3000)
        #expect(opened == 1 && FileIO.exists(path))
    }

    @Test func collect_rehashesAFileRewrittenWithItsSizeAndModificationTimeRestored() throws {
        let files = try makeFiles(count: 1, size: 100)
        defer { FileIO.removeTree(files.directory) }
        let path = files.paths[0]
        let cache = eagerCache(files.directory + "/cache/digests")
        let first = try BundleCollector.collect([path], digests: cache)
        #expect(first.map(\.entry.digest) == [SHA256.hash(files.contents[0])])
        let old = try FileStatus(path: path)
        let rewritten = [UInt8](repeating: 0x5A, count: 100)
        let fd = try FileDescriptor.open(path, .writeOnly)
        try FD.writeAll(fd.rawValue, rewritten)
        fd.close()
        try FileIO.setTimes(path, nanoseconds: old.modified)
        #expect(try FileStatus(path: path).modified == old.modified)
        let second = try BundleCollector.collect([path], digests: cache)
        #expect(second.map(\.entry.digest) == [SHA256.hash(rewritten)])
    }

    @Test func collect_savesDigestsThatTheNextRunLoads() throws {
        let files = try makeFiles(count: 20, size: 3000)
        defer { FileIO.removeTree(files.directory) }
        let path = files.directory + "/cache/digests"
        _ = try BundleCollector.collect([files.directory + "/"], digests: eagerCache(path))
        #expect(FileIO.mode(files.directory + "/cache")! & 0o777 == 0o700)
        #expect(FileIO.mode(path)! & 0o777 == 0o600)
        let reloaded = eagerCache(path)
        #expect(reloaded.loadedCount == 20)
        for (file, bytes) in zip(files.paths, files.contents) {
            #expect(reloaded.digest(for: DigestCache.Key(try FileStatus(path: file))) == SHA256.hash(bytes))
        }
    }

    @Test func collect_doesNotKeepTheDigestOfAFileWrittenJustNow() throws {
        let files = try makeFiles(count: 3, size: 10)
        defer { FileIO.removeTree(files.directory) }
        let path = files.directory + "/cache/digests"
        // The standard settling time: these files were written well within it.
        _ = try BundleCollector.collect(files.paths, digests: DigestCache(path: path))
        #expect(DigestCache(path: path).loadedCount == 0)
    }

    /// Damaged cache files: each is ignored (no digest comes from it, nothing crashes), the
    /// files are hashed, and the next save replaces it with a good one.
    @Test(arguments: ["garbage", "empty", "truncated", "flipped-bit", "wrong-magic", "oversized", "directory"])
    func damagedCacheFile_isIgnoredAndReplaced(damage: String) throws {
        let files = try makeFiles(count: 5, size: 500)
        defer { FileIO.removeTree(files.directory) }
        let path = files.directory + "/cache/digests"
        _ = try BundleCollector.collect(files.paths, digests: eagerCache(path))
        var bytes = try FileIO.readAll(path)
        #expect(bytes.count == DigestCache.magic.count + 5 * DigestCache.recordSize + 32)
        switch damage {
        case "garbage": bytes = Array("not a digest cache at all\n".utf8)
        case "empty": bytes = []
        case "truncated": bytes.removeLast(7)
        case "flipped-bit": bytes[DigestCache.magic.count + 70] ^= 1
        case "wrong-magic": bytes[0] ^= 0x20
        case "oversized":
            bytes = DigestCache.magic + [UInt8](repeating: 0, count: (DigestCache.maxEntries + 1) * DigestCache.recordSize + 32)
        default: bytes = []
        }
        FileIO.unlink(path)
        if damage == "directory" {
            try FileIO.makeDirectories(path)
        } else {
            try FileIO.write(path, bytes, mode: 0o600, exclusive: true)
        }
        let damaged = eagerCache(path)
        #expect(damaged.loadedCount == 0)
        let sources = try BundleCollector.collect(files.paths, digests: damaged)
        #expect(sources.map(\.entry.digest) == files.contents.map { SHA256.hash($0) })
        if damage != "directory" { #expect(eagerCache(path).loadedCount == 5) }
    }

    @Test func save_keepsAtMostMaxEntries_recentlyUsedFirst() throws {
        let directory = try makeTemporaryDirectory()
        defer { FileIO.removeTree(directory) }
        let path = directory + "/digests"
        let old = eagerCache(path)
        let oldKey = DigestCache.Key(device: 1, inode: 1, size: 1, modified: 1, changed: 1)
        old.record(oldKey, digest: [UInt8](repeating: 1, count: 32))
        old.save()
        let cache = eagerCache(path)
        for inode in 2...(DigestCache.maxEntries + 1) {
            cache.record(DigestCache.Key(device: 1, inode: UInt64(inode), size: 1, modified: 1, changed: 1), digest: [UInt8](repeating: 2, count: 32))
        }
        cache.save()
        let reloaded = eagerCache(path)
        #expect(reloaded.loadedCount == DigestCache.maxEntries)
        // The entry not used in the last run is the one left out.
        #expect(reloaded.digest(for: oldKey) == nil)
    }

    @Test func collect_hashesManyFilesOnSeveralThreads_inManifestOrder() throws {
        // 40 files of 200 KB: past the threshold for threads.
        let files = try makeFiles(count: 40, size: 200_000)
        defer { FileIO.removeTree(files.directory) }
        #expect(40 * 200_000 > BundleCollector.parallelThreshold)
        let sources = try BundleCollector.collect(files.paths, digests: nil)
        #expect(sources.map(\.localPath) == files.paths)
        #expect(sources.map(\.entry.digest) == files.contents.map { SHA256.hash($0) })
    }

    @Test func hashAll_reportsTheFirstUnreadableFileInOrder_whateverThreadFoundIt() throws {
        let files = try makeFiles(count: 30, size: 200_000)
        defer { FileIO.removeTree(files.directory) }
        let status = try FileStatus(path: files.paths[0])
        // Files that vanish between the walk and their hashing: 7 and 20.
        FileIO.unlink(files.paths[20])
        FileIO.unlink(files.paths[7])
        do {
            _ = try BundleCollector.hashAll(files.paths.map { ($0, status) }, digests: nil)
            Issue.record("vanished files were hashed")
        } catch {
            guard case .cannotRead(let path, _) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(path == files.paths[7])
        }
    }
}
