/// Decodes what `BinaryEncoder` wrote.
///
/// Safe on bytes from a peer: every count and length read is checked against the bytes left
/// before anything is allocated for it, and values may nest at most `maxDepth` levels (a
/// recursive type such as `indirect enum` or `final class Node { var next: Node? }` would
/// otherwise let a small message exhaust the receiver's stack).
public struct BinaryDecoder: Sendable {
    /// How deep values may nest by default: structs, classes, enums and collections each count a level.
    public static let defaultMaxDepth = 256

    /// Thrown when a value nests deeper than `limit` levels.
    public struct NestingTooDeep: Error, Equatable, CustomStringConvertible {
        public var limit: Int
        public var description: String { "the value nests deeper than \(limit) levels" }
    }

    public let maxDepth: Int

    public init(maxDepth: Int = BinaryDecoder.defaultMaxDepth) { self.maxDepth = maxDepth }

    /// - Throws: `DecodingError` when the bytes do not hold a `T` (too short, or bytes left over),
    ///   `NestingTooDeep` when they nest deeper than `maxDepth`.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        let source = BinarySource(bytes, maxDepth: maxDepth)
        let value = try source.decodeValue(type)
        guard source.offset == bytes.count else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: [], debugDescription: "\(bytes.count - source.offset) bytes left over after decoding \(T.self)"))
        }
        return value
    }
}

final class BinarySource: Decoder {
    let bytes: [UInt8]
    let maxDepth: Int
    var offset = 0
    /// Values being decoded by their own `init(from:)` right now, one inside the other.
    var depth = 0
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] = [:]

    init(_ bytes: [UInt8], maxDepth: Int = BinaryDecoder.defaultMaxDepth) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    func truncated(_ what: Any.Type) -> DecodingError {
        .dataCorrupted(.init(codingPath: codingPath, debugDescription: "message ended while reading \(what)"))
    }

    func take(_ count: Int, for what: Any.Type) throws -> Range<Int> {
        guard count >= 0, bytes.count - offset >= count else { throw truncated(what) }
        defer { offset += count }
        return offset..<offset + count
    }

    func read<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        let range = try take(MemoryLayout<T>.size, for: T.self)
        return bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: range.lowerBound, as: T.self)) }
    }

    func readBool() throws -> Bool {
        let byte = try read(UInt8.self)
        guard byte <= 1 else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "byte \(byte) is not a Bool"))
        }
        return byte == 1
    }

    func readString() throws -> String {
        let count = Int(try read(UInt32.self))
        let range = try take(count, for: String.self)
        return String(decoding: bytes[range], as: UTF8.self)
    }

    func readDouble() throws -> Double { Double(bitPattern: try read(UInt64.self)) }
    func readFloat() throws -> Float { Float(bitPattern: try read(UInt32.self)) }
    func readInt() throws -> Int { Int(try read(Int64.self)) }
    func readUInt() throws -> UInt { UInt(try read(UInt64.self)) }

    func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
        /// Each branch below is taken only when `T` is the type it builds, so the cast succeeds.
        func typed(_ value: Any?) throws -> T {
            guard let value = value as? T else { throw truncated(T.self) }
            return value
        }
        if let optional = type as? any OptionalDecodable.Type { return try typed(try optional.decodeOptional(from: self)) }
        if type == Int.self { return try typed(try readInt()) }
        if type == Double.self { return try typed(try readDouble()) }
        if type == String.self { return try typed(try readString()) }
        if type == Bool.self { return try typed(try readBool()) }
        if let array = type as? any RawNumericArray.Type {
            let count = Int(try read(UInt32.self))
            let size = count.multipliedReportingOverflow(by: array.elementSize)
            guard !size.overflow else { throw truncated(type) }
            let range = try take(size.partialValue, for: type)
            return try typed(bytes.withUnsafeBytes { array.fromRawBytes(UnsafeRawBufferPointer(rebasing: $0[range])) })
        }
        if let dictionary = type as? any PairDecodable.Type, let value = try dictionary.decodePairs(from: self) as? T {
            return value
        }
        // Every recursive type decodes itself here (optionals and dictionaries of it included,
        // whose wrapped values come back through this function): counting these calls bounds
        // the recursion whatever the bytes say.
        guard depth < maxDepth else { throw BinaryDecoder.NestingTooDeep(limit: maxDepth) }
        depth += 1
        defer { depth -= 1 }
        return try T(from: self)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(KeyedBinaryDecoding<Key>(source: self))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let count = Int(try read(UInt32.self))
        // Each element takes at least one byte, so a count larger than what is left is a lie.
        guard count <= bytes.count - offset else { throw truncated([Any].self) }
        return UnkeyedBinaryDecoding(source: self, count: count)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleBinaryDecoding(source: self) }
}

