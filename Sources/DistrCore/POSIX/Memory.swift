@preconcurrency import Glibc
import CDistrSys

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

extension Memory {
    /// The index of the first `byte` in `buffer` at or after `start`, or nil. The corresponding
    /// C function is `memchr` (vectorised: output is scanned for line ends at memory speed).
    package static func firstIndex(of byte: UInt8, in buffer: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard start < buffer.count, let base = buffer.baseAddress else { return nil }
        guard let found = memchr(base + start, Int32(byte), buffer.count - start) else { return nil }
        return UnsafeRawPointer(found) - base
    }
}

extension Memory {
    /// Copies `source` to the start of `destination` (which must hold it) without reading the
    /// destination's lines into the cache first (non-temporal stores on x86-64, `memcpy`
    /// elsewhere): for large copies whose result is not read again soon. The corresponding C
    /// function is `cdistr_copy_streaming` (the C target).
    package static func copyStreaming(_ source: UnsafeRawBufferPointer, to destination: UnsafeMutableRawBufferPointer) {
        precondition(source.count <= destination.count, "streaming copy into a smaller buffer")
        guard let from = source.baseAddress, let to = destination.baseAddress else { return }
        cdistr_copy_streaming(to, from, source.count)
    }
}

extension Memory {
    /// Whether `a` and `b` hold the same bytes. The corresponding C function is `memcmp`
    /// (`==` on two `[UInt8]` compares element by element, several times slower on large arrays).
    package static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        guard a.count > 0, let first = a.baseAddress, let second = b.baseAddress else { return true }
        return memcmp(first, second, a.count) == 0
    }

    /// The offset of the first occurrence of a non-empty `needle` in `haystack`, or nil: `memchr`
    /// for its first byte, then `memcmp` (glibc's `memmem` is not in Swift's Glibc module).
    /// `String.contains` of a string compares characters, graphemes and all, far slower.
    package static func firstOffset(of needle: UnsafeRawBufferPointer, in haystack: UnsafeRawBufferPointer) -> Int? {
        guard let base = haystack.baseAddress, let pattern = needle.baseAddress, let lead = needle.first else { return nil }
        var from = 0
        while let at = firstIndex(of: lead, in: haystack, from: from), at + needle.count <= haystack.count {
            if memcmp(base + at, pattern, needle.count) == 0 { return at }
            from = at + 1
        }
        return nil
    }
}
