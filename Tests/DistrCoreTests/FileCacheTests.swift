import Foundation
import Testing

@testable import DistrCore

@Suite struct FileCacheTests {
    /// Whether the cache has a usable copy of `entry`: opens it and copies it, verified, to /dev/null.
    func hasVerifiedCopy(_ cache: FileCache, _ entry: ManifestEntry) throws -> Bool {
        guard let source = cache.open(entry) else { return false }
        defer { FD.close(source) }
        let sink = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { FD.close(sink) }
        return try cache.copyVerified(entry, from: source, to: sink)
    }

    /// A cache in a new directory (the caller removes it) that has stored `bytes` from the file
    /// `name` there, written with `fileMode`.
    func cacheHolding(_ bytes: [UInt8], name: String = "f", mode: UInt32 = 0o644, fileMode: mode_t = 0o644) throws -> (
        dir: String, cache: FileCache, entry: ManifestEntry
    ) {
        let dir = try makeTemporaryDirectory()
        let entry = manifestEntry(name, bytes, mode: mode)
        try FileIO.write(dir + "/" + name, bytes, mode: fileMode, exclusive: true)
        let cache = try #require(FileCache(directory: dir + "/cache", limit: 1 << 20))
        cache.store(dir + "/" + name, entry: entry)
        return (dir, cache, entry)
    }

    @Test func cache_keepsVerifiedFilesAndEvictsTheLeastRecentlyUsed() throws {
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let cache = try #require(FileCache(directory: dir + "/cache", limit: 10))
        #expect(FileIO.mode(dir + "/cache").map { $0 & 0o777 } == 0o700)
        var entries: [ManifestEntry] = []
        for (index, text) in ["aaaa", "bbbb", "cccc"].enumerated() {
            try FileIO.write(dir + "/f\(index)", Array(text.utf8), mode: 0o644, exclusive: true)
            let entry = manifestEntry("f\(index)", Array(text.utf8))
            entries.append(entry)
            #expect(cache.open(entry) == nil)
            cache.store(dir + "/f\(index)", entry: entry)
            #expect(try hasVerifiedCopy(cache, entry))
        }
        // 12 bytes over a limit of 10: the oldest one went, from the index and from the disk.
        #expect(cache.open(entries[0]) == nil)
        #expect(!FileIO.exists(cache.path(for: entries[0].digest)))
        #expect(try hasVerifiedCopy(cache, entries[2]))
        // A file of the wrong size is not a hit.
        #expect(cache.open(ManifestEntry(path: "x", mode: 0o644, size: 5, digest: entries[2].digest)) == nil)
        #expect(FileCache(directory: dir + "/off", limit: 0) == nil)
    }

    @Test func cache_rebuildsItsIndexAtStartUpAndKeepsTheUseOrder() throws {
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        var entries: [ManifestEntry] = []
        do {
            let cache = try #require(FileCache(directory: dir + "/cache", limit: 100))
            for (index, text) in ["aaaa", "bbbb", "cccc"].enumerated() {
                try FileIO.write(dir + "/f\(index)", Array(text.utf8), mode: 0o644, exclusive: true)
                entries.append(manifestEntry("f\(index)", Array(text.utf8)))
                cache.store(dir + "/f\(index)", entry: entries[index])
            }
            // The first file becomes the most recently used.
            #expect(try hasVerifiedCopy(cache, entries[0]))
        }
        // A smaller limit after a restart: the least recently used file (the second) goes first.
        let restarted = try #require(FileCache(directory: dir + "/cache", limit: 8))
        #expect(restarted.open(entries[1]) == nil)
        #expect(try hasVerifiedCopy(restarted, entries[0]))
        #expect(try hasVerifiedCopy(restarted, entries[2]))
    }

    @Test func cache_poisonedFileIsNotUsedAndIsReplacedByTheStreamedOne() throws {
        let good = Array("the real program".utf8)
        let (dir, cache, entry) = try cacheHolding(good, name: "prog", mode: 0o755)
        defer { FileIO.removeTree(dir) }
        // A rank of an earlier job rewrites the cached file: same name, same size, other bytes.
        let cached = cache.path(for: entry.digest)
        let poison = Array("the evil program".utf8)
        #expect(poison.count == good.count)
        try FileIO.write(cached, poison, mode: 0o600, exclusive: false)

        try FileIO.makeDirectories(dir + "/job")
        let extractor = try BundleExtractor(directory: dir + "/job", manifest: [entry], limits: Limits(), cache: cache) {
            cache.store(dir + "/job/" + $0.path, entry: $0, file: $1)
        }
        // Not a hit: the worker asks the master for the file.
        #expect(extractor.cachedCount == 0)
        #expect(extractor.streamedIndices == [0])
        try extractor.write(good)
        #expect(extractor.isComplete)
        #expect(try FileIO.readAll(dir + "/job/prog") == good)
        // The poisoned copy was dropped, and the verified streamed file took its place.
        #expect(try FileIO.readAll(cached) == good)
    }

