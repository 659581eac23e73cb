/* SPDX-License-Identifier: Apache-2.0 */
/* Known answers for every key hash, MD5 (RFC 1321 suite) and CRC-32C (RFC 3720 B.4). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tsw/tsw_crc32c.h"
#include "tsw/tsw_hash.h"
#include "tsw/tsw_md5.h"

#include "hash_vectors.h"
#include "tsw_test.h"

static int
hash_kind(const char *name)
{
	for (int k = 0; k < tsw_hash_count(); k++)
		if (strcmp(tsw_hash_name(k), name) == 0)
			return k;
	return -1;
}

static void
test_vectors(void)
{
	size_t i;

	for (i = 0; i < sizeof(hash_vectors) / sizeof(hash_vectors[0]); i++) {
		const struct hash_vector *v = &hash_vectors[i];
		int kind = hash_kind(v->hash);
		uint32_t got;

		CHECK(kind >= 0, "unknown hash %s", v->hash);
		got = tsw_hash(kind, v->key, v->len);
		CHECK(got == v->value, "%s(len %u) = 0x%08x, want 0x%08x", v->hash, v->len, got,
		      v->value);
	}
}

static void
test_md5(void)
{
	static const struct {
		const char *in;
		const char *hex;
	} rfc1321[] = {
		{ "", "d41d8cd98f00b204e9800998ecf8427e" },
		{ "a", "0cc175b9c0f1b6a831c399e269772661" },
		{ "abc", "900150983cd24fb0d6963f7d28e17f72" },
		{ "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
		{ "abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b" },
		{ "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
		  "d174ab98d277d9f5a5611c2c9f419d9f" },
		{ "1234567890123456789012345678901234567890123456789012345678901234567890"
		  "1234567890",
		  "57edf4a22be3c955ac49da2e2107b67a" },
	};
	size_t i;

	for (i = 0; i < sizeof(rfc1321) / sizeof(rfc1321[0]); i++) {
		uint8_t d[16];
		char hex[33];

		tsw_md5(rfc1321[i].in, strlen(rfc1321[i].in), d);
		for (int j = 0; j < 16; j++)
			snprintf(hex + 2 * j, 3, "%02x", d[j]);
		CHECK(strcmp(hex, rfc1321[i].hex) == 0, "md5(\"%s\") = %s", rfc1321[i].in, hex);
	}
}

static void
test_crc32c(void)
{
	uint8_t buf[32];
	uint8_t *big;
	size_t n = 200000, len;

	memset(buf, 0, sizeof(buf));
	CHECK(tsw_crc32c(0, buf, 32) == 0x8a9136aa, "32 zero bytes");
	memset(buf, 0xff, sizeof(buf));
	CHECK(tsw_crc32c(0, buf, 32) == 0x62a8ab43, "32 0xff bytes");
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	CHECK(tsw_crc32c(0, buf, 32) == 0x46dd794e, "ascending bytes");
	CHECK(tsw_crc32c(0, "123456789", 9) == 0xe3069283, "check value");
	/* The accelerated path (three lanes, combined) equals the table path at every length
	 * around the lane boundaries, at every alignment, and when continued in pieces. */
	big = malloc(n + 8);
	for (size_t i = 0; i < n + 8; i++)
		big[i] = (uint8_t)(i * 2654435761u >> 13);
	for (len = 0; len < n; len = len < 64 ? len + 1 : len * 3 / 2 + 7) {
		for (int a = 0; a < 8; a++) {
			uint32_t hw = tsw_crc32c(0, big + a, len), sw = tsw_crc32c_sw(0, big + a, len);

			CHECK(hw == sw, "len %zu align %d: 0x%08x != 0x%08x", len, a, hw, sw);
		}
	}
	for (len = 3 * 8192 - 1; len <= 3 * 8192 + 1; len++)
		CHECK(tsw_crc32c(0, big, len) == tsw_crc32c_sw(0, big, len), "lane edge %zu", len);
	CHECK(tsw_crc32c(tsw_crc32c(0, big, 1000), big + 1000, n - 1000) == tsw_crc32c(0, big, n),
	      "continuation");
	free(big);
}

int
main(void)
{
	test_vectors();
	test_md5();
	test_crc32c();
	TEST_MAIN_END("test_hash");
}
