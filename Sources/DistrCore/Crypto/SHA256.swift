import CDistrSys

/// SHA-256 (FIPS 180-4), incremental. Used for bundle digests, HMAC and key derivation.
///
/// Whole blocks go to the C kernel that uses the x86 SHA extensions when the CPU has them
/// (`isAccelerated`, decided once by CPUID), else to the portable Swift compression below. Both
/// are checked against the same FIPS 180-4 vectors and against each other.
package struct SHA256: Sendable {
    package static let digestSize = 32
    package static let blockSize = 64

    /// Whether this CPU runs the SHA-extension kernel (x86-64 with SHA, SSSE3 and SSE4.1).
    package static let isAccelerated = cdistr_sha256_available() != 0

    private var state: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19
    )
    /// The bytes of an unfinished block, inline: hashing allocates nothing, and copying a hasher
    /// (HMAC does per frame) copies no heap buffer.
    private var pending: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    private var pendingCount = 0
    private var totalBytes: UInt64 = 0
    private let usesKernel: Bool

    package init() { usesKernel = Self.isAccelerated }

    /// - Parameter portable: true forces the pure-Swift compression even where the kernel runs
    ///   (tests compare the two).
    package init(portable: Bool) { usesKernel = !portable && Self.isAccelerated }

    package mutating func update<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        let done: Void? = bytes.withContiguousStorageIfAvailable { update(UnsafeRawBufferPointer($0)) }
        if done == nil { Array(bytes).withUnsafeBytes { update($0) } }
    }

    package mutating func update(_ buffer: UnsafeRawBufferPointer) {
        guard var base = buffer.baseAddress else { return }
        var count = buffer.count
        totalBytes &+= UInt64(count)
        if pendingCount > 0 {
            let take = min(64 - pendingCount, count)
            let start = pendingCount
            withUnsafeMutableBytes(of: &pending) { $0.baseAddress!.advanced(by: start).copyMemory(from: base, byteCount: take) }
            pendingCount += take
            base += take
            count -= take
            guard pendingCount == 64 else { return }
            compressPending()
        }
        if count >= 64 {
            compress(base, blocks: count / 64)
            base += count & ~63
            count &= 63
        }
        if count > 0 {
            withUnsafeMutableBytes(of: &pending) { $0.baseAddress!.copyMemory(from: base, byteCount: count) }
            pendingCount = count
        }
    }

    /// Feeds `a` to `first` and `b` to `second`, exactly as `first.update(a)` and
    /// `second.update(b)` would, but compresses the blocks the two have in common together
    /// (`cdistr_sha256_blocks2`): one hash chain leaves the SHA unit idle between its rounds,
    /// two fill it, so two frames' MACs cost little more than one.
    package static func update(
        _ first: inout SHA256, with a: UnsafeRawBufferPointer, _ second: inout SHA256, with b: UnsafeRawBufferPointer
    ) {
        guard first.usesKernel, second.usesKernel, var baseA = a.baseAddress, var baseB = b.baseAddress else {
            first.update(a)
            second.update(b)
            return
        }
        // First the bytes that complete an unfinished block, one hash at a time.
        let leadA = first.pendingCount > 0 ? min(64 - first.pendingCount, a.count) : 0
        let leadB = second.pendingCount > 0 ? min(64 - second.pendingCount, b.count) : 0
        first.update(UnsafeRawBufferPointer(start: baseA, count: leadA))
        second.update(UnsafeRawBufferPointer(start: baseB, count: leadB))
        baseA += leadA
        baseB += leadB
        var (countA, countB) = (a.count - leadA, b.count - leadB)
        if first.pendingCount == 0, second.pendingCount == 0 {
            let blocks = min(countA, countB) / 64
            if blocks > 0 {
                withUnsafeMutableBytes(of: &first.state) { stateA in
                    withUnsafeMutableBytes(of: &second.state) { stateB in
                        cdistr_sha256_blocks2(
                            stateA.baseAddress!.assumingMemoryBound(to: UInt32.self), baseA.assumingMemoryBound(to: UInt8.self),
                            stateB.baseAddress!.assumingMemoryBound(to: UInt32.self), baseB.assumingMemoryBound(to: UInt8.self), blocks)
                    }
                }
                first.totalBytes &+= UInt64(blocks * 64)
                second.totalBytes &+= UInt64(blocks * 64)
                baseA += blocks * 64
                baseB += blocks * 64
                countA -= blocks * 64
                countB -= blocks * 64
            }
        }
        first.update(UnsafeRawBufferPointer(start: baseA, count: countA))
        second.update(UnsafeRawBufferPointer(start: baseB, count: countB))
    }

    package mutating func finalize() -> [UInt8] {
        let bitLength = totalBytes &* 8
        let marker = pendingCount
        withUnsafeMutableBytes(of: &pending) { raw in
            raw[marker] = 0x80
            for i in (marker + 1)..<64 { raw[i] = 0 }
        }
        if marker >= 56 {
            compressPending()
            pending = (0, 0, 0, 0, 0, 0, 0, 0)
        }
        pending.7 = bitLength.bigEndian
        compressPending()
        var out = [UInt8]()
        out.reserveCapacity(32)
        for word in [state.0, state.1, state.2, state.3, state.4, state.5, state.6, state.7] {
            withUnsafeBytes(of: word.bigEndian) { out.append(contentsOf: $0) }
        }
        return out
    }

    package static func hash<Bytes: Sequence>(_ bytes: Bytes) -> [UInt8] where Bytes.Element == UInt8 {
        var hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalize()
    }

    package static func hash(_ buffer: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(buffer)
        return hasher.finalize()
    }

    /// Compresses the full pending block and empties it.
    private mutating func compressPending() {
        var block = pending  // A copy: `compress` mutates `self`, which holds `pending`.
        withUnsafeBytes(of: &block) { compress($0.baseAddress!, blocks: 1) }
        pendingCount = 0
    }

    /// Compresses `blocks` whole 64-byte blocks at `data` into the state.
    private mutating func compress(_ data: UnsafeRawPointer, blocks: Int) {
        if usesKernel {
            withUnsafeMutableBytes(of: &state) { words in
                cdistr_sha256_blocks(words.baseAddress!.assumingMemoryBound(to: UInt32.self), data.assumingMemoryBound(to: UInt8.self), blocks)
            }
            return
        }
        for i in 0..<blocks { compressPortable(data + 64 * i) }
    }

    /// The round constants (FIPS 180-4, 4.2.2): the C target's table, one for both compressions.
    private static var k: UnsafeBufferPointer<UInt32> { UnsafeBufferPointer(start: cdistr_sha256_constants(), count: 64) }

    /// The portable compression of one block (FIPS 180-4, 6.2.2).
    private mutating func compressPortable(_ block: UnsafeRawPointer) {
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            for i in 0..<16 {
                w[i] = UInt32(bigEndian: block.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
            }
            for i in 16..<64 {
                let s0 = w[i - 15].rotatedRight(7) ^ w[i - 15].rotatedRight(18) ^ (w[i - 15] >> 3)
                let s1 = w[i - 2].rotatedRight(17) ^ w[i - 2].rotatedRight(19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, h) = state
            do {
                let k = SHA256.k
                for i in 0..<64 {
                    let s1 = e.rotatedRight(6) ^ e.rotatedRight(11) ^ e.rotatedRight(25)
                    let ch = (e & f) ^ (~e & g)
                    let t1 = h &+ s1 &+ ch &+ k[i] &+ w[i]
                    let s0 = a.rotatedRight(2) ^ a.rotatedRight(13) ^ a.rotatedRight(22)
                    let maj = (a & b) ^ (a & c) ^ (b & c)
                    let t2 = s0 &+ maj
                    h = g
                    g = f
                    f = e
                    e = d &+ t1
                    d = c
                    c = b
                    b = a
                    a = t1 &+ t2
                }
            }
            state = (
                state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d,
                state.4 &+ e, state.5 &+ f, state.6 &+ g, state.7 &+ h
            )
        }
    }
}

extension UInt32 {
    @inline(__always) fileprivate func rotatedRight(_ n: UInt32) -> UInt32 { (self >> n) | (self << (32 - n)) }
}
