/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-chunk CRC32 / CRC32C over whole packets (see tsw_checksum.h for the layout).
 *
 * CRC32C uses tsw_crc32c() from tsw_crc32c.c for odd chunks and, with SSE4.2, a local loop
 * that runs three full chunks side by side. CRC32 (IEEE) is a slicing-by-8 table: it exists
 * for clusters configured with dfs.checksum.type=CRC32 and is not on the default path.
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

uint32_t
tsw_crc32(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;
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
	return ~c;
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
