/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Key hash functions, bit-compatible with TwemProxy (nutcracker) under the same names, plus
 * crc32c. One X-macro table generates the enum, the names and the dispatch, so the config
 * parser, the CLI and the data plane cannot disagree on what exists.
 *
 * Compatibility notes (these are TwemProxy's behaviour on x86, kept on purpose):
 *  - one_at_a_time, fnv1_64, fnv1a_64, fnv1_32, fnv1a_32 and hsieh (3-byte tail) read key bytes
 *    as signed char, so bytes >= 0x80 are sign-extended before mixing;
 *  - fnv1a_64 runs in 32 bits with the 64-bit offset basis and prime truncated;
 *  - crc16 runs the XMODEM table in an unmasked 32-bit register (nutcracker 0.5.0);
 *  - crc32 is libmemcached's 15-bit variant ((~crc >> 16) & 0x7fff); crc32a is the full CRC-32;
 *  - md5 is the first little-endian word of the digest.
 */
#ifndef TSW_HASH_H
#define TSW_HASH_H

#include <stddef.h>
#include <stdint.h>

#define TSW_HASH_TABLE(X)                 \
	X(ONE_AT_A_TIME, one_at_a_time)   \
	X(MD5, md5)                       \
	X(CRC16, crc16)                   \
	X(CRC32, crc32)                   \
	X(CRC32A, crc32a)                 \
	X(FNV1_64, fnv1_64)               \
	X(FNV1A_64, fnv1a_64)             \
	X(FNV1_32, fnv1_32)               \
	X(FNV1A_32, fnv1a_32)             \
	X(HSIEH, hsieh)                   \
	X(MURMUR, murmur)                 \
	X(JENKINS, jenkins)               \
	X(CRC32C, crc32c)

enum tsw_hash_kind {
#define TSW_X(up, low) TSW_HASH_##up,
	TSW_HASH_TABLE(TSW_X)
#undef TSW_X
	TSW_HASH_COUNT
};

#define TSW_X(up, low) uint32_t tsw_hash_##low(const void *key, size_t len);
TSW_HASH_TABLE(TSW_X)
#undef TSW_X

typedef uint32_t (*tsw_hash_fn)(const void *key, size_t len);

/* The function for a kind, or NULL when `kind` is out of range. */
tsw_hash_fn
tsw_hash_get(int kind);

/* Hash `len` bytes with function `kind`; 0 for an unknown kind. */
uint32_t
tsw_hash(int kind, const void *key, size_t len);

/* Hash `n` keys packed in `keys`, key i spanning [offsets[i], offsets[i+1]). Returns n. */
size_t
tsw_hash_batch(int kind, const uint8_t *keys, const uint32_t *offsets, size_t n, uint32_t *out);

/* TwemProxy's name of a kind ("fnv1a_64"), or NULL when out of range. */
const char *
tsw_hash_name(int kind);

int
tsw_hash_count(void);

#endif /* TSW_HASH_H */
