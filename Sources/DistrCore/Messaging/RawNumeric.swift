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

    /// The element-wise loops for each element code.
    static let kernels: [UInt8: any ElementwiseKernel.Type] = [
        1: Double.self, 2: Float.self, 3: Int.self, 4: Int64.self, 5: Int32.self, 6: Int16.self,
        7: Int8.self, 8: UInt.self, 9: UInt64.self, 10: UInt32.self, 11: UInt16.self, 12: UInt8.self,
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

/// Element-wise loops over raw memory, compiled for each concrete numeric type. A loop over a
/// generic `Numeric` element calls witness functions for every element (copy, `+`, destroy):
/// that was most of the time of a 1M-double `allReduce`. Each conformance below gets its own
/// specialized, vectorizable copy of the loops.
protocol ElementwiseKernel: Sendable {
    /// `out[i] = a[i] ⊕ b[i]` for `i < count`, in that operand order. `out` may be `a` or `b`
    /// (in place); the memory holds elements of this type.
    static func combine(
        _ operation: ElementwiseOperation, _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer,
        count: Int)
}

extension ElementwiseKernel where Self: Numeric & Comparable {
    static func combine(
        _ operation: ElementwiseOperation, _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer,
        count: Int
    ) {
        let stride = MemoryLayout<Self>.stride
        precondition(a.count >= count * stride && b.count >= count * stride && out.count >= count * stride, "element-wise operands too short")
        guard count > 0, let x = a.baseAddress, let y = b.baseAddress, let o = out.baseAddress else { return }
        let lhs = x.assumingMemoryBound(to: Self.self)
        let rhs = y.assumingMemoryBound(to: Self.self)
        let result = o.assumingMemoryBound(to: Self.self)
        switch operation {
        case .add: for i in 0..<count { result[i] = lhs[i] + rhs[i] }
        case .multiply: for i in 0..<count { result[i] = lhs[i] * rhs[i] }
        case .minimum: for i in 0..<count { result[i] = Swift.min(lhs[i], rhs[i]) }
        case .maximum: for i in 0..<count { result[i] = Swift.max(lhs[i], rhs[i]) }
        }
    }
}

extension Double: ElementwiseKernel {}
extension Float: ElementwiseKernel {}
extension Int: ElementwiseKernel {}
extension Int64: ElementwiseKernel {}
extension Int32: ElementwiseKernel {}
extension Int16: ElementwiseKernel {}
extension Int8: ElementwiseKernel {}
extension UInt: ElementwiseKernel {}
extension UInt64: ElementwiseKernel {}
extension UInt32: ElementwiseKernel {}
extension UInt16: ElementwiseKernel {}
extension UInt8: ElementwiseKernel {}