    @Test func cache_storesAVerifiedFileAsASecondNameWithoutCopying() throws {
        let (dir, cache, entry) = try cacheHolding(Array("shipped once".utf8))
        defer { FileIO.removeTree(dir) }
        #expect(try FileStatus(path: cache.path(for: entry.digest)).inode == FileStatus(path: dir + "/f").inode)
        #expect(try names(in: dir + "/cache") == [entry.digest.hex])
        #expect(try hasVerifiedCopy(cache, entry))
    }

    @Test func cache_streamedFile_isLinkedFromItsJobDirectory_evenOverAFilePlantedUnderItsName() throws {
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let good = Array("streamed bytes".utf8)
        let entry = manifestEntry("sub/data", good)
        let cache = try #require(FileCache(directory: dir + "/cache", limit: 1 << 20))
        // A file the index does not know holds the cache name already (put there behind the
        // worker's back): not a hit, and the direct link finds the name taken.
        let cached = cache.path(for: entry.digest)
        try FileIO.write(cached, Array("something else".utf8), mode: 0o600, exclusive: true)
        try FileIO.makeDirectories(dir + "/job")
        let extractor = try BundleExtractor(directory: dir + "/job", manifest: [entry], limits: Limits(), cache: cache) {
            cache.store(dir + "/job/" + $0.path, entry: $0, file: $1)
        }
        #expect(extractor.streamedIndices == [0])
        try extractor.write(good)
        #expect(extractor.isComplete)
        // The verified job file took the name, as a second name of the same file, and no
        // temporary name is left behind.
        #expect(try FileStatus(path: cached).inode == FileStatus(path: dir + "/job/sub/data").inode)
        #expect(try FileIO.readAll(cached) == good)
        #expect(try names(in: dir + "/cache") == [entry.digest.hex])
        #expect(try hasVerifiedCopy(cache, entry))
    }

    @Test func cache_fileTheOwnerCannotRead_isCopiedPrivately() throws {
        let (dir, cache, entry) = try cacheHolding(Array("write-only".utf8), mode: 0o200, fileMode: 0o600)
        defer { FileIO.removeTree(dir) }
        let cached = cache.path(for: entry.digest)
        #expect(try FileStatus(path: cached).inode != FileStatus(path: dir + "/f").inode)
        #expect(FileIO.mode(cached).map { $0 & 0o777 } == 0o600)
    }

    @Test func cache_rankRewritingItsJobFile_makesTheNextJobAskForIt() throws {
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let good = Array("input data v1".utf8)
        let entry = manifestEntry("data", good)
        let cache = try #require(FileCache(directory: dir + "/cache", limit: 1 << 20))
        try FileIO.makeDirectories(dir + "/job1")
        let first = try BundleExtractor(directory: dir + "/job1", manifest: [entry], limits: Limits(), cache: cache) {
            cache.store(dir + "/job1/" + $0.path, entry: $0, file: $1)
        }
        try first.write(good)
        #expect(first.isComplete)
        // The rank rewrites its input in place: same size, other bytes.
        try FileIO.write(dir + "/job1/data", Array("input data v2".utf8), mode: 0o644, exclusive: false)
        try FileIO.makeDirectories(dir + "/job2")
        let second = try BundleExtractor(directory: dir + "/job2", manifest: [entry], limits: Limits(), cache: cache)
        #expect(second.cachedCount == 0)
        #expect(second.streamedIndices == [0])
        try second.write(good)
        #expect(try FileIO.readAll(dir + "/job2/data") == good)
    }

    @Test func cache_fileThatGrewIsNotAHit() throws {
        let (dir, cache, entry) = try cacheHolding([1, 2, 3])
        defer { FileIO.removeTree(dir) }
        try FileIO.write(cache.path(for: entry.digest), [1, 2, 3, 4], mode: 0o600, exclusive: false)
        #expect(try !hasVerifiedCopy(cache, entry))
        #expect(cache.open(entry) == nil)
    }

