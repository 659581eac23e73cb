/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MD5 (RFC 1321), used only where compatibility demands it: ketama continuum points and the
 * "md5" key hash of TwemProxy/libmemcached. Not for security.
 */
#ifndef TSW_MD5_H
#define TSW_MD5_H

#include <stddef.h>
#include <stdint.h>

/* Digest of `len` bytes at `buf` into `out` (16 bytes). */
void
tsw_md5(const void *buf, size_t len, uint8_t out[16]);

#endif /* TSW_MD5_H */
