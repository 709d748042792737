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

    private static let k: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]

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
            SHA256.k.withUnsafeBufferPointer { k in
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
