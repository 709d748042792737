// A large copy whose destination is not read again soon (a broadcast's copy of the root's array):
// non-temporal stores write it without first reading each destination line into the cache.
// glibc switches its memcpy to such stores only above a threshold it derives from the cache size
// the CPU reports (192 MiB on the VMs measured, which report 256 MiB of shared cache), so an
// 8 MB copy went through the cache: 4.9-5.4 ms for an 8-rank broadcast of 8 MB against 4.3 with
// the threshold at 1 MiB (docs/performance.md, "Session 22").
#include "CDistrSys.h"

#include <string.h>

#if defined(__x86_64__)
#include <emmintrin.h>

void cdistr_copy_streaming(void *destination, const void *source, size_t count) {
    unsigned char *to = destination;
    const unsigned char *from = source;
    // Up to the first 16-byte boundary of the destination the usual way (stores must be aligned).
    size_t head = (16 - ((uintptr_t)to & 15)) & 15;
    if (head > count) head = count;
    memcpy(to, from, head);
    to += head;
    from += head;
    count -= head;
    while (count >= 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)from);
        __m128i b = _mm_loadu_si128((const __m128i *)(from + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(from + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(from + 48));
        _mm_stream_si128((__m128i *)to, a);
        _mm_stream_si128((__m128i *)(to + 16), b);
        _mm_stream_si128((__m128i *)(to + 32), c);
        _mm_stream_si128((__m128i *)(to + 48), d);
        to += 64;
        from += 64;
        count -= 64;
    }
    // The streamed stores are ordered before anything this thread stores next (the answer
    // that tells another process the copy is done).
    _mm_sfence();
    memcpy(to, from, count);
}

#else

void cdistr_copy_streaming(void *destination, const void *source, size_t count) { memcpy(destination, source, count); }

#endif
