/// Plain numeric types whose arrays travel as raw little-endian memory, with a type code on the
/// wire (see docs/messages.md).
public protocol RawNumeric: Codable, Sendable {
    static var wireCode: UInt8 { get }
}

extension Double: RawNumeric { public static var wireCode: UInt8 { 1 } }
extension Float: RawNumeric { public static var wireCode: UInt8 { 2 } }
extension Int: RawNumeric { public static var wireCode: UInt8 { 3 } }
extension Int64: RawNumeric { public static var wireCode: UInt8 { 4 } }
extension Int32: RawNumeric { public static var wireCode: UInt8 { 5 } }
extension Int16: RawNumeric { public static var wireCode: UInt8 { 6 } }
extension Int8: RawNumeric { public static var wireCode: UInt8 { 7 } }
extension UInt: RawNumeric { public static var wireCode: UInt8 { 8 } }
extension UInt64: RawNumeric { public static var wireCode: UInt8 { 9 } }
extension UInt32: RawNumeric { public static var wireCode: UInt8 { 10 } }
extension UInt16: RawNumeric { public static var wireCode: UInt8 { 11 } }
extension UInt8: RawNumeric { public static var wireCode: UInt8 { 12 } }

/// An array of a `RawNumeric` type, seen without its element type.
public protocol RawNumericArray: Codable, Sendable {
    static var elementCode: UInt8 { get }
    static var elementSize: Int { get }
    var elementCount: Int { get }
    func appendRawBytes(to bytes: inout [UInt8])
    func withRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
    /// Builds the array from raw little-endian memory; nil when the size is not a multiple.
    static func fromRawBytes(_ bytes: UnsafeRawBufferPointer) -> Self?
    /// An array of `count` elements whose memory `fill` writes (false: give up, nil result).
    static func filled(count: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Bool) -> Self?
    /// An array of `count` elements whose bytes are written later (plain numbers need no
    /// initialisation before that).
    static func uninitialized(count: Int) -> Self
    mutating func withMutableRawBytes<R>(_ body: (UnsafeMutableRawBufferPointer) -> R) -> R
}

/// The array types the wire's element codes stand for.
enum RawNumericTypes {
    static let byCode: [UInt8: any RawNumericArray.Type] = [
        1: [Double].self, 2: [Float].self, 3: [Int].self, 4: [Int64].self, 5: [Int32].self, 6: [Int16].self,
        7: [Int8].self, 8: [UInt].self, 9: [UInt64].self, 10: [UInt32].self, 11: [UInt16].self, 12: [UInt8].self,
    ]
}

extension Array: RawNumericArray where Element: RawNumeric {
    public static var elementCode: UInt8 { Element.wireCode }
    public static var elementSize: Int { MemoryLayout<Element>.stride }
    public var elementCount: Int { count }

    public func appendRawBytes(to bytes: inout [UInt8]) { withUnsafeBytes { bytes.append(contentsOf: $0) } }

    public func withRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try withUnsafeBytes(body) }

    public static func uninitialized(count: Int) -> [Element] {
        [Element](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
    }

    public mutating func withMutableRawBytes<R>(_ body: (UnsafeMutableRawBufferPointer) -> R) -> R {
        withUnsafeMutableBytes(body)
    }

    public static func filled(count: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Bool) -> [Element]? {
        var ok = true
        let array = [Element](unsafeUninitializedCapacity: count) { buffer, initialized in
            ok = fill(UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
        return ok ? array : nil
    }

    public static func fromRawBytes(_ bytes: UnsafeRawBufferPointer) -> [Element]? {
        let size = MemoryLayout<Element>.stride
        guard bytes.count % size == 0 else { return nil }
        let count = bytes.count / size
        return [Element](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { UnsafeMutableRawBufferPointer(buffer).copyMemory(from: bytes) }
            initialized = count
        }
    }
}
