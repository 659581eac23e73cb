/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Known-answer and cross-check tests for tsw_checksum.c.
 *
 * Vectors: the "123456789" check values of the CRC catalogue (CRC-32/ISO-HDLC 0xCBF43926,
 * CRC-32C/ISCSI 0xE3069283) and the CRC32C test patterns of RFC 3720 appendix B.4. The batch
 * calls are checked chunk by chunk against the one-shot functions, across chunk sizes that
 * hit and miss the three-chunks-at-once path, and at unaligned addresses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsw/tsw_checksum.h"
#include "tsw/tsw_crc32c.h"
#include "tsw/tsw_status.h"
#include "tsw_test.h"

/* Bit-at-a-time references, obviously correct and independent of both fast paths. */
static uint32_t
ref_crc(uint32_t poly, const uint8_t *p, size_t len)
{
	uint32_t c = 0xffffffffu;
	int k;

	while (len--) {
		c ^= *p++;
		for (k = 0; k < 8; k++)
			c = (c >> 1) ^ (poly & (0u - (c & 1)));
	}
	return ~c;
}

/* Every length from 0 to 600 at every alignment mod 8: table, PCLMUL and SSE4.2 paths. */
static void
test_against_bitwise_reference(void)
{
	uint8_t buf[608];
	size_t len, off, i;

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 167 + 13);
	for (off = 0; off < 8; off++)
		for (len = 0; len <= 600; len++) {
			CHECK(tsw_crc32(0, buf + off, len) == ref_crc(0xedb88320u, buf + off, len),
			      "crc32 len %zu offset %zu", len, off);
			CHECK(tsw_crc32c(0, buf + off, len) == ref_crc(0x82f63b78u, buf + off, len),
			      "crc32c len %zu offset %zu", len, off);
		}
	/* Continuing a running CRC across the 64-byte threshold of the folding path. */
	CHECK(tsw_crc32(tsw_crc32(0, buf, 100), buf + 100, 400) == ref_crc(0xedb88320u, buf, 500),
	      "crc32 continuation");
}

