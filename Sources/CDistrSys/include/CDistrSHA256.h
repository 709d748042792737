#ifndef CDISTRSHA256_H
#define CDISTRSHA256_H

#include <stddef.h>
#include <stdint.h>

/// The 64 round constants of SHA-256 (FIPS 180-4, 4.2.2), shared with the portable code.
const uint32_t *cdistr_sha256_constants(void);

/// 1 when this CPU can run `cdistr_sha256_blocks` (x86-64 with the SHA extensions, SSSE3 and
/// SSE4.1; checked with CPUID), else 0: the caller then uses its portable code.
int cdistr_sha256_available(void);

/// The SHA-256 compression function (FIPS 180-4, 6.2.2) applied to `blocks` consecutive 64-byte
/// blocks at `data` (any alignment), updating the eight state words in place. Only to be called
/// when `cdistr_sha256_available()` returned 1.
void cdistr_sha256_blocks(uint32_t state[8], const uint8_t *data, size_t blocks);

/// `cdistr_sha256_blocks` on two independent states at once, `blocks` blocks of each: about
/// twice the throughput of two calls, as the rounds of one hash fill the other's latency.
void cdistr_sha256_blocks2(uint32_t state_a[8], const uint8_t *data_a, uint32_t state_b[8], const uint8_t *data_b,
                           size_t blocks);

#endif
