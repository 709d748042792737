/// Appends big-endian integers and length-prefixed fields to a byte array.
package struct ByteWriter: Sendable {
    package private(set) var bytes: [UInt8] = []

    package init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    package mutating func u8(_ v: UInt8) { bytes.append(v) }
    package mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }
    package mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    package mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    package mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    package mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    package mutating func int(_ v: Int) { i64(Int64(v)) }
    package mutating func raw(_ v: [UInt8]) { bytes.append(contentsOf: v) }
    package mutating func raw(_ v: UnsafeRawBufferPointer) { bytes.append(contentsOf: v) }
    /// A u32 length, then the bytes.
    package mutating func data(_ v: [UInt8]) {
        u32(UInt32(v.count))
        bytes.append(contentsOf: v)
    }
    package mutating func string(_ v: String) { data(Array(v.utf8)) }
    package mutating func strings(_ v: [String]) {
        u32(UInt32(v.count))
        for s in v { string(s) }
    }
}

/// Reads what `ByteWriter` wrote; every read checks the remaining length first, so a short or
/// hostile input is an error, never a crash.
package struct ByteReader {
    let bytes: [UInt8]
    package private(set) var offset: Int

    package init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    package var remaining: Int { bytes.count - offset }
    package var isAtEnd: Bool { offset == bytes.count }

    mutating func take(_ n: Int) throws(WireError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= remaining else { throw .truncated }
        defer { offset += n }
        return bytes[offset..<offset + n]
    }

    private mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(WireError) -> T {
        let slice = try take(MemoryLayout<T>.size)
        return slice.reduce(T.zero) { $0 << 8 | T($1) }
    }

    package mutating func u8() throws(WireError) -> UInt8 { try integer(UInt8.self) }
    package mutating func bool() throws(WireError) -> Bool { try u8() != 0 }
    package mutating func u16() throws(WireError) -> UInt16 { try integer(UInt16.self) }
    package mutating func u32() throws(WireError) -> UInt32 { try integer(UInt32.self) }
    package mutating func u64() throws(WireError) -> UInt64 { try integer(UInt64.self) }
    package mutating func i64() throws(WireError) -> Int64 { Int64(bitPattern: try u64()) }
    package mutating func int() throws(WireError) -> Int { Int(try i64()) }
    package mutating func raw(_ n: Int) throws(WireError) -> [UInt8] { Array(try take(n)) }
    package mutating func data() throws(WireError) -> [UInt8] { try raw(Int(try u32())) }
    package mutating func string() throws(WireError) -> String { String(decoding: try data(), as: UTF8.self) }
    /// A count-prefixed list; the count is checked against what is left, so it cannot force a huge allocation.
    package mutating func count(elementSize: Int = 1) throws(WireError) -> Int {
        let n = Int(try u32())
        guard n <= remaining / max(1, elementSize) else { throw .truncated }
        return n
    }
    package mutating func strings() throws(WireError) -> [String] {
        let n = try count(elementSize: 4)
        var out: [String] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try string()) }
        return out
    }
}
