import CDistrSys

/// An epoll instance watching descriptors for read readiness (and hang-up). It owns its own
/// descriptor; the watched ones stay their owners'. Event data is the watched descriptor itself.
/// The corresponding C functions are `epoll_create1`, `epoll_ctl` and `epoll_wait`.
package final class Epoll: Sendable {
    package let descriptor: FileDescriptor

    /// - Throws: `SystemError` from `epoll_create1`.
    package init() throws(SystemError) {
        descriptor = FileDescriptor(adopting: try retryingEINTR("epoll_create1") { cdistr_epoll_create() })
    }

    /// Starts watching `fd` (armed).
    /// - Throws: `SystemError` from `epoll_ctl`.
    package func add(_ fd: Int32) throws(SystemError) {
        _ = try retryingEINTR("epoll_ctl") { cdistr_epoll_add(descriptor.rawValue, fd) }
    }

    /// Arms or silences `fd`: a silenced descriptor stays registered but wakes no one.
    /// - Throws: `SystemError` from `epoll_ctl` (`.noSuchFile` when `fd` is not registered).
    @inline(__always)
    package func setArmed(_ fd: Int32, _ armed: Bool) throws(SystemError) {
        _ = try retryingEINTR("epoll_ctl") { cdistr_epoll_arm(descriptor.rawValue, fd, armed ? 1 : 0) }
    }

    /// Stops watching `fd`.
    /// - Throws: `SystemError` from `epoll_ctl`.
    package func remove(_ fd: Int32) throws(SystemError) {
        _ = try retryingEINTR("epoll_ctl") { cdistr_epoll_del(descriptor.rawValue, fd) }
    }

    /// Waits until a watched descriptor is ready, or `timeout` milliseconds pass (-1: forever),
    /// retrying EINTR; fills the start of `ready` (at most 64) and returns how many.
    /// - Throws: `SystemError` from `epoll_wait`.
    package func wait(into ready: inout [Int32], timeout: Int32 = -1) throws(SystemError) -> Int {
        let capacity = Int32(min(ready.count, 64))
        let n = try ready.withUnsafeMutableBufferPointer { buffer throws(SystemError) in
            try retryingEINTR("epoll_wait") { cdistr_epoll_wait(descriptor.rawValue, buffer.baseAddress, capacity, timeout) }
        }
        return Int(n)
    }
}
