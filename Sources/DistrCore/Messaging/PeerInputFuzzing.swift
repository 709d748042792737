/// Entry points for fuzz targets over the decoders of what other ranks send. Each takes arbitrary
/// bytes and must only ever return or throw: a crash, a hang or an unbounded allocation is a bug.
package enum PeerInputFuzzing {
    /// A small message limit, so that fuzzing explores the size check rather than large allocations.
    package static let maxMessageBytes = 1 << 20

    /// Feeds `bytes` after the first to a `RankFrameDecoder`, in chunks of `bytes[0] / 4 + 1`
    /// bytes, and takes every frame out; `bytes[0] % 4` picks the connection signal the stream
    /// may begin with (none, `bothWays`, `answer`, none).
    /// - Returns: how many whole frames the bytes held (a goodbye ends the stream).
    /// - Throws: `NodeError` when the bytes break the frame format.
    package static func decodeRankFrames(_ bytes: [UInt8]) throws -> Int {
        var decoder = RankFrameDecoder(source: 1, maxMessageBytes: maxMessageBytes)
        let first = Int(bytes.first ?? 0)
        decoder.signal = [0, RankFrame.bothWays, RankFrame.answer, 0][first % 4]
        let chunk = first / 4 + 1
        var frames = 0
        var offset = min(1, bytes.count)
        while true {
            switch try decoder.next() {
            case .frame(let frame, let payload, _):
                frames += 1
                // An offer's description is checked as a receive would (never read from here).
                if frame.kind == RankFrame.offer { _ = try OfferedSend(decoding: payload, element: frame.element, from: 1, limit: maxMessageBytes) }
            case .signal: frames += 1
            case .goodbye: return frames
            case .needBytes, .needPayload:
                guard offset < bytes.count else { return frames }
                let end = min(bytes.count, offset + chunk)
                decoder.append(Array(bytes[offset..<end]))
                offset = end
            }
        }
    }

    /// A struct with nested fields of several kinds.
    package struct Record: Codable, Equatable, Sendable {
        package var name: String
        package var values: [Int]
        package var weights: [Double]
        package var inner: Inner?
        package var table: [String: Int]

        package struct Inner: Codable, Equatable, Sendable {
            package var flag: Bool
            package var small: Int8
            package var words: [String]
        }
    }

    /// A recursive type: without a depth limit, a small message of it could nest deep enough to
    /// exhaust the receiver's stack.
    package indirect enum Tree: Codable, Equatable, Sendable {
        case leaf(Int)
        case node(Tree, Tree)
        case list([Tree])
        case maybe(Tree?)
    }

    /// Decodes `bytes` as each of `String`, `[Int]`, `Record` and `Tree` in turn.
    /// - Returns: how many of the four decodes succeeded.
    package static func decodeCodable(_ bytes: [UInt8]) -> Int {
        let decoder = BinaryDecoder()
        var decoded = 0
        if (try? decoder.decode(String.self, from: bytes)) != nil { decoded += 1 }  // Which error a decode throws does not matter here.
        if (try? decoder.decode([Int].self, from: bytes)) != nil { decoded += 1 }  // As above.
        if (try? decoder.decode(Record.self, from: bytes)) != nil { decoded += 1 }  // As above.
        if (try? decoder.decode(Tree.self, from: bytes)) != nil { decoded += 1 }  // As above.
        return decoded
    }
}
