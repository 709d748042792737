import Foundation
import Testing

@testable import DistrCore

@Suite struct CryptoTests {
    /// Both compressions: the C kernel with the SHA extensions (where the CPU has them) and the
    /// portable Swift code, which must agree on every vector.
    static let engines = [false, true]

    static func hash(_ bytes: [UInt8], portable: Bool) -> [UInt8] {
        var hasher = SHA256(portable: portable)
        hasher.update(bytes)
        return hasher.finalize()
    }

    // FIPS 180-4 examples (NIST CSRC "SHA256.pdf") and the classic long-message vectors.
    @Test(
        arguments: [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
            ),
            (
                "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
            ),
        ], engines)
    func sha256_matchesFIPSVectors(vector: (input: String, digest: String), portable: Bool) {
        #expect(Self.hash(Array(vector.input.utf8), portable: portable).hex == vector.digest)
        if !portable { #expect(SHA256.hash(Array(vector.input.utf8)).hex == vector.digest) }
    }

    @Test(arguments: engines) func sha256_millionAs_inUnevenChunks(portable: Bool) {
        var hasher = SHA256(portable: portable)
        let chunk = [UInt8](repeating: 0x61, count: 997)
        var left = 1_000_000
        while left > 0 {
            let n = min(left, chunk.count)
            hasher.update(chunk[0..<n])
            left -= n
        }
        #expect(hasher.finalize().hex == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Where the CPU has the SHA extensions the kernel must be the one in use (else the
    /// comparisons below would compare the portable code with itself).
    @Test func sha256_usesKernelWhereTheCPUHasSHAExtensions() throws {
        #if arch(x86_64)
            let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
            let flags = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") } ?? ""
            let words = Set(flags.split(separator: " "))
            let expected = words.contains("sha_ni") && words.contains("sse4_1") && words.contains("ssse3")
            #expect(SHA256.isAccelerated == expected)
        #else
            #expect(!SHA256.isAccelerated)
        #endif
    }

    /// Every length around the padding edges (55, 56, 63, 64, 119, 120 ...) in one update.
    @Test func sha256_kernelAndPortableAgree_onEveryLengthUpTo300() {
        var generator = SystemRandomNumberGenerator()
        for length in 0...300 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(Self.hash(bytes, portable: true) == Self.hash(bytes, portable: false), "length \(length)")
        }
    }

    /// Two hashes fed together (their common blocks through the two-way kernel) give what each
    /// gives alone, whatever the lengths and whatever each had pending before: lengths around the
    /// block edges, one much longer than the other, and one empty.
    @Test func sha256_pairUpdate_matchesTwoSeparateUpdates() {
        var generator = SystemRandomNumberGenerator()
        let heads = [0, 13, 63, 64, 100]
        let lengths = [0, 1, 51, 63, 64, 65, 127, 128, 1000, 4096, 70_001]
        for headA in heads {
            for lengthA in lengths {
                for (headB, lengthB) in [(13, 4096), (0, lengthA), (headA, lengthA + 64), (63, 0)] {
                    let bytes = (0..<headA + lengthA + headB + lengthB).map { _ in UInt8.random(in: 0...255, using: &generator) }
                    let (a, b) = (Array(bytes[0..<headA + lengthA]), Array(bytes[(headA + lengthA)...]))
                    var (first, second) = (SHA256(), SHA256())
                    first.update(a[0..<headA])
                    second.update(b[0..<headB])
                    a[headA...].withUnsafeBytes { tailA in
                        b[headB...].withUnsafeBytes { tailB in SHA256.update(&first, with: tailA, &second, with: tailB) }
                    }
                    let context = "heads \(headA) and \(headB), lengths \(lengthA) and \(lengthB)"
                    #expect(first.finalize() == Self.hash(a, portable: true), "first: \(context)")
                    #expect(second.finalize() == Self.hash(b, portable: true), "second: \(context)")
                }
            }
        }
    }

    /// 5 MB hashed whole and at random update() boundaries by both compressions; the digest is
    /// `sha256sum`'s for the same bytes.
    @Test func sha256_multiMegabyteBuffer_splitAtRandomBoundaries() {
        let bytes = (0..<5_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 / 251) }
        let expected = "404ca346a52f8bb5177d5f266142e48b8bfb2bc2bd1bf29e832c40f3f2f75c0d"
        var generator = SystemRandomNumberGenerator()
        for portable in Self.engines {
            #expect(Self.hash(bytes, portable: portable).hex == expected)
            var hasher = SHA256(portable: portable)
            var offset = 0
            while offset < bytes.count {
                let step = [
                    Int.random(in: 0...3, using: &generator), Int.random(in: 0...200, using: &generator),
                    Int.random(in: 0...70_000, using: &generator),
                ]
                let end = min(bytes.count, offset + step[Int.random(in: 0...2, using: &generator)])
                hasher.update(bytes[offset..<end])
                offset = end
            }
            #expect(hasher.finalize().hex == expected, "portable: \(portable)")
        }
    }

    // RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (case 5 is about truncation).
    @Test(arguments: [
        (
            String(repeating: "0b", count: 20), "4869205468657265",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        ),
        ("4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        (
            String(repeating: "aa", count: 20), String(repeating: "dd", count: 50),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"
        ),
        (
            "0102030405060708090a0b0c0d0e0f10111213141516171819", String(repeating: "cd", count: 50),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"
        ),
        (
            String(repeating: "aa", count: 131),
            "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048617368204b6579204669727374",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        ),
        (
            String(repeating: "aa", count: 131),
            "5468697320697320612074657374207573696e672061206c6172676572207468616e20626c6f636b2d73697a65206b657920616e642061206c6172676572207468616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565647320746f20626520686173686564206265666f7265206265696e6720757365642062792074686520484d414320616c676f726974686d2e",
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
        ),
    ])
    func hmac_matchesRFC4231(key: String, data: String, mac: String) throws {
        let k = try #require([UInt8](hex: key))
        let d = try #require([UInt8](hex: data))
        #expect(HMAC.authenticate(d, key: k).hex == mac)
    }

    @Test func constantTimeEqual_comparesContentAndLength() {
        #expect(constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEqual([1, 2, 3], [1, 2]))
        #expect(constantTimeEqual([], []))
    }

    @Test func hex_roundTripsAndRejectsBadInput() {
        #expect([UInt8](hex: "00ff10")! == [0, 255, 16])
        #expect([UInt8](hex: "0g") == nil)
        #expect([UInt8](hex: "abc") == nil)
        #expect([UInt8]([1, 171]).hex == "01ab")
    }
}
