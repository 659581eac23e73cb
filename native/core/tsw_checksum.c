/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-chunk CRC32 / CRC32C over whole packets (see tsw_checksum.h for the layout).
 *
 * CRC32C uses tsw_crc32c() from tsw_crc32c.c for odd chunks and, with SSE4.2, a local loop
 * that runs three full chunks side by side. CRC32 (IEEE), for clusters configured with
 * dfs.checksum.type=CRC32, folds with PCLMULQDQ when the CPU has it (buffers of 64 bytes or
 * more) and uses a slicing-by-8 table otherwise.
 */
#include <stdint.h>
#include <string.h>

#include "tsw/tsw_checksum.h"
#include "tsw/tsw_crc32c.h"
#include "tsw/tsw_status.h"

#define CRC32_POLY 0xedb88320u

/* ---- CRC32 (IEEE) --------------------------------------------------------------------------- */

static uint32_t crc32_table[8][256];

/* Built at load time so that concurrent first calls never see a half-filled table. */
__attribute__((constructor)) static void
crc32_init_tables(void)
{
	uint32_t i, j, c;

	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = (c >> 1) ^ (CRC32_POLY & (0u - (c & 1)));
		crc32_table[0][i] = c;
	}
	for (i = 0; i < 256; i++) {
		c = crc32_table[0][i];
		for (j = 1; j < 8; j++) {
			c = crc32_table[0][c & 0xff] ^ (c >> 8);
			crc32_table[j][i] = c;
		}
	}
}

