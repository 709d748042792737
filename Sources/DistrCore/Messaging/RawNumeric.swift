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

/// An array of a `RawNumeric` type, seen without its element type. A value of another
/// conforming type travels as raw memory too, but only `Array`'s memory is offered to other
/// processes (by `send`, Node+OfferedSends.swift, and by broadcast and allReduce,
/// Node+ArrayCollectives.swift): the sender holds on to an `Array`, whose bytes a later change
/// by the caller never touches (the change copies them), which a type with reference semantics
/// would not promise.
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

/// A received numeric array on its way to the receive that takes it (a frame step, a claim, an
/// envelope in the mailbox), held by reference. `any RawNumericArray` is an opaque existential:
/// a struct or enum that holds one directly is address-only, and every copy, move and
/// destruction of it, or of an `Optional` of it, goes through the runtime's value witnesses
/// (callgrind counted some 2,000 instructions of those per same-node round trip; see
/// docs/performance.md). A class reference is copied with a retain.
final class HeldArray: Sendable {
    let value: any RawNumericArray
    init(_ value: any RawNumericArray) { self.value = value }
}

extension RawNumericArray {
    /// The array's size in bytes, the one way every path computes it. (On an
    /// `any RawNumericArray`, `type(of:)` would ask the runtime for the dynamic type; a method
    /// sees its own type.)
    var rawByteCount: Int { elementCount * Self.elementSize }
    /// The wire's code of the element type, seen as `rawByteCount` sees the size.
    var rawElementCode: UInt8 { Self.elementCode }
}

/// The array types the wire's element codes stand for.
enum RawNumericTypes {
    /// Each array type by its element code (each element type names its own code).
    static let byCode: [UInt8: any RawNumericArray.Type] = Dictionary(uniqueKeysWithValues: arrayTypes.map { ($0.elementCode, $0) })

    /// The size of one element of `code`'s type; nil for a code the format does not define.
    /// A switch rather than a look-up in `byCode`: the receive path asks for every frame.
    static func elementSize(code: UInt8) -> Int? {
        switch code {
        case 1, 3, 4, 8, 9: 8
        case 2, 5, 10: 4
        case 6, 11: 2
        case 7, 12: 1
        default: nil
        }
    }

    /// An array of `code`'s type with `count` elements whose bytes are written later, made by
    /// that type's own code: through `byCode` the call would run unspecialized generic code (type
    /// metadata looked up at run time) for every message.
    static func uninitialized(code: UInt8, count: Int) -> (any RawNumericArray)? {
        struct Make: ArrayTypeVisitor {
            let count: Int
            func visit<A: RawNumericArray>(_: A.Type) -> any RawNumericArray { A.uninitialized(count: count) }
        }
        return visit(code: code, Make(count: count))
    }

    /// An array of `code`'s type holding a copy of `bytes` (a whole number of elements, checked
    /// by the caller), made like `uninitialized(code:count:)`.
    static func copy(code: UInt8, of bytes: UnsafeRawBufferPointer) -> (any RawNumericArray)? {
        struct Copy: ArrayTypeVisitor {
            let bytes: UnsafeRawBufferPointer
            func visit<A: RawNumericArray>(_: A.Type) -> (any RawNumericArray)? { A.fromRawBytes(bytes) }
        }
        return visit(code: code, Copy(bytes: bytes)) ?? nil
    }

    /// Runs `visitor` with the array type of `code` (nil for a code the format does not define).
    /// Each case names its type, so the visitor's code is compiled for each.
    static func visit<V: ArrayTypeVisitor>(code: UInt8, _ visitor: V) -> V.Result? {
        switch code {
        case 1: visitor.visit([Double].self)
        case 2: visitor.visit([Float].self)
        case 3: visitor.visit([Int].self)
        case 4: visitor.visit([Int64].self)
        case 5: visitor.visit([Int32].self)
        case 6: visitor.visit([Int16].self)
        case 7: visitor.visit([Int8].self)
        case 8: visitor.visit([UInt].self)
        case 9: visitor.visit([UInt64].self)
        case 10: visitor.visit([UInt32].self)
        case 11: visitor.visit([UInt16].self)
        case 12: visitor.visit([UInt8].self)
        default: nil
        }
    }

    /// `value` as a numeric array, when it is an array of one of the element types: found by
    /// comparing type metadata, where `value as? any RawNumericArray` looks up a protocol
    /// conformance at run time on every send (several times the work).
    static func array<T>(_ value: T) -> (any RawNumericArray)? {
        func exactly<A: RawNumericArray>(_: A.Type) -> (any RawNumericArray)? { T.self == A.self ? unsafeBitCast(value, to: A.self) : nil }
        for type in arrayTypes {
            if let array = exactly(type) { return array }
        }
        return nil
    }

    /// Whether `array` is an `Array` of one of the element types (a value type).
    static func isArray(_ array: any RawNumericArray) -> Bool { isArrayType(type(of: array)) }

    /// Whether `type` is `Array` of one of the element types.
    static func isArrayType(_ type: any RawNumericArray.Type) -> Bool {
        byCode[type.elementCode].map { ObjectIdentifier($0) == ObjectIdentifier(type) } ?? false
    }

    /// Every array type the wire defines, the likeliest first.
    static let arrayTypes: [any RawNumericArray.Type] = [
        [UInt8].self, [Double].self, [Float].self, [Int].self, [Int64].self, [Int32].self, [Int16].self, [Int8].self, [UInt].self,
        [UInt64].self, [UInt32].self, [UInt16].self,
    ]

    /// Whether `array`'s very type is `type` (a comparison of type metadata, where a dynamic
    /// cast walks the runtime's cast machinery).
    static func isExactly<A: RawNumericArray>(_ array: A, _ type: Any.Type) -> Bool {
        ObjectIdentifier(A.self) == ObjectIdentifier(type)
    }

    /// `array` as a `T`, which `isExactly` said is its type.
    static func unsafeCast<T, A: RawNumericArray>(_ array: A, to _: T.Type) -> T {
        precondition(isExactly(array, T.self), "unsafeCast of \(A.self) to \(T.self)")
        return unsafeBitCast(array, to: T.self)
    }

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
        // Aligned bytes (always, for bytes; the common case for the rest) are copied by
        // `Array(UnsafeBufferPointer)`, whose storage the compiler allocates inline with its type
        // known. `init(unsafeUninitializedCapacity:)` calls the standard library's unspecialized
        // allocator, which looks the storage type's metadata up at run time: 816 instructions
        // against 420 for an 8-byte array (callgrind, this toolchain), on every receive.
        if let base = bytes.baseAddress, Int(bitPattern: base) % MemoryLayout<Element>.alignment == 0 {
            return bytes.withMemoryRebound(to: Element.self) { Array($0) }
        }
        return [Element](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { UnsafeMutableRawBufferPointer(buffer).copyMemory(from: bytes) }
            initialized = count
        }
    }
}

/// Something done with the array type of an element code (`RawNumericTypes.visit`).
protocol ArrayTypeVisitor {
    associatedtype Result
    func visit<A: RawNumericArray>(_ type: A.Type) -> Result
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
