@preconcurrency import Glibc
import CDistrSys

/// Reading another process's memory directly (cross-memory attach): one copy from its pages
/// into ours, with no shared buffer in between. The kernel allows it when this process may
/// ptrace the other (same user, and under Yama's `ptrace_scope` 1 only a descendant or a process
/// that named this one with `PR_SET_PTRACER`); otherwise it fails with `EPERM`.
package enum ProcessMemory {
    /// Copies `destination.count` bytes from `address` in process `pid` into `destination`,
    /// in as many calls as the kernel needs. The corresponding C function is `process_vm_readv`.
    /// - Throws: `SystemError` from `process_vm_readv` (`EPERM`: not allowed, `ESRCH`: no such
    ///   process, `EFAULT`: the range is not mapped there, `ENOSYS`: no such call), or with
    ///   errno `EFAULT` when the remote range ends early.
    package static func read(from pid: Int32, address: UInt64, into destination: UnsafeMutableRawBufferPointer) throws(SystemError) {
        guard let base = destination.baseAddress else { return }
        try inPieces("process_vm_readv", count: destination.count, address: address) { done, start in
            cdistr_read_process_memory(pid, base + done, destination.count - done, start)
        }
    }

    /// Copies `source` to `address` in process `pid`, in as many calls as the kernel needs. The
    /// corresponding C function is `process_vm_writev`; the kernel pins the remote pages, so a
    /// destination in huge pages costs far less than one in 4 KiB pages.
    /// - Throws: `SystemError` as `read` does.
    package static func write(to pid: Int32, address: UInt64, from source: UnsafeRawBufferPointer) throws(SystemError) {
        guard let base = source.baseAddress else { return }
        try inPieces("process_vm_writev", count: source.count, address: address) { done, start in
            cdistr_write_process_memory(pid, base + done, source.count - done, start)
        }
    }

    /// Runs `step(done, remote address)` until `count` bytes are copied, retrying EINTR.
    private static func inPieces(_ call: String, count: Int, address: UInt64, _ step: (Int, UInt64) -> Int) throws(SystemError) {
        var done = 0
        while done < count {
            let (start, overflow) = address.addingReportingOverflow(UInt64(done))
            if overflow { throw SystemError(call, errno: EFAULT) }
            let copied = try retryingEINTR(call) { step(done, start) }
            // Nothing copied: the next remote byte is not mapped (a partial copy stops there).
            if copied == 0 { throw SystemError(call, errno: EFAULT) }
            done += copied
        }
    }

    /// True for the errors that mean "not allowed here" rather than "no such memory": no
    /// permission (`EPERM`, Yama), no such call (`ENOSYS`), no such process in this pid namespace
    /// (`ESRCH`). The caller falls back to another way of copying.
    package static func isRefusal(_ error: SystemError) -> Bool {
        error.errno == EPERM || error.errno == ENOSYS || error.errno == ESRCH
    }

    /// A word at a fixed address of this process, random per process: a reader checks that the
    /// process it reads from holds the value it was told, so that a pid seen from another pid
    /// namespace never makes it read an unrelated process.
    package static let identity: Identity = {
        let value = UInt64.random(in: 1...UInt64.max)
        // Never freed or written again: other processes read it for as long as this one runs.
        let word = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        word.initialize(to: value)
        return Identity(value: value, address: UInt64(UInt(bitPattern: word)))
    }()

    package struct Identity: Sendable {
        package var value: UInt64
        package var address: UInt64
    }
}
