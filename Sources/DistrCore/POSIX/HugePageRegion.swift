@preconcurrency import Glibc

/// Private anonymous memory that starts on a 2 MiB boundary and asks for transparent huge pages
/// over its whole length: another process copies out of it with `process_vm_readv` about twice
/// as fast as out of 4 KiB pages (the kernel pins one huge page where it would pin 512 small
/// ones). The mapping lives as long as this object.
package final class HugePageRegion: @unchecked Sendable {
    // @unchecked: `bytes` is a fixed mapping, never remapped while the object lives; whoever
    // holds the object decides who writes it (one broadcast at a time, see BroadcastStaging).
    package let bytes: UnsafeMutableRawBufferPointer
    private let mapping: UnsafeMutableRawPointer
    private let mappedCount: Int

    static let hugePage = 2 << 20

    /// Maps at least `byteCount` bytes (a whole number of huge pages). The corresponding C
    /// functions are `mmap` and `madvise`; a refused `madvise` leaves small pages (only slower).
    /// - Throws: `SystemError` from `mmap` (`ENOMEM`), or `EINVAL` for a size that overflows.
    package init(byteCount: Int) throws(SystemError) {
        let huge = Self.hugePage
        let (rounded, overflow) = byteCount.addingReportingOverflow(huge - 1)
        guard byteCount > 0, !overflow, rounded < Int.max - huge else { throw SystemError("mmap", errno: EINVAL) }
        let length = rounded & ~(huge - 1)
        // One huge page more than needed, so that a 2 MiB-aligned start lies inside.
        mappedCount = length + huge
        let pointer = mmap(nil, mappedCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let pointer, pointer != MAP_FAILED else { throw .current("mmap") }
        mapping = pointer
        let start = (Int(bitPattern: pointer) + huge - 1) & ~(huge - 1)
        let base = pointer + (start - Int(bitPattern: pointer))
        _ = madvise(base, length, MADV_HUGEPAGE)
        bytes = UnsafeMutableRawBufferPointer(start: base, count: length)
    }

    deinit { munmap(mapping, mappedCount) }
}
