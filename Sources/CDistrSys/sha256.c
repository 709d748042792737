// SHA-256 block compression with the x86 SHA extensions (SHA-NI). Only the compression of whole
// blocks lives here; padding, buffering and the portable fallback are Swift (Crypto/SHA256.swift).
// The function carries its own target attribute, so the rest of the target builds without -msha
// and runs on CPUs without the extensions; cdistr_sha256_available() says whether to call it.
#include "CDistrSHA256.h"

// The round constants (FIPS 180-4, 4.2.2), also used by the portable Swift code.
static const uint32_t k256[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

const uint32_t *cdistr_sha256_constants(void) { return k256; }

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

#if __has_include(<sys/platform/x86.h>)
#include <sys/platform/x86.h>
#endif

int cdistr_sha256_available(void) {
#if defined(CPU_FEATURE_PRESENT)
    // glibc (2.33 and later) read CPUID once at start-up and keeps the answers: asking it costs
    // nothing, where every CPUID instruction in a virtual machine is a trip to the hypervisor
    // (5.6 us each on the development VM; this check took four, about 30 us of every start of
    // distr-master, which is on a launch's way).
    return CPU_FEATURE_PRESENT(SSSE3) && CPU_FEATURE_PRESENT(SSE4_1) && CPU_FEATURE_PRESENT(SHA);
#else
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    int ssse3 = (ecx >> 9) & 1, sse41 = (ecx >> 19) & 1;
    // Leaf 7 may not exist on old CPUs: __get_cpuid_count checks the maximum leaf first.
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    int sha = (ebx >> 29) & 1;
    return ssse3 && sse41 && sha;
#endif
}


// The kernels are written out round by round: the message words stay in four registers (a loop
// over an array of them kept them in memory and ran about 20% slower).

// Converts the state words to the ABEF / CDGH layout sha256rnds2 works on, and back.
#define SHA_LOAD(state, abef, cdgh)                                                                  \
    do {                                                                                           \
        __m128i dcba_ = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&(state)[0]), 0xB1);    \
        cdgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&(state)[4]), 0x1B);             \
        abef = _mm_alignr_epi8(dcba_, cdgh, 8);                                                    \
        cdgh = _mm_blend_epi16(cdgh, dcba_, 0xF0);                                                 \
    } while (0)
#define SHA_STORE(state, abef, cdgh)                                                                 \
    do {                                                                                           \
        __m128i feba_ = _mm_shuffle_epi32(abef, 0x1B);                                             \
        __m128i dchg_ = _mm_shuffle_epi32(cdgh, 0xB1);                                             \
        _mm_storeu_si128((__m128i *)&(state)[0], _mm_blend_epi16(feba_, dchg_, 0xF0));             \
        _mm_storeu_si128((__m128i *)&(state)[4], _mm_alignr_epi8(dchg_, feba_, 8));                \
    } while (0)
// Four rounds (4i .. 4i+3) with the message words m.
#define SHA_ROUNDS(abef, cdgh, m, i)                                                                 \
    do {                                                                                           \
        __m128i wk_ = _mm_add_epi32(m, _mm_load_si128((const __m128i *)&k256[4 * (i)]));           \
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk_);                                             \
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk_, 0x0E));                    \
    } while (0)
// The next four message words, into a: W[t..t+3] = W[t-16] + s0(W[t-15]) + W[t-7] + s1(W[t-2]),
// where a, b, c, d hold W[t-16 ..], W[t-12 ..], W[t-8 ..], W[t-4 ..].
#define SHA_SCHEDULE(a, b, c, d)                                                                     \
    do {                                                                                           \
        a = _mm_sha256msg1_epu32(a, b);                                                            \
        a = _mm_add_epi32(a, _mm_alignr_epi8(d, c, 4));                                            \
        a = _mm_sha256msg2_epu32(a, d);                                                            \
    } while (0)
// The message words of the block at p, big-endian.
#define SHA_MESSAGE(p, m0, m1, m2, m3)                                                               \
    do {                                                                                           \
        m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 0)), byteswap);              \
        m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 16)), byteswap);             \
        m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 32)), byteswap);             \
        m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 48)), byteswap);             \
    } while (0)
// Rounds 16..63 of one block: twelve times the next message words and four rounds on them.
#define SHA_ROUNDS_16_TO_63(abef, cdgh, m0, m1, m2, m3)                                              \
    do {                                                                                           \
        for (int q = 4; q < 16; q += 4) {                                                          \
            SHA_SCHEDULE(m0, m1, m2, m3);                                                          \
            SHA_ROUNDS(abef, cdgh, m0, q);                                                         \
            SHA_SCHEDULE(m1, m2, m3, m0);                                                          \
            SHA_ROUNDS(abef, cdgh, m1, q + 1);                                                     \
            SHA_SCHEDULE(m2, m3, m0, m1);                                                          \
            SHA_ROUNDS(abef, cdgh, m2, q + 2);                                                     \
            SHA_SCHEDULE(m3, m0, m1, m2);                                                          \
            SHA_ROUNDS(abef, cdgh, m3, q + 3);                                                     \
        }                                                                                          \
    } while (0)

