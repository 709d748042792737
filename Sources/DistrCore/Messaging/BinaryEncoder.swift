/// A compact, positional binary `Codable` encoder, the default payload encoding for messages.
///
/// Values are written in the order `encode(to:)` writes them, without keys: integers as 8-byte
/// little-endian (`Int8`...`Int32` and unsigned ones at their own width), floating point as IEEE
/// little-endian, `Bool` as one byte, strings as `u32` length + UTF-8, sequences as `u32` count +
/// elements, optionals as a presence byte + value. Arrays of plain numeric types are written as
/// raw memory. The decoder must read the same type: synthesized `Codable` conformances always do.
public struct BinaryEncoder: Sendable {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let sink = BinarySink()
        try sink.encodeValue(value)
        return sink.bytes
    }
}

/// The growing output buffer, shared by every container of one encoding.
final class BinarySink: Encoder {
    var bytes: [UInt8] = []
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] = [:]

    init() { bytes.reserveCapacity(64) }

    @inline(__always) func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    func append(_ string: String) {
        var copy = string
        copy.withUTF8 { utf8 in
            append(UInt32(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    /// Values with a fixed binary form go straight to the buffer; the rest use their `encode(to:)`.
    func encodeValue<T: Encodable>(_ value: T) throws {
        // Optional first: a dynamic cast to Int or String would unwrap it silently.
        switch value {
        case let v as any OptionalEncodable:
            if let wrapped = v.wrappedEncodable {
                bytes.append(1)
                try encodeValue(wrapped)
            } else {
                bytes.append(0)
            }
        case let v as Int: append(Int64(v))
        case let v as Double: append(v.bitPattern)
        case let v as String: append(v)
        case let v as Bool: bytes.append(v ? 1 : 0)
        case let v as any RawNumericArray:
            append(UInt32(v.elementCount))
            v.appendRawBytes(to: &bytes)
        case let v as any PairEncodable:
            // Dictionaries encode through keyed containers; a positional format must keep the keys.
            try v.encodePairs(to: self)
        default: try value.encode(to: self)
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(KeyedBinaryEncoding<Key>(sink: self))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let start = bytes.count
        append(UInt32(0))
        return UnkeyedBinaryEncoding(sink: self, countOffset: start)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleBinaryEncoding(sink: self) }
}

/// Primitive writes shared by the three container kinds.
protocol BinaryPrimitiveEncoding {
    var sink: BinarySink { get }
}

extension BinaryPrimitiveEncoding {
    func put(_ value: Bool) { sink.bytes.append(value ? 1 : 0) }
    func put(_ value: String) { sink.append(value) }
    func put(_ value: Double) { sink.append(value.bitPattern) }
    func put(_ value: Float) { sink.append(value.bitPattern) }
    func put(_ value: Int) { sink.append(Int64(value)) }
    func put(_ value: UInt) { sink.append(UInt64(value)) }
    func put<T: FixedWidthInteger>(_ value: T) { sink.append(value) }
}

struct KeyedBinaryEncoding<Key: CodingKey>: KeyedEncodingContainerProtocol, BinaryPrimitiveEncoding {
    let sink: BinarySink
    var codingPath: [any CodingKey] { sink.codingPath }

    mutating func encodeNil(forKey key: Key) throws { sink.bytes.append(0) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { put(value) }
    mutating func encode(_ value: String, forKey key: Key) throws { put(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { put(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { put(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { put(value) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { put(value) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { put(value) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { put(value) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { put(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { put(value) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { put(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { put(value) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { put(value) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { put(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try sink.encodeValue(value) }

    // Optionals carry a presence byte, so a positional decoder knows whether a value follows.
    mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: Bool?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: String?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: Double?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: Float?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: Int?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: Int8?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: Int16?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: Int32?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: Int64?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: UInt?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: UInt8?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: UInt16?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: UInt32?, forKey key: Key) throws { try sink.encodeValue(value) }
    mutating func encodeIfPresent(_ value: UInt64?, forKey key: Key) throws { try sink.encodeValue(value) }

    // Nested containers carry their key: synthesized enum coding names the case this way, and
    // the decoder reports it through `allKeys`.
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        sink.append(key.stringValue)
        return sink.container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        sink.append(key.stringValue)
        return sink.unkeyedContainer()
    }
    mutating func superEncoder() -> any Encoder { sink }
    mutating func superEncoder(forKey key: Key) -> any Encoder { sink }
}

/// Writes a `u32` count first and patches it as elements are added.
struct UnkeyedBinaryEncoding: UnkeyedEncodingContainer, BinaryPrimitiveEncoding {
    let sink: BinarySink
    let countOffset: Int
    private(set) var count = 0
    var codingPath: [any CodingKey] { sink.codingPath }

    init(sink: BinarySink, countOffset: Int) {
        self.sink = sink
        self.countOffset = countOffset
    }

    private mutating func added() {
        count += 1
        withUnsafeBytes(of: UInt32(count).littleEndian) { raw in
            for i in 0..<4 { sink.bytes[countOffset + i] = raw[i] }
        }
    }

    mutating func encodeNil() throws {
        sink.bytes.append(0)
        added()
    }
    mutating func encode(_ value: Bool) throws {
        put(value)
        added()
    }
    mutating func encode(_ value: String) throws {
        put(value)
        added()
    }
    mutating func encode(_ value: Double) throws {
        put(value)
        added()
    }
    mutating func encode(_ value: Float) throws {
        put(value)
        added()
    }
    mutating func encode(_ value: Int) throws {
        put(value)
        added()
    }
    mutating func encode<T: Encodable>(_ value: T) throws {
        try sink.encodeValue(value)
        added()
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        added()
        return sink.container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        added()
        return sink.unkeyedContainer()
    }
    mutating func superEncoder() -> any Encoder { sink }
}

struct SingleBinaryEncoding: SingleValueEncodingContainer, BinaryPrimitiveEncoding {
    let sink: BinarySink
    var codingPath: [any CodingKey] { sink.codingPath }

    mutating func encodeNil() throws { sink.bytes.append(0) }
    mutating func encode(_ value: Bool) throws { put(value) }
    mutating func encode(_ value: String) throws { put(value) }
    mutating func encode(_ value: Double) throws { put(value) }
    mutating func encode(_ value: Float) throws { put(value) }
    mutating func encode(_ value: Int) throws { put(value) }
    mutating func encode(_ value: Int8) throws { put(value) }
    mutating func encode(_ value: Int16) throws { put(value) }
    mutating func encode(_ value: Int32) throws { put(value) }
    mutating func encode(_ value: Int64) throws { put(value) }
    mutating func encode(_ value: UInt) throws { put(value) }
    mutating func encode(_ value: UInt8) throws { put(value) }
    mutating func encode(_ value: UInt16) throws { put(value) }
    mutating func encode(_ value: UInt32) throws { put(value) }
    mutating func encode(_ value: UInt64) throws { put(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try sink.encodeValue(value) }
}

/// Lets the encoder see through `Optional` wherever it appears, and write a presence byte.
protocol OptionalEncodable {
    var wrappedEncodable: (any Encodable)? { get }
}

extension Optional: OptionalEncodable where Wrapped: Encodable {
    var wrappedEncodable: (any Encodable)? { self }
}

/// Dictionaries as `u32` count + (key, value) pairs.
protocol PairEncodable {
    func encodePairs(to sink: BinarySink) throws
}

extension Dictionary: PairEncodable where Key: Encodable, Value: Encodable {
    func encodePairs(to sink: BinarySink) throws {
        sink.append(UInt32(count))
        for (key, value) in self {
            try sink.encodeValue(key)
            try sink.encodeValue(value)
        }
    }
}