static void
test_known_answers(void)
{
	uint8_t buf[32];
	int i;
	const char *fox = "The quick brown fox jumps over the lazy dog";

	CHECK(tsw_crc32(0, "123456789", 9) == 0xcbf43926u, "known answer");
	CHECK(tsw_crc32(0, fox, strlen(fox)) == 0x414fa339u, "known answer");
	CHECK(tsw_crc32(0, "", 0) == 0, "known answer");
	/* Continuation: crc(a || b) == crc(crc(a), b). */
	CHECK(tsw_crc32(tsw_crc32(0, "1234", 4), "56789", 5) == 0xcbf43926u, "known answer");

	CHECK(tsw_crc32c(0, "123456789", 9) == 0xe3069283u, "known answer");
	memset(buf, 0, sizeof(buf));
	CHECK(tsw_crc32c(0, buf, 32) == 0x8a9136aau, "known answer");
	CHECK(tsw_crc32(0, buf, 32) == 0x190a55adu, "known answer");
	memset(buf, 0xff, sizeof(buf));
	CHECK(tsw_crc32c(0, buf, 32) == 0x62a8ab43u, "known answer");
	for (i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	CHECK(tsw_crc32c(0, buf, 32) == 0x46dd794eu, "known answer");
	for (i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	CHECK(tsw_crc32c(0, buf, 32) == 0x113fdb5cu, "known answer");
}

#define CASE_FMT "type %d bpc %u len %zu offset %zu"
#define CASE_ARGS type, bpc, len, off

static uint32_t
one_shot(int type, const uint8_t *p, size_t n)
{
	return type == TSW_CHECKSUM_CRC32C ? tsw_crc32c(0, p, n) : tsw_crc32(0, p, n);
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* compute() equals one CRC per chunk; verify() accepts it and finds every single flip. */
static void
test_batch_matches_one_shot(void)
{
	static const uint32_t bpcs[] = {1, 7, 8, 13, 64, 511, 512, 513, 4096};
	static const size_t lens[] = {0, 1, 511, 512, 513, 1535, 1536, 1537, 4 * 512 + 3, 65536};
	const int types[] = {TSW_CHECKSUM_CRC32, TSW_CHECKSUM_CRC32C};
	size_t cap = 65536 + 16, b, l, t, c, off;
	uint8_t *data = malloc(cap);
	uint8_t *sums = malloc(4 * 65536);

	for (b = 0; b < cap; b++)
		data[b] = (uint8_t)(b * 2654435761u >> 13);
	for (t = 0; t < 2; t++)
		for (b = 0; b < sizeof(bpcs) / sizeof(bpcs[0]); b++)
			for (l = 0; l < sizeof(lens) / sizeof(lens[0]); l++)
				for (off = 0; off < 3; off++) {
					int type = types[t];
					uint32_t bpc = bpcs[b];
					size_t len = lens[l];
					size_t n = (len + bpc - 1) / bpc;
					const uint8_t *p = data + off;
					ssize_t got;

					if (n > 65536)
						continue;
					got = tsw_checksum_compute(type, bpc, p, len, sums, 4 * n);
					CHECK(got == (ssize_t)n, CASE_FMT, CASE_ARGS);
					for (c = 0; c < n; c++) {
						size_t clen = len - c * bpc < bpc ? len - c * bpc : bpc;

						CHECK(be32(sums + 4 * c) ==
						      one_shot(type, p + c * bpc, clen),
						      CASE_FMT " chunk %zu", CASE_ARGS, c);
					}
					CHECK(tsw_checksum_verify(type, bpc, p, len, sums, 4 * n) ==
					      (ssize_t)n, CASE_FMT, CASE_ARGS);
				}
	/* A flipped bit in chunk k makes verify() stop at k, for k in each lane position. */
	for (t = 0; t < 2; t++) {
		size_t n = 7, len = 7 * 512 - 100, k;

		CHECK(tsw_checksum_compute(types[t], 512, data, len, sums, 4 * n) == (ssize_t)n,
		      "type %d", types[t]);
		for (k = 0; k < n; k++) {
			size_t pos = k * 512 + (k * 37) % (len - k * 512);

			data[pos] ^= 0x10;
			CHECK(tsw_checksum_verify(types[t], 512, data, len, sums, 4 * n) ==
			      (ssize_t)k, "type %d", types[t]);
			data[pos] ^= 0x10;
		}
		sums[4 * 5 + 3] ^= 1; /* a bad stored checksum is found as well */
		CHECK(tsw_checksum_verify(types[t], 512, data, len, sums, 4 * n) == 5,
		      "type %d", types[t]);
	}
	free(data);
	free(sums);
}

#define CRC32C TSW_CHECKSUM_CRC32C
#define NUL TSW_CHECKSUM_NULL

static void
test_arguments(void)
{
	uint8_t data[1024] = {0}, sums[8];

	CHECK(tsw_checksum_size(TSW_CHECKSUM_NULL) == 0, "arguments");
	CHECK(tsw_checksum_size(TSW_CHECKSUM_CRC32) == 4, "arguments");
	CHECK(tsw_checksum_size(TSW_CHECKSUM_CRC32C) == 4, "arguments");
	CHECK(tsw_checksum_size(3) == TSW_EINVAL, "arguments");
	CHECK(tsw_checksum_compute(9, 512, data, 1024, sums, 8) == TSW_EINVAL, "arguments");
	CHECK(tsw_checksum_compute(CRC32C, 0, data, 1024, sums, 8) == TSW_EINVAL, "arguments");
	CHECK(tsw_checksum_compute(CRC32C, 512, data, 1025, sums, 8) == TSW_ENOSPC, "arguments");
	CHECK(tsw_checksum_verify(CRC32C, 512, data, 1024, sums, 4) == TSW_EINVAL, "arguments");
	CHECK(tsw_checksum_verify(CRC32C, 512, data, 1024, sums, 12) == TSW_EINVAL, "arguments");
	/* NULL: chunks are counted, no checksum bytes exist. */
	CHECK(tsw_checksum_compute(NUL, 512, data, 1025, NULL, 0) == 3, "arguments");
	CHECK(tsw_checksum_verify(NUL, 512, data, 1025, NULL, 0) == 3, "arguments");
	CHECK(tsw_checksum_verify(NUL, 512, data, 1025, sums, 4) == TSW_EINVAL, "arguments");
	CHECK(tsw_checksum_compute(CRC32C, 512, data, 0, NULL, 0) == 0, "arguments");
}

int
main(void)
{
	test_known_answers();
	test_against_bitwise_reference();
	test_batch_matches_one_shot();
	test_arguments();
	TEST_MAIN_END("test_checksum");
}
