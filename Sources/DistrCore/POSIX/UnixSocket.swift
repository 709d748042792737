@preconcurrency import Glibc
import CDistrSys

/// Connected pairs of Unix sockets, and messages that carry a descriptor (`SCM_RIGHTS`).
package enum UnixSocket {
    /// A byte stream, or packets whose boundaries are kept.
    package enum Kind: Sendable {
        case stream, seqpacket

        var type: Int32 {
            switch self {
            case .stream: Int32(SOCK_STREAM.rawValue)
            case .seqpacket: Int32(SOCK_SEQPACKET.rawValue)
            }
        }
    }

    /// A connected pair of close-on-exec Unix sockets. The corresponding C function is `socketpair`.
    /// - Throws: `SystemError` from `socketpair`.
    package static func pair(_ kind: Kind = .stream) throws(SystemError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        _ = try retryingEINTR("socketpair") { socketpair(AF_UNIX, kind.type | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) }
        return (fds[0], fds[1])
    }

    /// Sends `bytes` as one message, with `descriptor` attached unless it is -1 (the receiver
    /// gets its own copy; the caller still owns `descriptor`). The corresponding C function is `sendmsg`.
    /// - Throws: `SystemError` from `sendmsg`.
    package static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, passing descriptor: Int32 = -1) throws(SystemError) {
        _ = try retryingEINTR("sendmsg") { cdistr_send_fd(fd, descriptor, bytes.baseAddress, bytes.count) }
    }

    /// Receives one message into `buffer`: its length (0 at end of stream) and the descriptor
    /// that came with it (-1 if none; close-on-exec, owned by the caller).
    /// The corresponding C function is `recvmsg`.
    /// - Throws: `SystemError` from `recvmsg`.
    package static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> (count: Int, descriptor: Int32) {
        var descriptor: Int32 = -1
        let n = try retryingEINTR("recvmsg") { cdistr_recv_fd(fd, &descriptor, buffer.baseAddress, buffer.count) }
        return (n, descriptor)
    }
}

extension UnixSocket {
    /// The most descriptors one message carries.
    package static let maxPassedDescriptors = Int(CDISTR_MAX_PASSED_FDS)

    /// Sends `bytes` as one message with every descriptor in `descriptors` attached (at most
    /// `maxPassedDescriptors`; the caller still owns them). The corresponding C function is `sendmsg`.
    /// - Throws: `SystemError` from `sendmsg`.
    package static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, passingAll descriptors: [Int32]) throws(SystemError) {
        let count = Int32(min(descriptors.count, maxPassedDescriptors))
        _ = try retryingEINTR("sendmsg") { cdistr_send_fds(fd, descriptors, count, bytes.baseAddress, bytes.count) }
    }

    /// Receives one message into `buffer`: its length (0 at end of stream) and every descriptor
    /// that came with it, up to `maxPassedDescriptors` (close-on-exec, owned by the caller; any
    /// beyond the limit are closed). The corresponding C function is `recvmsg`.
    /// - Throws: `SystemError` from `recvmsg`.
    package static func receiveAll(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> (count: Int, descriptors: [Int32])
    {
        var descriptors = [Int32](repeating: -1, count: maxPassedDescriptors)
        let n = try retryingEINTR("recvmsg") { cdistr_recv_fds(fd, &descriptors, buffer.baseAddress, buffer.count) }
        return (n, descriptors.filter { $0 >= 0 })
    }
}

/// Calls any socket can take.
package enum Socket {
    /// Which direction `shutdown` ends.
    package enum Direction: Sendable {
        case read, write, both

        var how: Int32 {
            switch self {
            case .read: Int32(SHUT_RD)
            case .write: Int32(SHUT_WR)
            case .both: Int32(SHUT_RDWR)
            }
        }
    }

    /// Ends one or both directions: after `.write` the peer reads what was sent, then end of
    /// stream. The descriptor stays open. The corresponding C function is `shutdown`.
    /// - Throws: `SystemError` from `shutdown` (`ENOTCONN` when the peer has already gone).
    package static func shutdown(_ fd: Int32, _ direction: Direction) throws(SystemError) {
        _ = try retryingEINTR("shutdown") { Glibc.shutdown(fd, direction.how) }
    }
}
