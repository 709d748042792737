@preconcurrency import Glibc
import CDistrSys

/// A memory segment mapped shared into this process: a `memfd` that another process maps too
/// (it travels as a descriptor over a Unix socket). The mapping lives as long as this object.
///
/// Anything the other process writes here is untrusted: readers copy what they need out with
/// the accessors below and check it before use.
package final class SharedMemory: @unchecked Sendable {
    // @unchecked: `base` is a fixed mapping that is never remapped while the object lives; every
    // access to the shared words goes through the atomic accessors, and bulk copies are ordered
    // by them (release/acquire on the ring indices).
    package let base: UnsafeMutableRawPointer
    package let size: Int

    /// Creates an anonymous segment of `size` bytes (zero-filled) and returns its descriptor
    /// (close-on-exec, owned by the caller). The corresponding C functions are `memfd_create` and
    /// `ftruncate`.
    /// - Throws: `SystemError` from either.
    package static func create(size: Int, name: String = "distr-ring") throws(SystemError) -> Int32 {
        let fd = try retryingEINTR("memfd_create") { cdistr_memfd_create(name) }
        do {
            _ = try retryingEINTR("ftruncate") { ftruncate(fd, off_t(size)) }
        } catch {
            FD.close(fd)
            throw error
        }
        return fd
    }

    /// Maps the whole segment `fd` refers to (its size from `fstat`, between `minimumSize` and
    /// `maximumSize`). The descriptor is not needed afterwards. `readOnly`: for reading only, with
    /// every page mapped at once (a reader that copies all of it would fault each page in).
    /// The corresponding C function is `mmap`.
    /// - Throws: `SystemError` from `fstat` or `mmap` (`EINVAL` when the size is out of range or
    ///   the descriptor is not a regular file).
    package init(mapping fd: Int32, minimumSize: Int, maximumSize: Int, readOnly: Bool = false) throws(SystemError) {
        let status = try FileStatus(descriptor: fd)
        guard status.kind == .regular, status.size >= minimumSize, status.size <= maximumSize else {
            throw SystemError("mmap", errno: EINVAL)
        }
        let protection = readOnly ? PROT_READ : PROT_READ | PROT_WRITE
        let pointer = mmap(nil, status.size, protection, readOnly ? MAP_SHARED | MAP_POPULATE : MAP_SHARED, fd, 0)
        guard let pointer, pointer != MAP_FAILED else { throw .current("mmap") }
        base = pointer
        size = status.size
    }

    deinit { munmap(base, size) }
}

/// Atomic accesses to words in memory another process shares (the C11 ones, through the C target).
package enum SharedWord {
    @inline(__always)
    package static func loadAcquire(_ base: UnsafeMutableRawPointer, _ offset: Int) -> UInt64 {
        cdistr_load_acquire_u64((base + offset).assumingMemoryBound(to: UInt64.self))
    }

    @inline(__always)
    package static func storeRelease(_ base: UnsafeMutableRawPointer, _ offset: Int, _ value: UInt64) {
        cdistr_store_release_u64((base + offset).assumingMemoryBound(to: UInt64.self), value)
    }

    @inline(__always)
    package static func load32(_ base: UnsafeMutableRawPointer, _ offset: Int) -> UInt32 {
        cdistr_load_u32((base + offset).assumingMemoryBound(to: UInt32.self))
    }

    @inline(__always)
    package static func store32(_ base: UnsafeMutableRawPointer, _ offset: Int, _ value: UInt32) {
        cdistr_store_u32((base + offset).assumingMemoryBound(to: UInt32.self), value)
    }

    @inline(__always)
    package static func exchange32(_ base: UnsafeMutableRawPointer, _ offset: Int, _ value: UInt32) -> UInt32 {
        cdistr_exchange_u32((base + offset).assumingMemoryBound(to: UInt32.self), value)
    }

    /// A full fence between this process's stores and its later loads.
    @inline(__always)
    package static func fence() { cdistr_fence() }

    /// The CPU's spin-wait hint (`pause`).
    @inline(__always)
    package static func pause() { cdistr_spin_pause() }

    /// Sleeps while the 32-bit word at `offset` holds `expected`, until `wake` is called on it
    /// (from any process mapping it) or `timeout` seconds pass; returns at once when the word
    /// differs. Returns early on a signal too: callers look at what they wait for again. The
    /// corresponding C function is `futex` (`FUTEX_WAIT`, shared).
    package static func wait(_ base: UnsafeMutableRawPointer, _ offset: Int, while expected: UInt32, timeout: Double) {
        let nanoseconds = Int64(max(0, min(timeout, 86_400)) * 1e9)
        // Every outcome (woken, EAGAIN, ETIMEDOUT, EINTR) means "look again"; none is an error.
        _ = cdistr_futex_wait((base + offset).assumingMemoryBound(to: UInt32.self), expected, nanoseconds)
    }

    /// Wakes the threads waiting on the word at `offset`. The corresponding C function is `futex`
    /// (`FUTEX_WAKE`, shared).
    package static func wake(_ base: UnsafeMutableRawPointer, _ offset: Int) {
        // Fails only for a bad address, which a mapped segment is not; no waiter is not a failure.
        _ = cdistr_futex_wake((base + offset).assumingMemoryBound(to: UInt32.self), Int32.max)
    }
}
