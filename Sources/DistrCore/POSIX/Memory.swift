@preconcurrency import Glibc

/// Hints to the kernel about memory distr fills.
package enum Memory {
    /// Asks for transparent huge pages over the 2 MiB-aligned part of `target`, when it spans at
    /// least four of them. Large fresh buffers would otherwise take a page fault every 4 KiB as a
    /// socket fills them; huge pages cut that 512-fold where the kernel allows it. A refusal
    /// changes nothing but speed, so it is not reported. The corresponding C function is `madvise`.
    package static func preferHugePages(_ target: UnsafeMutableRawBufferPointer) {
        let huge = 2 << 20
        guard target.count >= 4 * huge, let base = target.baseAddress else { return }
        let first = (Int(bitPattern: base) + huge - 1) & ~(huge - 1)
        let last = (Int(bitPattern: base) + target.count) & ~(huge - 1)
        if last > first, let pointer = UnsafeMutableRawPointer(bitPattern: first) {
            _ = madvise(pointer, last - first, MADV_HUGEPAGE)
        }
    }
}