    @Test func extractor_copiesTwentyThousandCachedFilesOneDescriptorAtATime() throws {
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        // Files a previous run of the worker cached: found by the start-up scan.
        try FileIO.makeDirectories(dir + "/cache")
        let count = 20_000
        var manifest: [ManifestEntry] = []
        for index in 0..<count {
            let bytes = Array("file \(index)\n".utf8)
            let entry = manifestEntry("d/f\(index)", bytes)
            try FileIO.write(dir + "/cache/" + entry.digest.hex, bytes, mode: 0o600, exclusive: true)
            manifest.append(entry)
        }
        let cache = try #require(FileCache(directory: dir + "/cache", limit: 1 << 30))
        try FileIO.makeDirectories(dir + "/job")
        let extractor = try BundleExtractor(directory: dir + "/job", manifest: manifest, limits: Limits(), cache: cache)
        #expect(extractor.isComplete)
        #expect(extractor.cachedCount == count)
        #expect(extractor.streamedIndices.isEmpty)
        #expect(try FileIO.readAll(dir + "/job/d/f12345") == Array("file 12345\n".utf8))
        #expect(try Directory(path: dir + "/job/d").entries().count == count)
    }

    /// An empty cache in a new directory (the caller removes it).
    func emptyCache() throws -> (dir: String, cache: FileCache) {
        let dir = try makeTemporaryDirectory()
        return (dir, try #require(FileCache(directory: dir + "/cache", limit: 1 << 20)))
    }

    /// Runs a job's extraction of `bytes` as `entry` into `dir/name`, storing what streams in.
    func extract(_ entry: ManifestEntry, _ bytes: [UInt8], into job: String, cache: FileCache) throws -> BundleExtractor {
        try FileIO.makeDirectories(job)
        let extractor = try BundleExtractor(directory: job, manifest: [entry], limits: Limits(), cache: cache) {
            cache.store(job + "/" + $0.path, entry: $0, file: $1)
        }
        if !extractor.isComplete { try extractor.write(bytes) }
        #expect(extractor.isComplete)
        return extractor
    }

    /// What a worker does when a job ends: takes back what the job shared, removes the rest.
    func end(_ extractor: BundleExtractor, in job: String, cache: FileCache) {
        cache.takeBack(extractor.sharedFiles, from: job)
        FileIO.removeTree(job)
    }

    /// What a worker does before a job's ranks start (see `FileCache.waitUntilSettled`).
    func waitForRanksToMayStart(_ extractor: BundleExtractor) {
        FileCache.waitUntilSettled(extractor.latestSharedChange)
    }

    /// Once `waitUntilSettled` returns for a file's noted status-change time, any write to the
    /// file moves that time (what the cache's trust in a noted identity rests on), however soon
    /// after the note it comes; tried many times, so that some notes fall right before a tick.
    @Test func waitUntilSettled_aWriteRightAfterMovesTheStatusChangeTime() throws {
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let fd = try FileDescriptor.open(dir + "/f", .writeOnly, options: [.create, .exclusiveCreate], permissions: 0o600).release()
        defer { FD.close(fd) }
        for round in 0..<200 {
            try FD.writeAll(fd, [UInt8(truncatingIfNeeded: round)])
            let noted = try FileStatus(descriptor: fd).changed
            FileCache.waitUntilSettled(noted)
            #expect(Clock.fileTimeNanoseconds > noted)
            try FD.writeAll(fd, [1])
            #expect(try FileStatus(descriptor: fd).changed != noted, "round \(round)")
        }
    }

    @Test func cache_unchangedFileIsLentToTheNextJob_asASecondNameWithItsMode() throws {
        let (dir, cache) = try emptyCache()
        defer { FileIO.removeTree(dir) }
        let bytes = Array("shipped once, used twice".utf8)
        let first = try extract(manifestEntry("d/data", bytes), bytes, into: dir + "/job1", cache: cache)
        #expect(first.latestSharedChange > 0)
        end(first, in: dir + "/job1", cache: cache)
        let entry = manifestEntry("d/data", bytes, mode: 0o755)
        let second = try extract(entry, [], into: dir + "/job2", cache: cache)
        #expect(second.cachedCount == 1)
        #expect(second.latestSharedChange > 0)
        let lent = try FileStatus(path: dir + "/job2/d/data")
        #expect(lent.inode == (try FileStatus(path: cache.path(for: entry.digest))).inode)
        #expect(lent.permissions == 0o755)
        #expect(try FileIO.readAll(dir + "/job2/d/data") == bytes)
    }

    /// A rank that moved a directory of its job and left a symlink in its place: taking the
    /// job's files back does not follow it (the file moved with the directory keeps its name
    /// there), and the next job gets a verified copy, not the file the moved directory holds.
    @Test func takeBack_doesNotFollowASymlinkInPlaceOfAJobDirectory() throws {
        let (dir, cache) = try emptyCache()
        defer { FileIO.removeTree(dir) }
        let bytes = Array("moved away".utf8)
        let entry = manifestEntry("d/data", bytes)
        let first = try extract(entry, bytes, into: dir + "/job1", cache: cache)
        #expect(rename(dir + "/job1/d", dir + "/moved") == 0)
        #expect(symlink(dir + "/moved", dir + "/job1/d") == 0)
        end(first, in: dir + "/job1", cache: cache)
        #expect(FileIO.exists(dir + "/moved/data"), "not unlinked through the symlink")
        let second = try extract(entry, [], into: dir + "/job2", cache: cache)
        #expect(second.cachedCount == 1)
        let copy = try FileStatus(path: dir + "/job2/d/data")
        #expect(copy.inode != (try FileStatus(path: cache.path(for: entry.digest))).inode, "copied, not lent")
        #expect(try FileIO.readAll(dir + "/job2/d/data") == bytes)
    }

    @Test func cache_fileAJobStillHolds_isCopiedNotShared() throws {
        let (dir, cache) = try emptyCache()
        defer { FileIO.removeTree(dir) }
        let bytes = Array("two jobs at once".utf8)
        let entry = manifestEntry("data", bytes)
        _ = try extract(entry, bytes, into: dir + "/job1", cache: cache)
        let second = try extract(entry, [], into: dir + "/job2", cache: cache)
        #expect(second.cachedCount == 1)
        #expect(try FileStatus(path: dir + "/job2/data").inode != FileStatus(path: dir + "/job1/data").inode)
        #expect(try FileIO.readAll(dir + "/job2/data") == bytes)
    }

    @Test func cache_lentFileRewrittenByARank_isCheckedAndAskedForAgain() throws {
        let (dir, cache) = try emptyCache()
        defer { FileIO.removeTree(dir) }
        let good = Array("input data v1".utf8)
        let entry = manifestEntry("data", good)
        let first = try extract(entry, good, into: dir + "/job1", cache: cache)
        end(first, in: dir + "/job1", cache: cache)
        let second = try extract(entry, [], into: dir + "/job2", cache: cache)
        #expect(second.cachedCount == 1)
        // The rank rewrites its input in place (same size, other bytes) and puts the old
        // modification time back: only the status-change time shows it.
        waitForRanksToMayStart(second)
        let before = try FileStatus(path: dir + "/job2/data")
        try FileIO.write(dir + "/job2/data", Array("input data v2".utf8), mode: 0o644, exclusive: false)
        try FileIO.setTimes(dir + "/job2/data", nanoseconds: before.modified)
        end(second, in: dir + "/job2", cache: cache)
        try FileIO.makeDirectories(dir + "/job3")
        let third = try BundleExtractor(directory: dir + "/job3", manifest: [entry], limits: Limits(), cache: cache)
        #expect(third.cachedCount == 0)
        #expect(third.streamedIndices == [0])
        #expect(!FileIO.exists(cache.path(for: entry.digest)))
        try third.write(good)
        #expect(try FileIO.readAll(dir + "/job3/data") == good)
    }

    @Test func extractor_bytesThatDoNotMatchTheirDigest_areRefusedAndNeverCached() throws {
        let (dir, cache) = try emptyCache()
        defer { FileIO.removeTree(dir) }
        let entry = manifestEntry("d/model.bin", Array("the real bytes".utf8))
        try FileIO.makeDirectories(dir + "/job")
        let extractor = try BundleExtractor(directory: dir + "/job", manifest: [entry], limits: Limits(), cache: cache) {
            cache.store(dir + "/job/" + $0.path, entry: $0, file: $1)
        }
        #expect(throws: BundleError.digestMismatch("d/model.bin")) { try extractor.write(Array("the fake bytes".utf8)) }
        #expect(try Directory(path: dir + "/cache").entries().isEmpty)
        #expect(cache.open(entry) == nil)
    }
}
