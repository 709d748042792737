import Foundation
import Testing

@testable import DistrCore

/// The fuzz targets' seed corpus as a regression suite: every seed runs through its target once
/// (a crash fails the run), except the inputs listed in `Fuzz/Corpus/KNOWN_CRASHES`.
@Suite struct FuzzCorpusTests {
    struct Input: Sendable, CustomStringConvertible {
        var target: String
        var name: String
        var description: String { "\(target)/\(name)" }
    }

    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus").path

    static func names(in folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(corpus)/\(folder)")) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    static let knownCrashes = FuzzTarget.knownCrashes(
        String(decoding: FileManager.default.contents(atPath: "\(corpus)/KNOWN_CRASHES") ?? Data(), as: UTF8.self))

    static let inputs = FuzzTarget.all.flatMap { target in names(in: target.name).map { Input(target: target.name, name: $0) } }

    static func bytes(_ input: Input) throws -> [UInt8] {
        [UInt8](try #require(FileManager.default.contents(atPath: "\(corpus)/\(input.description)")))
    }

    @Test(arguments: inputs.filter { !knownCrashes.contains($0.description) })
    func seed_runsThroughItsTargetWithoutCrashing(_ input: Input) throws {
        let target = try #require(FuzzTarget.named(input.target))
        target.run(try Self.bytes(input))
    }

    @Test(arguments: inputs.filter { !knownCrashes.contains($0.description) })
    func seed_prefixesAndFlippedBytesDoNotCrash(_ input: Input) throws {
        let target = try #require(FuzzTarget.named(input.target))
        let bytes = try Self.bytes(input)
        // A large regression seed (the deeply nested value) runs whole in the test above; its
        // mutations here are every 1/4096th prefix and byte.
        let step = max(1, bytes.count / 4096)
        for end in stride(from: 0, to: bytes.count, by: step) { target.run(Array(bytes[0..<end])) }
        for index in stride(from: 0, to: bytes.count, by: step) {
            var flipped = bytes
            flipped[index] ^= 0x80
            target.run(flipped)
        }
    }

    @Test func corpus_hasAFolderWithSeedsForEveryTargetAndNoOther() {
        let folders = Set(Self.names(in: "").filter { $0 != "KNOWN_CRASHES" })
        #expect(folders == Set(FuzzTarget.all.map(\.name)))
        for target in FuzzTarget.all { #expect(!Self.names(in: target.name).isEmpty, "no seeds for \(target.name)") }
    }

    @Test func corpus_holdsEveryGeneratedSeedAsGenerated() throws {
        for seed in FuzzTarget.seeds() {
            let path = "\(Self.corpus)/\(seed.target)/\(seed.name)"
            let onDisk = FileManager.default.contents(atPath: path).map { [UInt8]($0) }
            #expect(onDisk == seed.bytes, "\(path) is stale or missing: run `swift run distr-fuzz --write-seeds Fuzz/Corpus`")
        }
    }

    @Test func knownCrashes_nameSeedsThatExist() {
        for path in Self.knownCrashes {
            #expect(FileManager.default.fileExists(atPath: "\(Self.corpus)/\(path)"), "KNOWN_CRASHES lists \(path), which is not in the corpus")
        }
    }

    @Test func knownCrashes_parsesPathsAndSkipsCommentsAndBlankLines() {
        #expect(FuzzTarget.knownCrashes("# note\n\nmanifest/a   # why\r\n  b/c\n#x\n") == ["manifest/a", "b/c"])
    }
}
