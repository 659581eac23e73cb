/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Chunked checksums as HDFS lays them out on disk and in DataTransferProtocol packets.
 *
 * A buffer of `len` data bytes is cut into chunks of `bytes_per_checksum` (bpc) bytes, the
 * last one possibly shorter; each chunk has its own 4-byte checksum, stored big-endian, back
 * to back ("CHECKSUMS" in a packet, see shared/docs/hdfs-wire-protocol.md §3.2 and §3.7).
 * The algorithms are those of ChecksumTypeProto: NULL (no checksum bytes), CRC32 (IEEE 802.3,
 * zlib's polynomial) and CRC32C (Castagnoli).
 *
 * Both batch calls handle a whole packet per call so that Python crosses into C once per
 * packet, not once per 512-byte chunk. With SSE4.2, CRC32C chunks are computed three at a
 * time: chunks are independent, so three crc32 instruction chains hide its 3-cycle latency
 * without any CRC combination step.
 */
#ifndef TSW_CHECKSUM_H
#define TSW_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Values equal ChecksumTypeProto on the wire. */
enum tsw_checksum_type {
	TSW_CHECKSUM_NULL = 0,
	TSW_CHECKSUM_CRC32 = 1,
	TSW_CHECKSUM_CRC32C = 2,
};

/* CRC-32 (IEEE, reflected 0xEDB88320), continuing `crc` like zlib's crc32(): 0 starts. */
uint32_t
tsw_crc32(uint32_t crc, const void *buf, size_t len);

/* Bytes of one chunk checksum for `type` (0 or 4), or TSW_EINVAL for an unknown type. */
int
tsw_checksum_size(int type);

/*
 * Checksum every chunk of data[0, len) into `sums` (4 bytes per chunk, big-endian).
 * Returns the number of chunks, ceil(len / bpc); nothing is written for NULL.
 * TSW_EINVAL: unknown type or bpc 0. TSW_ENOSPC: sums_len too small.
 */
ssize_t
tsw_checksum_compute(int type, uint32_t bytes_per_checksum, const void *data, size_t len,
		     void *sums, size_t sums_len);

/*
 * Check the chunks of data[0, len) against `sums` as laid out by tsw_checksum_compute().
 * Returns how many leading chunks match: ceil(len / bpc) when all do, otherwise the index of
 * the first bad chunk. For NULL, sums_len must be 0 and every chunk "matches".
 * TSW_EINVAL: unknown type, bpc 0, or sums_len is not exactly 4 bytes per chunk.
 */
ssize_t
tsw_checksum_verify(int type, uint32_t bytes_per_checksum, const void *data, size_t len,
		    const void *sums, size_t sums_len);

#endif /* TSW_CHECKSUM_H */
