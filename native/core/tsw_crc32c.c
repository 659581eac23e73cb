/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CRC-32C with a hardware path (SSE4.2 crc32q, three independent streams to hide the
 * instruction's 3-cycle latency) and a portable slicing-by-8 path.
 *
 * The three-stream path splits a long buffer into three equal lanes, runs a CRC on each, then
 * combines them by shifting the first two lanes' CRCs over the length of what follows them
 * (multiplication by x^(8*len) mod P, done with a precomputed zero-extension operator).
 */
#include <stdint.h>
#include <string.h>

#include "tsw/tsw_crc32c.h"

#define CRC32C_POLY 0x82f63b78u

static uint32_t crc_table[8][256];

static void
crc32c_init_tables(void);

/* Runs before main(): the tables and the CPU check are never half-built for a caller. */
__attribute__((constructor)) static void
crc32c_init(void)
{
	crc32c_init_tables();
	(void)tsw_crc32c_hw_available();
}

static void
crc32c_init_tables(void)
{
	uint32_t i, j, c;

	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
		crc_table[0][i] = c;
	}
	for (i = 0; i < 256; i++) {
		c = crc_table[0][i];
		for (j = 1; j < 8; j++) {
			c = crc_table[0][c & 0xff] ^ (c >> 8);
			crc_table[j][i] = c;
		}
	}
}

static uint32_t
crc32c_sw_raw(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t w;

	while (len && ((uintptr_t)p & 7)) {
		c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
		len--;
	}
	while (len >= 8) {
		memcpy(&w, p, 8);
		w ^= c;
		c = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		    crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
		    crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
		    crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

uint32_t
tsw_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	return ~crc32c_sw_raw(~crc, buf, len);
}

#if defined(__x86_64__)
#include <nmmintrin.h>

/*
 * GF(2) helpers to shift a CRC over n zero bytes: the operator for "append 8*n zero bits" is
 * a 32x32 bit matrix; we square the 1-bit operator up to the lane length once per length.
 */
static uint32_t
gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;

	while (vec) {
		if (vec & 1)
			sum ^= *mat;
		vec >>= 1;
		mat++;
	}
	return sum;
}

static void
gf2_square(uint32_t *square, const uint32_t *mat)
{
	int n;

	for (n = 0; n < 32; n++)
		square[n] = gf2_times(mat, mat[n]);
}

/* Operator that advances a (non-inverted) CRC over `len` zero bytes. */
static void
crc32c_zeros_op(uint32_t *op, size_t len)
{
	uint32_t odd[32], even[32], row = 1;
	int n, have = 0;

	odd[0] = CRC32C_POLY;
	for (n = 1; n < 32; n++) {
		odd[n] = row;
		row <<= 1;
	}
	gf2_square(even, odd); /* 2 zero bits */
	gf2_square(odd, even); /* 4 zero bits */
	/* identity */
	for (n = 0; n < 32; n++)
		op[n] = 1u << n;
	do {
		gf2_square(even, odd); /* first pass: 8 bits = 1 byte */
		if (len & 1) {
			uint32_t tmp[32];

			for (n = 0; n < 32; n++)
				tmp[n] = gf2_times(even, op[n]);
			memcpy(op, tmp, sizeof(tmp));
			have = 1;
		}
		len >>= 1;
		if (!len)
			break;
		gf2_square(odd, even);
		if (len & 1) {
			uint32_t tmp[32];

			for (n = 0; n < 32; n++)
				tmp[n] = gf2_times(odd, op[n]);
			memcpy(op, tmp, sizeof(tmp));
			have = 1;
		}
		len >>= 1;
	} while (len);
	(void)have;
}

/* Lane length for the three-stream loop, and its shift operator, built once. */
#define CRC32C_LANE 8192
static uint32_t lane_op[32];
static uint32_t lane2_op[32];
static int lane_ready;

__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw_raw(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t c0, c1, c2, w0, w1, w2;
	size_t i;

	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8(c, *p++);
		len--;
	}
	if (lane_ready) {
		while (len >= 3 * CRC32C_LANE) {
			c0 = c;
			c1 = 0;
			c2 = 0;
			for (i = 0; i < CRC32C_LANE; i += 8) {
				memcpy(&w0, p + i, 8);
				memcpy(&w1, p + CRC32C_LANE + i, 8);
				memcpy(&w2, p + 2 * CRC32C_LANE + i, 8);
				c0 = _mm_crc32_u64(c0, w0);
				c1 = _mm_crc32_u64(c1, w1);
				c2 = _mm_crc32_u64(c2, w2);
			}
			c = gf2_times(lane2_op, (uint32_t)c0) ^
			    gf2_times(lane_op, (uint32_t)c1) ^ (uint32_t)c2;
			p += 3 * CRC32C_LANE;
			len -= 3 * CRC32C_LANE;
		}
	}
	c0 = c;
	while (len >= 8) {
		memcpy(&w0, p, 8);
		c0 = _mm_crc32_u64(c0, w0);
		p += 8;
		len -= 8;
	}
	c = (uint32_t)c0;
	while (len--)
		c = _mm_crc32_u8(c, *p++);
	return c;
}

static int hw_state = -1;

int
tsw_crc32c_hw_available(void)
{
	if (hw_state < 0) {
		__builtin_cpu_init();
		hw_state = __builtin_cpu_supports("sse4.2") ? 1 : 0;
		if (hw_state) {
			crc32c_zeros_op(lane_op, CRC32C_LANE);
			crc32c_zeros_op(lane2_op, 2 * CRC32C_LANE);
			lane_ready = 1;
		}
	}
	return hw_state;
}

uint32_t
tsw_crc32c(uint32_t crc, const void *buf, size_t len)
{
	if (tsw_crc32c_hw_available())
		return ~crc32c_hw_raw(~crc, buf, len);
	return ~crc32c_sw_raw(~crc, buf, len);
}

#else /* !__x86_64__ */

int
tsw_crc32c_hw_available(void)
{
	return 0;
}

uint32_t
tsw_crc32c(uint32_t crc, const void *buf, size_t len)
{
	return ~crc32c_sw_raw(~crc, buf, len);
}

#endif
