@preconcurrency import Glibc

/// A failed system call: which call, and the `errno` it left.
package struct SystemError: Error, CustomStringConvertible, Equatable, Sendable {
    package var call: String
    package var errno: Int32

    package init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    /// Builds the error from the current `errno`; call it right after the failing call.
    static func current(_ call: String) -> SystemError {
        SystemError(call, errno: Glibc.errno)
    }

    package var description: String {
        "\(call): \(String(cString: strerror(errno)))"
    }
}

/// Runs `body` until it stops failing with EINTR; returns its result or throws `SystemError`.
/// Never use it for `close`: Linux releases the descriptor even when `close` reports EINTR.
@inline(__always)
func retryingEINTR<T: BinaryInteger>(_ call: String, _ body: () -> T) throws(SystemError) -> T {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        throw SystemError(call, errno: code)
    }
}

extension SystemError {
    /// The errno text alone ("No such file or directory").
    package var reason: String { String(cString: strerror(errno)) }
}
