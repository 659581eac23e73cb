/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TwemProxy-compatible key hashes. Each function reproduces the corresponding hashkit
 * function's arithmetic exactly, quirks included (see tsw_hash.h); tests/data holds vectors
 * and integration/test_route_nutcracker.py checks placement against a running nutcracker.
 */
#include <string.h>

#include "tsw/tsw_crc32c.h"
#include "tsw/tsw_hash.h"
#include "tsw/tsw_md5.h"

/* A key byte as TwemProxy sees it through `const char *` on x86: signed. */
#define SBYTE(p, i) ((int32_t)(signed char)((const uint8_t *)(p))[i])

uint32_t
tsw_hash_one_at_a_time(const void *key, size_t len)
{
	uint32_t h = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		h += (uint32_t)SBYTE(key, i);
		h += h << 10;
		h ^= h >> 6;
	}
	h += h << 3;
	h ^= h >> 11;
	h += h << 15;
	return h;
}

uint32_t
tsw_hash_md5(const void *key, size_t len)
{
	uint8_t d[16];

	tsw_md5(key, len, d);
	return (uint32_t)d[3] << 24 | (uint32_t)d[2] << 16 | (uint32_t)d[1] << 8 | d[0];
}

/*
 * CRC tables are built once before main() (a constructor), so concurrent callers never see a
 * half-built table: cffi releases the GIL around these calls.
 */
static uint16_t crc16_table[256]; /* CRC-16/XMODEM, polynomial 0x1021, MSB first */
static uint32_t crc32_table[256]; /* CRC-32/IEEE, reflected polynomial 0xEDB88320 */

__attribute__((constructor)) static void
tsw_hash_init_tables(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint16_t c16 = (uint16_t)(n << 8);
		uint32_t c32 = n;

		for (int b = 0; b < 8; b++) {
			c16 = (c16 & 0x8000) ? (uint16_t)((c16 << 1) ^ 0x1021) : (uint16_t)(c16 << 1);
			c32 = (c32 & 1) ? (c32 >> 1) ^ 0xedb88320u : c32 >> 1;
		}
		crc16_table[n] = c16;
		crc32_table[n] = c32;
	}
}

uint32_t
tsw_hash_crc16(const void *key, size_t len)
{
	/*
	 * The XMODEM table stepped in a 32-bit register that is never cut back to 16 bits, as
	 * nutcracker 0.5.0 (Debian 12) does; the result is therefore not CRC-16 once the key is
	 * longer than two bytes. Checked against that nutcracker by the integration tests.
	 */
	const uint8_t *p = key;
	uint32_t crc = 0;
	size_t i;

	for (i = 0; i < len; i++)
		crc = (crc << 8) ^ crc16_table[((crc >> 8) ^ p[i]) & 0xff];
	return crc;
}

static uint32_t
crc32_raw(const void *key, size_t len)
{
	const uint8_t *p = key;
	uint32_t crc = 0xffffffffu;
	size_t i;

	for (i = 0; i < len; i++)
		crc = (crc >> 8) ^ crc32_table[(crc ^ p[i]) & 0xff];
	return crc;
}

uint32_t
tsw_hash_crc32(const void *key, size_t len)
{
	/* libmemcached's variant: 15 bits of the final CRC. */
	return ((~crc32_raw(key, len)) >> 16) & 0x7fff;
}

uint32_t
tsw_hash_crc32a(const void *key, size_t len)
{
	return ~crc32_raw(key, len);
}

#define FNV_64_INIT UINT64_C(0xcbf29ce484222325)
#define FNV_64_PRIME UINT64_C(0x100000001b3)
#define FNV_32_INIT UINT32_C(2166136261)
#define FNV_32_PRIME UINT32_C(16777619)

uint32_t
tsw_hash_fnv1_64(const void *key, size_t len)
{
	uint64_t h = FNV_64_INIT;
	size_t i;

	for (i = 0; i < len; i++) {
		h *= FNV_64_PRIME;
		h ^= (uint64_t)(int64_t)SBYTE(key, i);
	}
	return (uint32_t)h;
}

uint32_t
tsw_hash_fnv1a_64(const void *key, size_t len)
{
	uint32_t h = (uint32_t)FNV_64_INIT;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (uint32_t)SBYTE(key, i);
		h *= (uint32_t)FNV_64_PRIME;
	}
	return h;
}

uint32_t
tsw_hash_fnv1_32(const void *key, size_t len)
{
	uint32_t h = FNV_32_INIT;
	size_t i;

	for (i = 0; i < len; i++) {
		h *= FNV_32_PRIME;
		h ^= (uint32_t)SBYTE(key, i);
	}
	return h;
}

uint32_t
tsw_hash_fnv1a_32(const void *key, size_t len)
{
	uint32_t h = FNV_32_INIT;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (uint32_t)SBYTE(key, i);
		h *= FNV_32_PRIME;
	}
	return h;
}

static inline uint32_t
le16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static inline uint32_t
le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