/* Table CRC-32 without pre/post inversion: the building block of both paths. */
static uint32_t
crc32_table_raw(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t w;

	while (len && ((uintptr_t)p & 7)) {
		c = crc32_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
		len--;
	}
	while (len >= 8) {
		memcpy(&w, p, 8);
		w ^= c;
		c = crc32_table[7][w & 0xff] ^ crc32_table[6][(w >> 8) & 0xff] ^
		    crc32_table[5][(w >> 16) & 0xff] ^ crc32_table[4][(w >> 24) & 0xff] ^
		    crc32_table[3][(w >> 32) & 0xff] ^ crc32_table[2][(w >> 40) & 0xff] ^
		    crc32_table[1][(w >> 48) & 0xff] ^ crc32_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = crc32_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

#if defined(__x86_64__)
#include <wmmintrin.h>

/*
 * Carry-less multiplication folding (Intel, "Fast CRC Computation for Generic Polynomials
 * Using PCLMULQDQ", 2009), bit-reflected form. Four 128-bit lanes are folded 64 bytes at a
 * time, then into one lane, then 16 bytes at a time. The fold constants are x^n mod P for the
 * fold distances (512 +/- 32 and 128 +/- 32 bits), bit-reflected and shifted, as published
 * with that paper and used by the Linux kernel's crc32-pclmul.
 *
 * Instead of a Barrett reduction, the last 128-bit remainder is run through the table: it is
 * congruent to the message modulo P, so its CRC (from 0, no inversion) is the message's.
 */
#define CRC32_K1 0x154442bd4ull /* fold by 4 lanes, low qword */
#define CRC32_K2 0x1c6e41596ull /* fold by 4 lanes, high qword */
#define CRC32_K3 0x1751997d0ull /* fold by 1 lane, low qword */
#define CRC32_K4 0x0ccaa009eull /* fold by 1 lane, high qword */

__attribute__((target("pclmul,sse4.1"))) static inline __m128i
fold(__m128i x, __m128i k)
{
	return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

/* Requires len >= 64. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t
crc32_pclmul_raw(uint32_t c, const uint8_t *p, size_t len)
{
	const __m128i k12 = _mm_set_epi64x((long long)CRC32_K2, (long long)CRC32_K1);
	const __m128i k34 = _mm_set_epi64x((long long)CRC32_K4, (long long)CRC32_K3);
	__m128i x0, x1, x2, x3;
	uint8_t rest[16];

	x0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)c));
	x1 = _mm_loadu_si128((const __m128i *)(p + 16));
	x2 = _mm_loadu_si128((const __m128i *)(p + 32));
	x3 = _mm_loadu_si128((const __m128i *)(p + 48));
	p += 64;
	len -= 64;
	while (len >= 64) {
		x0 = _mm_xor_si128(fold(x0, k12), _mm_loadu_si128((const __m128i *)p));
		x1 = _mm_xor_si128(fold(x1, k12), _mm_loadu_si128((const __m128i *)(p + 16)));
		x2 = _mm_xor_si128(fold(x2, k12), _mm_loadu_si128((const __m128i *)(p + 32)));
		x3 = _mm_xor_si128(fold(x3, k12), _mm_loadu_si128((const __m128i *)(p + 48)));
		p += 64;
		len -= 64;
	}
	x0 = _mm_xor_si128(fold(x0, k34), x1);
	x0 = _mm_xor_si128(fold(x0, k34), x2);
	x0 = _mm_xor_si128(fold(x0, k34), x3);
	while (len >= 16) {
		x0 = _mm_xor_si128(fold(x0, k34), _mm_loadu_si128((const __m128i *)p));
		p += 16;
		len -= 16;
	}
	_mm_storeu_si128((__m128i *)rest, x0);
	c = crc32_table_raw(0, rest, sizeof(rest));
	return crc32_table_raw(c, p, len);
}

static int pclmul_state = -1;

static int
crc32_pclmul_available(void)
{
	if (pclmul_state < 0) {
		__builtin_cpu_init();
		pclmul_state = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
	}
	return pclmul_state;
}
#endif

uint32_t
tsw_crc32(uint32_t crc, const void *buf, size_t len)
{
#if defined(__x86_64__)
	if (len >= 64 && crc32_pclmul_available())
		return ~crc32_pclmul_raw(~crc, buf, len);
#endif
	return ~crc32_table_raw(~crc, buf, len);
}

/* ---- chunk kernels ------------------------------------------------------------------------ */

static inline void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t
get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#if defined(__x86_64__)
#include <nmmintrin.h>

/* CRC32C of three consecutive full chunks of `bpc` bytes starting at p. */
__attribute__((target("sse4.2"))) static void
crc32c_three_chunks(const uint8_t *p, size_t bpc, uint32_t out[3])
{
	const uint8_t *p0 = p, *p1 = p + bpc, *p2 = p + 2 * bpc;
	uint64_t c0 = 0xffffffffu, c1 = 0xffffffffu, c2 = 0xffffffffu, w0, w1, w2;
	size_t i;

	for (i = 0; i + 8 <= bpc; i += 8) {
		memcpy(&w0, p0 + i, 8);
		memcpy(&w1, p1 + i, 8);
		memcpy(&w2, p2 + i, 8);
		c0 = _mm_crc32_u64(c0, w0);
		c1 = _mm_crc32_u64(c1, w1);
		c2 = _mm_crc32_u64(c2, w2);
	}
	for (; i < bpc; i++) {
		c0 = _mm_crc32_u8((uint32_t)c0, p0[i]);
		c1 = _mm_crc32_u8((uint32_t)c1, p1[i]);
		c2 = _mm_crc32_u8((uint32_t)c2, p2[i]);
	}
	out[0] = ~(uint32_t)c0;
	out[1] = ~(uint32_t)c1;
	out[2] = ~(uint32_t)c2;
}
#define HAVE_THREE_CHUNKS 1
#else
#define HAVE_THREE_CHUNKS 0
#endif

/*
 * Checksums of up to three chunks starting at chunk `i`; returns how many were done (n).
 * Full chunks go three at a time when the CPU allows, everything else one at a time.
 */
static size_t
chunk_sums(int type, size_t bpc, const uint8_t *data, size_t len, size_t i, uint32_t out[3])
{
	size_t start = i * bpc, n = 0;

#if HAVE_THREE_CHUNKS
	if (type == TSW_CHECKSUM_CRC32C && len - start >= 3 * bpc && tsw_crc32c_hw_available()) {
		crc32c_three_chunks(data + start, bpc, out);
		return 3;
	}
#endif
	while (n < 3 && start < len) {
		size_t clen = len - start < bpc ? len - start : bpc;

		out[n++] = type == TSW_CHECKSUM_CRC32C ? tsw_crc32c(0, data + start, clen)
						       : tsw_crc32(0, data + start, clen);
		start += clen;
	}
	return n;
}

int
tsw_checksum_size(int type)
{
	switch (type) {
	case TSW_CHECKSUM_NULL:
		return 0;
	case TSW_CHECKSUM_CRC32:
	case TSW_CHECKSUM_CRC32C:
		return 4;
	}
	return TSW_EINVAL;
}

ssize_t
tsw_checksum_compute(int type, uint32_t bytes_per_checksum, const void *data, size_t len,
		     void *sums, size_t sums_len)
{
	size_t nchunks, i = 0, k, n;
	uint32_t out[3];
	uint8_t *s = sums;

	if (tsw_checksum_size(type) < 0 || bytes_per_checksum == 0)
		return TSW_EINVAL;
	nchunks = (len + bytes_per_checksum - 1) / bytes_per_checksum;
	if (type == TSW_CHECKSUM_NULL)
		return (ssize_t)nchunks;
	if (sums_len / 4 < nchunks)
		return TSW_ENOSPC;
	while (i < nchunks) {
		n = chunk_sums(type, bytes_per_checksum, data, len, i, out);
		for (k = 0; k < n; k++)
			put_be32(s + 4 * (i + k), out[k]);
		i += n;
	}
	return (ssize_t)nchunks;
}

ssize_t
tsw_checksum_verify(int type, uint32_t bytes_per_checksum, const void *data, size_t len,
		    const void *sums, size_t sums_len)
{
	size_t nchunks, i = 0, k, n;
	uint32_t out[3];
	const uint8_t *s = sums;
	int size = tsw_checksum_size(type);

	if (size < 0 || bytes_per_checksum == 0)
		return TSW_EINVAL;
	nchunks = (len + bytes_per_checksum - 1) / bytes_per_checksum;
	if (sums_len != nchunks * (size_t)size)
		return TSW_EINVAL;
	if (type == TSW_CHECKSUM_NULL)
		return (ssize_t)nchunks;
	while (i < nchunks) {
		n = chunk_sums(type, bytes_per_checksum, data, len, i, out);
		for (k = 0; k < n; k++)
			if (out[k] != get_be32(s + 4 * (i + k)))
				return (ssize_t)(i + k);
		i += n;
	}
	return (ssize_t)nchunks;
}
