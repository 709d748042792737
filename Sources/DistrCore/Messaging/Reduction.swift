/// How `reduce` and `allReduce` combine two values. The built-in operations work on numbers and,
/// element by element, on arrays of numbers; `.custom` takes any associative closure.
///
/// Like MPI's operations, a custom closure must be associative, and commutative when the root is
/// not rank 0 (ranks are combined in tree order, which rotates with the root).
public struct Reduction<T: Sendable>: Sendable {
    public let combine: @Sendable (T, T) -> T
    /// Element-wise operations on arrays can be split into chunks (ring algorithm for large arrays).
    let elementwise: Bool

    public init(_ combine: @escaping @Sendable (T, T) -> T) {
        self.combine = combine
        elementwise = false
    }

    init(elementwise: Bool, _ combine: @escaping @Sendable (T, T) -> T) {
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
    public static var sum: Reduction { Reduction(elementwise: true) { $0.combined(with: $1, .add) } }
    public static var product: Reduction { Reduction(elementwise: true) { $0.combined(with: $1, .multiply) } }
    public static var min: Reduction { Reduction(elementwise: true) { $0.combined(with: $1, .minimum) } }
    public static var max: Reduction { Reduction(elementwise: true) { $0.combined(with: $1, .maximum) } }
}