struct KeyedBinaryDecoding<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let source: BinarySource
    var codingPath: [any CodingKey] { source.codingPath }
    /// The key of the nested container that comes next, if one does (enum cases); keys of
    /// plain fields are not on the wire.
    var allKeys: [Key] {
        let saved = source.offset
        defer { source.offset = saved }
        let name = try? source.readString()  // A peek: no key here means no keys; the decode that follows reports the bytes.
        guard let name, let key = Key(stringValue: name) else { return [] }
        return [key]
    }

    private func expectKey(_ key: Key) throws {
        let name = try source.readString()
        guard name == key.stringValue else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "found '\(name)' instead"))
        }
    }

    func contains(_ key: Key) -> Bool { true }
    func decodeNil(forKey key: Key) throws -> Bool {
        guard source.offset < source.bytes.count else { throw source.truncated(Optional<Any>.self) }
        if source.bytes[source.offset] == 0 {
            source.offset += 1
            return true
        }
        return false
    }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try source.readBool() }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try source.readString() }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try source.readDouble() }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try source.readFloat() }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try source.readInt() }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try source.read(type) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try source.read(type) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try source.read(type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try source.read(type) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try source.readUInt() }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try source.read(type) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try source.read(type) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try source.read(type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try source.read(type) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try source.decodeValue(type) }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? { try source.decodeValue(T?.self) }
    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try source.decodeValue(Bool?.self) }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { try source.decodeValue(String?.self) }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? { try source.decodeValue(Double?.self) }
    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? { try source.decodeValue(Float?.self) }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try source.decodeValue(Int?.self) }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try source.decodeValue(Int8?.self) }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try source.decodeValue(Int16?.self) }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try source.decodeValue(Int32?.self) }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try source.decodeValue(Int64?.self) }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try source.decodeValue(UInt?.self) }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try source.decodeValue(UInt8?.self) }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try source.decodeValue(UInt16?.self) }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try source.decodeValue(UInt32?.self) }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try source.decodeValue(UInt64?.self) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try expectKey(key)
        return try source.container(keyedBy: type)
    }
    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try expectKey(key)
        return try source.unkeyedContainer()
    }
    func superDecoder() throws -> any Decoder { source }
    func superDecoder(forKey key: Key) throws -> any Decoder { source }
}

struct UnkeyedBinaryDecoding: UnkeyedDecodingContainer {
    let source: BinarySource
    let total: Int
    var currentIndex = 0
    var codingPath: [any CodingKey] { source.codingPath }
    var count: Int? { total }
    var isAtEnd: Bool { currentIndex >= total }

    init(source: BinarySource, count: Int) {
        self.source = source
        total = count
    }

    private mutating func advance() throws {
        guard !isAtEnd else { throw source.truncated(Any.self) }
        currentIndex += 1
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, source.offset < source.bytes.count else { throw source.truncated(Optional<Any>.self) }
        if source.bytes[source.offset] == 0 {
            source.offset += 1
            currentIndex += 1
            return true
        }
        return false
    }
    mutating func decode(_ type: Bool.Type) throws -> Bool {
        try advance()
        return try source.readBool()
    }
    mutating func decode(_ type: String.Type) throws -> String {
        try advance()
        return try source.readString()
    }
    mutating func decode(_ type: Double.Type) throws -> Double {
        try advance()
        return try source.readDouble()
    }
    mutating func decode(_ type: Float.Type) throws -> Float {
        try advance()
        return try source.readFloat()
    }
    mutating func decode(_ type: Int.Type) throws -> Int {
        try advance()
        return try source.readInt()
    }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try advance()
        return try source.decodeValue(type)
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try advance()
        return try source.container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try advance()
        return try source.unkeyedContainer()
    }
    mutating func superDecoder() throws -> any Decoder { source }
}

struct SingleBinaryDecoding: SingleValueDecodingContainer {
    let source: BinarySource
    var codingPath: [any CodingKey] { source.codingPath }

    func decodeNil() -> Bool {
        guard source.offset < source.bytes.count, source.bytes[source.offset] == 0 else { return false }
        source.offset += 1
        return true
    }
    func decode(_ type: Bool.Type) throws -> Bool { try source.readBool() }
    func decode(_ type: String.Type) throws -> String { try source.readString() }
    func decode(_ type: Double.Type) throws -> Double { try source.readDouble() }
    func decode(_ type: Float.Type) throws -> Float { try source.readFloat() }
    func decode(_ type: Int.Type) throws -> Int { try source.readInt() }
    func decode(_ type: Int8.Type) throws -> Int8 { try source.read(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try source.read(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try source.read(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try source.read(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try source.readUInt() }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try source.read(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try source.read(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try source.read(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try source.read(type) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try source.decodeValue(type) }
}

/// Lets the decoder see `Optional` and read its presence byte.
protocol OptionalDecodable {
    static func decodeOptional(from source: BinarySource) throws -> Self
}

extension Optional: OptionalDecodable where Wrapped: Decodable {
    static func decodeOptional(from source: BinarySource) throws -> Wrapped? {
        let present = try source.read(UInt8.self)
        switch present {
        case 0: return nil
        case 1: return try source.decodeValue(Wrapped.self)
        default:
            throw DecodingError.dataCorrupted(.init(codingPath: source.codingPath, debugDescription: "bad presence byte \(present)"))
        }
    }
}

protocol PairDecodable {
    static func decodePairs(from source: BinarySource) throws -> Self
}

extension Dictionary: PairDecodable where Key: Decodable, Value: Decodable {
    static func decodePairs(from source: BinarySource) throws -> [Key: Value] {
        let count = Int(try source.read(UInt32.self))
        guard count <= source.bytes.count - source.offset else { throw source.truncated(Self.self) }
        var result: [Key: Value] = [:]
        result.reserveCapacity(count)
        for _ in 0..<count {
            let key = try source.decodeValue(Key.self)
            result[key] = try source.decodeValue(Value.self)
        }
        return result
    }
}
