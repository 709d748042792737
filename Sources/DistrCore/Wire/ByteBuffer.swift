/// Appends big-endian integers and length-prefixed fields to a byte array.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    public mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    public mutating func int(_ v: Int) { i64(Int64(v)) }
    public mutating func raw(_ v: [UInt8]) { bytes.append(contentsOf: v) }
    public mutating func raw(_ v: UnsafeRawBufferPointer) { bytes.append(contentsOf: v) }
    /// A u32 length, then the bytes.
    public mutating func data(_ v: [UInt8]) {
        u32(UInt32(v.count))
        bytes.append(contentsOf: v)
    }
    public mutating func string(_ v: String) { data(Array(v.utf8)) }
    public mutating func strings(_ v: [String]) {
        u32(UInt32(v.count))
        for s in v { string(s) }
    }
}

/// Reads what `ByteWriter` wrote; every read checks the remaining length first, so a short or
/// hostile input is an error, never a crash.
public struct ByteReader {
    let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset == bytes.count }

    mutating func take(_ n: Int) throws(WireError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= remaining else { throw .truncated }
        defer { offset += n }
        return bytes[offset..<offset + n]
    }

    private mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(WireError) -> T {
        let slice = try take(MemoryLayout<T>.size)
        return slice.reduce(T.zero) { $0 << 8 | T($1) }
    }

    public mutating func u8() throws(WireError) -> UInt8 { try integer(UInt8.self) }
    public mutating func bool() throws(WireError) -> Bool { try u8() != 0 }
    public mutating func u16() throws(WireError) -> UInt16 { try integer(UInt16.self) }
    public mutating func u32() throws(WireError) -> UInt32 { try integer(UInt32.self) }
    public mutating func u64() throws(WireError) -> UInt64 { try integer(UInt64.self) }
    public mutating func i64() throws(WireError) -> Int64 { Int64(bitPattern: try u64()) }
    public mutating func int() throws(WireError) -> Int { Int(try i64()) }
    public mutating func raw(_ n: Int) throws(WireError) -> [UInt8] { Array(try take(n)) }
    public mutating func data() throws(WireError) -> [UInt8] { try raw(Int(try u32())) }
    public mutating func string() throws(WireError) -> String { String(decoding: try data(), as: UTF8.self) }
    /// A count-prefixed list; the count is checked against what is left, so it cannot force a huge allocation.
    public mutating func count(elementSize: Int = 1) throws(WireError) -> Int {
        let n = Int(try u32())
        guard n <= remaining / max(1, elementSize) else { throw .truncated }
        return n
    }
    public mutating func strings() throws(WireError) -> [String] {
        let n = try count(elementSize: 4)
        var out: [String] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try string()) }
        return out
    }
}
