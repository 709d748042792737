@preconcurrency import Glibc

/// An error number a system call left in `errno`, with the names code outside POSIX tests for.
///
/// Code outside `POSIX/` compares a `SystemError`'s `code` with these (`error.code == .exists`)
/// instead of importing Glibc for `EEXIST`. Modelled on swift-system's `Errno`.
package struct Errno: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    package let rawValue: Int32

    package init(rawValue: Int32) { self.rawValue = rawValue }

    /// `EINTR`: a signal arrived before the call did anything (helpers retry it, except `close`).
    package static let interrupted = Errno(rawValue: EINTR)
    /// `EAGAIN` (= `EWOULDBLOCK` on Linux): a nonblocking call would have had to wait.
    package static let wouldBlock = Errno(rawValue: EAGAIN)
    /// `EPIPE`: writing to a pipe or socket whose reader has gone.
    package static let brokenPipe = Errno(rawValue: EPIPE)
    /// `ECONNREFUSED`: nothing listens at that address (or a firewall rejects it).
    package static let connectionRefused = Errno(rawValue: ECONNREFUSED)
    /// `ECONNRESET`: the peer reset the connection.
    package static let connectionReset = Errno(rawValue: ECONNRESET)
    /// `EEXIST`: the name is already taken.
    package static let exists = Errno(rawValue: EEXIST)
    /// `ENOENT`: no such file or directory.
    package static let noSuchFile = Errno(rawValue: ENOENT)
    /// `ENOTDIR`: a path component is not a directory.
    package static let notDirectory = Errno(rawValue: ENOTDIR)
    /// `ENOTEMPTY`: a directory that must be empty is not (`rename` onto a directory with entries).
    package static let directoryNotEmpty = Errno(rawValue: ENOTEMPTY)
    /// `ELOOP`: a symlink where `O_NOFOLLOW` forbids one (or too many levels of them).
    package static let tooManySymbolicLinks = Errno(rawValue: ELOOP)
    /// `EBADF`: not an open descriptor.
    package static let badFileDescriptor = Errno(rawValue: EBADF)
    /// `EACCES`: permission denied.
    package static let permissionDenied = Errno(rawValue: EACCES)
    /// `ETIMEDOUT`: a wait with a time limit ran out.
    package static let timedOut = Errno(rawValue: ETIMEDOUT)
    /// `EINVAL`: an invalid argument.
    package static let invalidArgument = Errno(rawValue: EINVAL)
    /// `ENOSYS`: the call is not implemented (here, or for this file).
    package static let notImplemented = Errno(rawValue: ENOSYS)
    /// `EPERM`: the operation is not permitted.
    package static let notPermitted = Errno(rawValue: EPERM)
    /// `EFAULT`: an address outside the memory the process has mapped.
    package static let badAddress = Errno(rawValue: EFAULT)
    /// `EMFILE`: this process has as many descriptors open as it may.
    package static let tooManyOpenFiles = Errno(rawValue: EMFILE)
    /// `ENFILE`: the system has as many files open as it may.
    package static let tooManyOpenFilesInSystem = Errno(rawValue: ENFILE)

    /// True when no descriptor could be had (`EMFILE`, `ENFILE`): waiting may help.
    package var isOutOfDescriptors: Bool { self == .tooManyOpenFiles || self == .tooManyOpenFilesInSystem }

    /// True when the peer of a pipe or socket has gone (`EPIPE`, `ECONNRESET`).
    package var isPeerGone: Bool { self == .brokenPipe || self == .connectionReset }

    /// The C name, `EAGAIN`, or `errno 123` for one not listed here.
    package var name: String {
        switch rawValue {
        case EINTR: "EINTR"
        case EAGAIN: "EAGAIN"
        case EPIPE: "EPIPE"
        case ECONNRESET: "ECONNRESET"
        case ECONNREFUSED: "ECONNREFUSED"
        case EEXIST: "EEXIST"
        case ENOENT: "ENOENT"
        case ENOTDIR: "ENOTDIR"
        case ENOTEMPTY: "ENOTEMPTY"
        case EISDIR: "EISDIR"
        case ELOOP: "ELOOP"
        case EBADF: "EBADF"
        case EACCES: "EACCES"
        case EPERM: "EPERM"
        case EFAULT: "EFAULT"
        case ETIMEDOUT: "ETIMEDOUT"
        case EINVAL: "EINVAL"
        case ENOSYS: "ENOSYS"
        case EMFILE: "EMFILE"
        case ENOSPC: "ENOSPC"
        case ENOTSOCK: "ENOTSOCK"
        case EINPROGRESS: "EINPROGRESS"
        case ESRCH: "ESRCH"
        case ECHILD: "ECHILD"
        default: "errno \(rawValue)"
        }
    }

    /// The text `strerror` gives ("No such file or directory").
    package var reason: String { String(cString: strerror(rawValue)) }

    /// `ENOENT (No such file or directory)`.
    package var description: String { "\(name) (\(reason))" }
}

extension SystemError {
    /// The error number as an `Errno`, to compare with `.wouldBlock`, `.exists`, ...
    package var code: Errno { Errno(rawValue: errno) }

    /// A failure of `call` with `code`, for a call that did not set `errno` itself.
    package init(_ call: String, code: Errno) { self.init(call, errno: code.rawValue) }
}
