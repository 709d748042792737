/// Targets for what ranks send each other: binary Codable payloads and rank frame headers.
extension FuzzTarget {
    /// Decodes one of a fixed set of types (chosen by the first byte); whatever decodes must
    /// encode, decode and encode again to the same bytes (bytes, not values: NaN != NaN).
    static func binaryCodable(_ data: [UInt8]) {
        guard let selector = data.first else { return }
        let payload = Array(data.dropFirst())
        switch selector % 5 {
        case 0: roundTrip(String.self, payload)
        case 1: roundTrip([Int].self, payload)
        case 2: roundTrip([Double].self, payload)
        case 3: roundTrip(FuzzRecord.self, payload)
        default: roundTrip(FuzzTree.self, payload)
        }
    }

    static func roundTrip<T: Codable>(_ type: T.Type, _ payload: [UInt8]) {
        guard let value = try? BinaryDecoder().decode(type, from: payload) else { return }  // Most fuzz input is expected not to decode.
        let encoded = try? BinaryEncoder().encode(value)  // A failure is a finding: checked below.
        let again = encoded.flatMap { try? BinaryDecoder().decode(type, from: $0) }  // As above.
        let reencoded = again.flatMap { try? BinaryEncoder().encode($0) }  // As above.
        fuzzCheck(encoded != nil && encoded == reencoded, "\(T.self) does not survive re-encoding: \(value)")
    }

    /// Rank frames, split into chunks as `PeerInputFuzzing.decodeRankFrames` does: the pure,
    /// size-capped decoder must only return or throw.
    static func rankFrame(_ data: [UInt8]) {
        _ = try? PeerInputFuzzing.decodeRankFrames(data)  // Malformed streams are expected to throw; only a crash or a hang is a finding.
    }
}

/// A struct with nested optional and array fields, for `binary-codable`.
struct FuzzRecord: Codable, Equatable, Sendable {
    struct Inner: Codable, Equatable, Sendable {
        var small: Int8
        var unsigned: UInt16
        var note: String?
    }
    var id: Int
    var label: String?
    var flag: Bool
    var values: [Int]
    var words: [String]
    var matrix: [[Double]]
    var inner: Inner?
    var inners: [Inner]
    var optionals: [Int?]
    var table: [String: Int]
}

/// A recursive enum, for `binary-codable`: decoders of recursive types need a depth limit.
indirect enum FuzzTree: Codable, Equatable, Sendable {
    case leaf(Int)
    case node(FuzzTree, FuzzTree)
    case labeled(String, FuzzTree)
    /// A short case name keeps the deep-recursion seed small (7 bytes a level).
    case box(FuzzTree)
    case empty
}
