/// How `reduce` and `allReduce` combine two values. The built-in operations work on numbers and,
/// element by element, on arrays of numbers; `.custom` takes any associative closure.
///
/// Like MPI's operations, a custom closure must be associative, and commutative when the root is
/// not rank 0 (ranks are combined in tree order, which rotates with the root).
public struct Reduction<T: Sendable>: Sendable {
    public let combine: @Sendable (T, T) -> T
    /// The built-in element-wise operation on arrays, if this is one: it can be split into chunks
    /// (ring algorithm for large arrays) and run in place on raw memory.
    let elementwise: ElementwiseOperation?

    public init(_ combine: @escaping @Sendable (T, T) -> T) {
        self.combine = combine
        elementwise = nil
    }

    init(elementwise: ElementwiseOperation, _ combine: @escaping @Sendable (T, T) -> T) {
        self.combine = combine
        self.elementwise = elementwise
    }

    public static func custom(_ combine: @escaping @Sendable (T, T) -> T) -> Reduction { Reduction(combine) }
}

extension Reduction where T: AdditiveArithmetic {
    public static var sum: Reduction { Reduction { $0 + $1 } }
}

extension Reduction where T: Numeric {
    public static var product: Reduction { Reduction { $0 * $1 } }
}

extension Reduction where T: Comparable {
    public static var min: Reduction { Reduction { Swift.min($0, $1) } }
    public static var max: Reduction { Reduction { Swift.max($0, $1) } }
}

/// Arrays of numbers combined element by element.
public protocol ElementwiseArithmetic {
    func combined(with other: Self, _ operation: ElementwiseOperation) -> Self
}

public enum ElementwiseOperation: Sendable {
    case add, multiply, minimum, maximum
}

extension Array: ElementwiseArithmetic where Element: Numeric & Comparable {
    /// Arrays should have the same length on every rank; a shorter one is treated as if it
    /// ended early (the longer array's elements are kept).
    public func combined(with other: [Element], _ operation: ElementwiseOperation) -> [Element] {
        let shared = Swift.min(count, other.count)
        if let kernel = Element.self as? any ElementwiseKernel.Type {
            let longer = count >= other.count ? self : other
            return [Element](unsafeUninitializedCapacity: longer.count) { out, initialized in
                withUnsafeBytes { a in
                    other.withUnsafeBytes { b in
                        let o = UnsafeMutableRawBufferPointer(out)
                        kernel.combine(operation, a, b, into: o, count: shared)
                        longer.withUnsafeBytes { tail in
                            let from = shared * MemoryLayout<Element>.stride
                            UnsafeMutableRawBufferPointer(rebasing: o[from...]).copyMemory(from: UnsafeRawBufferPointer(rebasing: tail[from...]))
                        }
                    }
                }
                initialized = longer.count
            }
        }
        var out = count >= other.count ? self : other
        withUnsafeBufferPointer { a in
            other.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { o in
                    switch operation {
                    case .add: for i in 0..<shared { o[i] = a[i] + b[i] }
                    case .multiply: for i in 0..<shared { o[i] = a[i] * b[i] }
                    case .minimum: for i in 0..<shared { o[i] = Swift.min(a[i], b[i]) }
                    case .maximum: for i in 0..<shared { o[i] = Swift.max(a[i], b[i]) }
                    }
                }
            }
        }
        return out
    }
}

extension Reduction where T: ElementwiseArithmetic {
    public static var sum: Reduction { Reduction(elementwise: .add) { $0.combined(with: $1, .add) } }
    public static var product: Reduction { Reduction(elementwise: .multiply) { $0.combined(with: $1, .multiply) } }
    public static var min: Reduction { Reduction(elementwise: .minimum) { $0.combined(with: $1, .minimum) } }
    public static var max: Reduction { Reduction(elementwise: .maximum) { $0.combined(with: $1, .maximum) } }
}
