/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MD5 per RFC 1321: 64-byte blocks, four rounds of sixteen steps, little-endian words.
 * Written for short inputs (server names, keys): one pass, no streaming context.
 */
#include <string.h>

#include "tsw/tsw_md5.h"

/* Step constants: floor(abs(sin(i + 1)) * 2^32), RFC 1321 section 3.4. */
static const uint32_t md5_k[64] = {
	0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee,
	0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
	0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
	0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
	0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa,
	0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
	0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
	0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
	0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
	0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
	0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05,
	0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
	0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039,
	0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
	0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
	0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

/* Per-round rotation amounts, RFC 1321 section 3.4. */
static const uint8_t md5_r[4][4] = {
	{ 7, 12, 17, 22 }, { 5, 9, 14, 20 }, { 4, 11, 16, 23 }, { 6, 10, 15, 21 },
};

static inline uint32_t
rotl32(uint32_t x, unsigned int n)
{
	return (x << n) | (x >> (32 - n));
}

static void
md5_block(uint32_t st[4], const uint8_t *blk)
{
	uint32_t m[16], a = st[0], b = st[1], c = st[2], d = st[3], f, t;
	unsigned int i, g;

	for (i = 0; i < 16; i++)
		m[i] = (uint32_t)blk[4 * i] | (uint32_t)blk[4 * i + 1] << 8 |
		       (uint32_t)blk[4 * i + 2] << 16 | (uint32_t)blk[4 * i + 3] << 24;
	for (i = 0; i < 64; i++) {
		switch (i >> 4) {
		case 0:
			f = (b & c) | (~b & d);
			g = i;
			break;
		case 1:
			f = (d & b) | (~d & c);
			g = (5 * i + 1) & 15;
			break;
		case 2:
			f = b ^ c ^ d;
			g = (3 * i + 5) & 15;
			break;
		default:
			f = c ^ (b | ~d);
			g = (7 * i) & 15;
			break;
		}
		t = d;
		d = c;
		c = b;
		b = b + rotl32(a + f + md5_k[i] + m[g], md5_r[i >> 4][i & 3]);
		a = t;
	}
	st[0] += a;
	st[1] += b;
	st[2] += c;
	st[3] += d;
}

void
tsw_md5(const void *buf, size_t len, uint8_t out[16])
{
	uint32_t st[4] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476 };
	const uint8_t *p = buf;
	uint8_t tail[128];
	uint64_t bits = (uint64_t)len * 8;
	size_t rest, padded, i;

	while (len >= 64) {
		md5_block(st, p);
		p += 64;
		len -= 64;
	}
	/* Final block(s): the rest, 0x80, zeros, then the bit length, little-endian. */
	rest = len;
	memset(tail, 0, sizeof(tail));
	memcpy(tail, p, rest);
	tail[rest] = 0x80;
	padded = rest + 1 + 8 <= 64 ? 64 : 128;
	for (i = 0; i < 8; i++)
		tail[padded - 8 + i] = (uint8_t)(bits >> (8 * i));
	md5_block(st, tail);
	if (padded == 128)
		md5_block(st, tail + 64);
	for (i = 0; i < 4; i++) {
		out[4 * i] = (uint8_t)st[i];
		out[4 * i + 1] = (uint8_t)(st[i] >> 8);
		out[4 * i + 2] = (uint8_t)(st[i] >> 16);
		out[4 * i + 3] = (uint8_t)(st[i] >> 24);
	}
}
