import Foundation
import Testing

@testable import DistrCore

/// Digests that follow their files' bytes (protocol 5): the worker's extractor checks them when
/// they come, the master hashes such files while it sends, and the wire carries them.
@Suite struct LateDigestTests {
    /// A manifest entry whose digest follows the bytes.
    func lateEntry(_ path: String, _ bytes: [UInt8]) -> ManifestEntry {
        ManifestEntry(path: path, mode: 0o644, size: bytes.count, digest: [])
    }

    func bytes(_ count: Int, seed: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed) } }

    /// An extractor that notes each file it handed over as verified, with the digest it had.
    func extractor(_ dir: String, _ manifest: [ManifestEntry]) throws -> (BundleExtractor, Noted) {
        let noted = Noted()
        let extractor = try BundleExtractor(directory: dir, manifest: manifest, limits: Limits()) { entry, _ in
            noted.files.append((entry.path, entry.digest))
            return nil
        }
        return (extractor, noted)
    }

    final class Noted {
        var files: [(path: String, digest: [UInt8])] = []
    }

    /// Files with and without digests in the manifest, in one chunk: the ones whose digest
    /// follows wait for it (the job is not complete), more bytes before it are refused, and the
    /// digests, once they come, complete the files with the digest filled in.
    @Test func extractor_waitsForDigestsThatFollowTheBytes() throws {
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let contents = [bytes(100, seed: 1), bytes(70_000, seed: 2), bytes(50, seed: 3), bytes(80_000, seed: 4), bytes(10, seed: 5)]
        let manifest = [
            manifestEntry("a", contents[0]), lateEntry("b", contents[1]), manifestEntry("c", contents[2]), lateEntry("d", contents[3]),
            manifestEntry("e", contents[4]),
        ]
        let (extractor, noted) = try extractor(dir, manifest)
        #expect(extractor.streamedIndices == [0, 1, 2, 3, 4])
        let stream = contents.flatMap { $0 }
        // Up to the end of "d": "a" and "c" are verified; "b" and "d" wait.
        let throughD = contents[0..<4].reduce(0) { $0 + $1.count }
        try extractor.write(Array(stream[..<throughD]))
        #expect(noted.files.map(\.path) == ["a", "c"])
        #expect(extractor.awaitingDigests == [1, 3])
        #expect(!extractor.isComplete)
        #expect(throws: BundleError.digestsMissing("b")) { try extractor.write(Array(stream[throughD...])) }

        let (again, notedAgain) = try self.extractor(dir + "-2", manifest, making: true)
        defer { FileIO.removeTree(dir + "-2") }
        try again.write(Array(stream[..<throughD]))
        try again.checkDigests([FileDigest(index: 1, digest: SHA256.hash(contents[1])), FileDigest(index: 3, digest: SHA256.hash(contents[3]))])
        #expect(notedAgain.files.map(\.path) == ["a", "c", "b", "d"])
        #expect(notedAgain.files[2].digest == SHA256.hash(contents[1]), "the cache is handed the digest that came")
        try again.write(Array(stream[throughD...]))
        #expect(again.isComplete)
        for (index, name) in ["a", "b", "c", "d", "e"].enumerated() {
            #expect(try FileIO.readAll(dir + "-2/" + name) == contents[index])
        }
    }

    func extractor(_ dir: String, _ manifest: [ManifestEntry], making: Bool) throws -> (BundleExtractor, Noted) {
        try FileIO.makeDirectories(dir)
        return try extractor(dir, manifest)
    }

    /// A digest that does not match names its file; digests for other files than those
    /// waiting, or out of order, or missing one, are refused.
    @Test func extractor_refusesWrongOrUnexpectedDigests() throws {
        let contents = [bytes(70_000, seed: 1), bytes(70_000, seed: 2)]
        let manifest = [lateEntry("x/one", contents[0]), lateEntry("x/two", contents[1])]
        let right = contents.enumerated().map { FileDigest(index: $0.offset, digest: SHA256.hash($0.element)) }
        let cases: [([FileDigest], BundleError)] = [
            ([right[0], FileDigest(index: 1, digest: SHA256.hash(contents[0]))], .digestMismatch("x/two")),
            ([right[1], right[0]], .unexpectedDigests(got: [1, 0], awaiting: [0, 1])),
            ([right[0]], .unexpectedDigests(got: [0], awaiting: [0, 1])),
            ([right[0], right[1], FileDigest(index: 2, digest: right[0].digest)], .unexpectedDigests(got: [0, 1, 2], awaiting: [0, 1])),
        ]
        for (digests, error) in cases {
            let dir = try makeTemporaryDirectory()
            defer { FileIO.removeTree(dir) }
            let (extractor, _) = try extractor(dir, manifest)
            #expect(throws: BundleError.unexpectedDigests(got: [0], awaiting: [])) { try extractor.checkDigests([right[0]]) }
            try extractor.write(contents.flatMap { $0 })
            #expect(throws: error) { try extractor.checkDigests(digests) }
            #expect(!extractor.isComplete)
        }
    }

    /// A master may not leave more files waiting for their digests than the worker keeps open.
    @Test func extractor_boundsTheFilesWaitingForDigests() throws {
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let manifest = (0...BundleExtractor.openLimit).map { lateEntry("f\($0)", [UInt8($0 % 256)]) }
        let (extractor, _) = try extractor(dir, manifest)
        #expect(throws: BundleError.digestsMissing("f\(BundleExtractor.openLimit)")) {
            try extractor.write((0...BundleExtractor.openLimit).map { UInt8($0 % 256) })
        }
    }

    /// The manifest's digest is a SHA-256 or empty (it follows); anything else is refused.
    @Test func validate_refusesDigestsOfOtherSizes() throws {
        #expect(throws: BundleError.badDigest("f", count: 31)) {
            try BundlePath.validate(
                manifest: [ManifestEntry(path: "f", mode: 0o644, size: 1, digest: Array(repeating: 0, count: 31))], limits: Limits())
        }
        try BundlePath.validate(manifest: [lateEntry("f", [1])], limits: Limits())
        // An empty file has no last bytes for a digest to follow (the worker would wait for it).
        #expect(throws: BundleError.badDigest("e", count: 0)) { try BundlePath.validate(manifest: [lateEntry("e", [])], limits: Limits()) }
    }

    @Test func fileDigests_roundTripAndRefuseOtherDigestSizes() throws {
        let message = ControlMessage.fileDigests([FileDigest(index: 3, digest: SHA256.hash([1])), FileDigest(index: 9, digest: SHA256.hash([2]))])
        #expect(try ControlMessage.decode(type: message.type, payload: message.encoded()) == message)
        let short = ControlMessage.fileDigests([FileDigest(index: 3, digest: [1, 2, 3])])
        #expect(throws: WireError.self) { try ControlMessage.decode(type: short.type, payload: short.encoded()) }
        var truncated = message.encoded()
        truncated.removeLast()
        #expect(throws: WireError.self) { try ControlMessage.decode(type: message.type, payload: truncated) }
    }

    @Test func workerProtocol_checksDigestsOnlyWhileReceivingFiles() {
        let digests = [FileDigest(index: 0, digest: SHA256.hash([1]))]
        var machine = WorkerJobProtocol()
        _ = machine.received(.jobStart(StateMachineFixtures.spec))
        _ = machine.prepared(needed: [0], hasManifest: true, complete: false)
        #expect(machine.received(.fileDigests(digests)) == [.checkDigests(digests)])
        var early = WorkerJobProtocol()
        let actions = early.received(.fileDigests(digests))
        #expect(actions.first == .send(.failure("protocol violation: unexpected fileDigests while awaitingJob")))
    }

    /// A large bundle with a digest cache: files it does not know, of `lateFrom` bytes or more,
    /// leave the manifest without a digest and are hashed on their own threads, each digest
    /// the one hashing first gives; smaller ones are hashed first. Files the cache knows keep
    /// their digest in the manifest, and `finish` saves what was hashed late: a second
    /// collection knows every file.
    @Test func collector_hashesLargeUnknownFilesWhileTheyAreSent() throws {
        let dir = try makeTemporaryDirectory()
        defer { FileIO.removeTree(dir) }
        let sizes = [100, 200_000, 70_000, 1000, 300_000]
        var contents: [[UInt8]] = []
        for (index, size) in sizes.enumerated() {
            contents.append(bytes(size, seed: index))
            try FileIO.write(dir + "/f\(index)", contents[index], mode: 0o644, exclusive: true)
        }
        let cachePath = dir + "/cache/digests"
        // `settle: -60`: the cache keeps the digests of files written just now (DigestCache.isSettled).
        let paths = sizes.indices.map { dir + "/f\($0)" }
        let (sources, hashing) = try BundleCollector.collect(
            paths, digests: DigestCache(path: cachePath, settle: -60), cacheAbove: 0, lateFrom: 65_536)
        #expect(sources.map(\.entry.digestFollows) == [false, true, true, false, true])
        #expect(sources[0].entry.digest == SHA256.hash(contents[0]))
        for (index, source) in sources.enumerated() where source.entry.digestFollows {
            #expect(try source.late?.wait() == SHA256.hash(contents[index]))
        }
        hashing?.finish()
        let (again, none) = try BundleCollector.collect(
            paths, digests: DigestCache(path: cachePath, settle: -60), cacheAbove: 0, lateFrom: 65_536)
        #expect(none == nil)
        #expect(again.map(\.entry.digest) == contents.map { SHA256.hash($0) })
        // Without a digest cache nothing is late: a re-run could not name the files by digest.
        let (uncached, noHashing) = try BundleCollector.collect(paths, digests: nil, cacheAbove: 0, lateFrom: 65_536)
        #expect(noHashing == nil && uncached.allSatisfy { !$0.entry.digestFollows })
    }
}
