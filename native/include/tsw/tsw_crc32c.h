/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum HDFS uses by default
 * (dfs.checksum.type = CRC32C) and one of the key hashes the router offers.
 *
 * tsw_crc32c() continues a running CRC: pass 0 to start, and the previous result to extend
 * (pre- and post-inversion are done inside, as in RFC 3720). The SSE4.2 crc32 instruction is
 * used when the CPU has it (checked once), a slicing-by-8 table otherwise.
 */
#ifndef TSW_CRC32C_H
#define TSW_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t
tsw_crc32c(uint32_t crc, const void *buf, size_t len);

/* Same result, table path only: the reference the accelerated path is tested against. */
uint32_t
tsw_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* 1 when tsw_crc32c() uses the hardware instruction. */
int
tsw_crc32c_hw_available(void);

#endif /* TSW_CRC32C_H */