__attribute__((target("sha,sse4.1,ssse3"))) void cdistr_sha256_blocks(uint32_t state[8], const uint8_t *data,
                                                                        size_t blocks) {
    // Big-endian words: reverse the bytes of each 32-bit lane.
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i abef, cdgh;
    SHA_LOAD(state, abef, cdgh);
    for (; blocks > 0; blocks--, data += 64) {
        const __m128i abef0 = abef, cdgh0 = cdgh;
        __m128i m0, m1, m2, m3;
        SHA_MESSAGE(data, m0, m1, m2, m3);
        SHA_ROUNDS(abef, cdgh, m0, 0);
        SHA_ROUNDS(abef, cdgh, m1, 1);
        SHA_ROUNDS(abef, cdgh, m2, 2);
        SHA_ROUNDS(abef, cdgh, m3, 3);
        SHA_ROUNDS_16_TO_63(abef, cdgh, m0, m1, m2, m3);
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }
    SHA_STORE(state, abef, cdgh);
}

// Two independent hashes at once. sha256rnds2 has a latency of several cycles but issues every
// one or two, so one chain leaves the unit idle most of the time: interleaving the rounds of two
// chains nearly doubles the bytes hashed per cycle (HMACs of two frames, checked or made together).
__attribute__((target("sha,sse4.1,ssse3"))) void cdistr_sha256_blocks2(uint32_t state_a[8], const uint8_t *data_a,
                                                                         uint32_t state_b[8], const uint8_t *data_b,
                                                                         size_t blocks) {
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i abef_a, cdgh_a, abef_b, cdgh_b;
    SHA_LOAD(state_a, abef_a, cdgh_a);
    SHA_LOAD(state_b, abef_b, cdgh_b);
    for (; blocks > 0; blocks--, data_a += 64, data_b += 64) {
        const __m128i abef_a0 = abef_a, cdgh_a0 = cdgh_a, abef_b0 = abef_b, cdgh_b0 = cdgh_b;
        __m128i a0, a1, a2, a3, b0, b1, b2, b3;
        SHA_MESSAGE(data_a, a0, a1, a2, a3);
        SHA_MESSAGE(data_b, b0, b1, b2, b3);
        SHA_ROUNDS(abef_a, cdgh_a, a0, 0);
        SHA_ROUNDS(abef_b, cdgh_b, b0, 0);
        SHA_ROUNDS(abef_a, cdgh_a, a1, 1);
        SHA_ROUNDS(abef_b, cdgh_b, b1, 1);
        SHA_ROUNDS(abef_a, cdgh_a, a2, 2);
        SHA_ROUNDS(abef_b, cdgh_b, b2, 2);
        SHA_ROUNDS(abef_a, cdgh_a, a3, 3);
        SHA_ROUNDS(abef_b, cdgh_b, b3, 3);
        for (int q = 4; q < 16; q += 4) {
            SHA_SCHEDULE(a0, a1, a2, a3);
            SHA_SCHEDULE(b0, b1, b2, b3);
            SHA_ROUNDS(abef_a, cdgh_a, a0, q);
            SHA_ROUNDS(abef_b, cdgh_b, b0, q);
            SHA_SCHEDULE(a1, a2, a3, a0);
            SHA_SCHEDULE(b1, b2, b3, b0);
            SHA_ROUNDS(abef_a, cdgh_a, a1, q + 1);
            SHA_ROUNDS(abef_b, cdgh_b, b1, q + 1);
            SHA_SCHEDULE(a2, a3, a0, a1);
            SHA_SCHEDULE(b2, b3, b0, b1);
            SHA_ROUNDS(abef_a, cdgh_a, a2, q + 2);
            SHA_ROUNDS(abef_b, cdgh_b, b2, q + 2);
            SHA_SCHEDULE(a3, a0, a1, a2);
            SHA_SCHEDULE(b3, b0, b1, b2);
            SHA_ROUNDS(abef_a, cdgh_a, a3, q + 3);
            SHA_ROUNDS(abef_b, cdgh_b, b3, q + 3);
        }
        abef_a = _mm_add_epi32(abef_a, abef_a0);
        cdgh_a = _mm_add_epi32(cdgh_a, cdgh_a0);
        abef_b = _mm_add_epi32(abef_b, abef_b0);
        cdgh_b = _mm_add_epi32(cdgh_b, cdgh_b0);
    }
    SHA_STORE(state_a, abef_a, cdgh_a);
    SHA_STORE(state_b, abef_b, cdgh_b);
}

#else

// No kernel for this architecture: Swift's portable code does the work.
int cdistr_sha256_available(void) { return 0; }

void cdistr_sha256_blocks(uint32_t state[8], const uint8_t *data, size_t blocks) {
    (void)state;
    (void)data;
    (void)blocks;
}

void cdistr_sha256_blocks2(uint32_t state_a[8], const uint8_t *data_a, uint32_t state_b[8], const uint8_t *data_b,
                           size_t blocks) {
    (void)state_a;
    (void)data_a;
    (void)state_b;
    (void)data_b;
    (void)blocks;
}

#endif