uint32_t
tsw_hash_hsieh(const void *key, size_t len)
{
	const uint8_t *p = key;
	uint32_t h = 0, tmp;
	size_t blocks;

	if (len == 0)
		return 0;
	for (blocks = len >> 2; blocks; blocks--, p += 4) {
		h += le16(p);
		tmp = (le16(p + 2) << 11) ^ h;
		h = (h << 16) ^ tmp;
		h += h >> 11;
	}
	switch (len & 3) {
	case 3:
		h += le16(p);
		h ^= h << 16;
		h ^= (uint32_t)SBYTE(p, 2) << 18;
		h += h >> 11;
		break;
	case 2:
		h += le16(p);
		h ^= h << 11;
		h += h >> 17;
		break;
	case 1:
		h += p[0];
		h ^= h << 10;
		h += h >> 1;
		break;
	}
	h ^= h << 3;
	h += h >> 5;
	h ^= h << 4;
	h += h >> 17;
	h ^= h << 25;
	h += h >> 6;
	return h;
}

uint32_t
tsw_hash_murmur(const void *key, size_t len)
{
	/* MurmurHash2 with libmemcached's seed: 0xdeadbeef * length. */
	const uint32_t m = 0x5bd1e995;
	const uint8_t *p = key;
	uint32_t h = (0xdeadbeefu * (uint32_t)len) ^ (uint32_t)len, k;

	while (len >= 4) {
		k = le32(p);
		k *= m;
		k ^= k >> 24;
		k *= m;
		h *= m;
		h ^= k;
		p += 4;
		len -= 4;
	}
	switch (len) {
	case 3:
		h ^= (uint32_t)p[2] << 16;
		/* fall through */
	case 2:
		h ^= (uint32_t)p[1] << 8;
		/* fall through */
	case 1:
		h ^= p[0];
		h *= m;
	}
	h ^= h >> 13;
	h *= m;
	h ^= h >> 15;
	return h;
}

#define ROT(x, k) (((x) << (k)) | ((x) >> (32 - (k))))

uint32_t
tsw_hash_jenkins(const void *key, size_t len)
{
	/* Bob Jenkins' lookup3 hashlittle with initval 13, byte-at-a-time (same result). */
	const uint8_t *k = key;
	uint32_t a, b, c;

	a = b = c = 0xdeadbeefu + (uint32_t)len + 13;
	while (len > 12) {
		a += le32(k);
		b += le32(k + 4);
		c += le32(k + 8);
		a -= c; a ^= ROT(c, 4);  c += b;
		b -= a; b ^= ROT(a, 6);  a += c;
		c -= b; c ^= ROT(b, 8);  b += a;
		a -= c; a ^= ROT(c, 16); c += b;
		b -= a; b ^= ROT(a, 19); a += c;
		c -= b; c ^= ROT(b, 4);  b += a;
		len -= 12;
		k += 12;
	}
	switch (len) {
	case 12: c += (uint32_t)k[11] << 24; /* fall through */
	case 11: c += (uint32_t)k[10] << 16; /* fall through */
	case 10: c += (uint32_t)k[9] << 8;   /* fall through */
	case 9:  c += k[8];                  /* fall through */
	case 8:  b += (uint32_t)k[7] << 24;  /* fall through */
	case 7:  b += (uint32_t)k[6] << 16;  /* fall through */
	case 6:  b += (uint32_t)k[5] << 8;   /* fall through */
	case 5:  b += k[4];                  /* fall through */
	case 4:  a += (uint32_t)k[3] << 24;  /* fall through */
	case 3:  a += (uint32_t)k[2] << 16;  /* fall through */
	case 2:  a += (uint32_t)k[1] << 8;   /* fall through */
	case 1:  a += k[0];
		break;
	case 0:
		return c;
	}
	c ^= b; c -= ROT(b, 14);
	a ^= c; a -= ROT(c, 11);
	b ^= a; b -= ROT(a, 25);
	c ^= b; c -= ROT(b, 16);
	a ^= c; a -= ROT(c, 4);
	b ^= a; b -= ROT(a, 14);
	c ^= b; c -= ROT(b, 24);
	return c;
}

uint32_t
tsw_hash_crc32c(const void *key, size_t len)
{
	return tsw_crc32c(0, key, len);
}

static const tsw_hash_fn hash_fns[TSW_HASH_COUNT] = {
#define TSW_X(up, low) [TSW_HASH_##up] = tsw_hash_##low,
	TSW_HASH_TABLE(TSW_X)
#undef TSW_X
};

static const char *const hash_names[TSW_HASH_COUNT] = {
#define TSW_X(up, low) [TSW_HASH_##up] = #low,
	TSW_HASH_TABLE(TSW_X)
#undef TSW_X
};

tsw_hash_fn
tsw_hash_get(int kind)
{
	if (kind < 0 || kind >= TSW_HASH_COUNT)
		return NULL;
	return hash_fns[kind];
}

uint32_t
tsw_hash(int kind, const void *key, size_t len)
{
	tsw_hash_fn fn = tsw_hash_get(kind);

	return fn ? fn(key, len) : 0;
}

size_t
tsw_hash_batch(int kind, const uint8_t *keys, const uint32_t *offsets, size_t n, uint32_t *out)
{
	tsw_hash_fn fn = tsw_hash_get(kind);
	size_t i;

	if (!fn)
		return 0;
	for (i = 0; i < n; i++)
		out[i] = fn(keys + offsets[i], offsets[i + 1] - offsets[i]);
	return n;
}

const char *
tsw_hash_name(int kind)
{
	if (kind < 0 || kind >= TSW_HASH_COUNT)
		return NULL;
	return hash_names[kind];
}

int
tsw_hash_count(void)
{
	return TSW_HASH_COUNT;
}
