/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memcached UDP protocol as the data plane sees it: the 8-byte frame
 * header, then the ASCII protocol (classic and meta commands). Parsing
 * only: offsets into the caller's buffer, no copies, no allocation, no
 * DPDK dependency (native/dataplane/tests runs it with a plain compiler).
 *
 * A request datagram is read as: the frame header; one command line up to
 * "\r\n"; for storage commands, the declared data block and its "\r\n".
 * Only the first datagram of a multi-datagram request (seq 0) carries the
 * command line, and its data block may run past the datagram
 * (DP_MC_PARTIAL): the key is still known, so it can be routed.
 *
 * Everything the parser accepts, memcached 1.6 accepts too; what it
 * rejects is reported with a reason so the caller can count and answer.
 */
#ifndef DP_MC_PROTO_H
#define DP_MC_PROTO_H

#include <stdbool.h>
#include <stdint.h>

#define DP_MC_UDP_HDR_LEN 8
#define DP_MC_MAX_KEY_LEN 250		/* memcached's KEY_MAX_LENGTH */
#define DP_MC_MAX_KEYS 32		/* keys of one get the parser records */
#define DP_MC_MAX_LINE 2048		/* longest command line looked at */

/* The frame header, in host order once read (wire order: big endian). */
struct dp_mc_udp_hdr {
	uint16_t req_id;
	uint16_t seq;
	uint16_t total;
	uint16_t reserved;
};

/* Commands: (NAME, wire word, kind). Kinds: READ answers with values and
 * changes nothing; WRITE changes (or may change) the item; FLUSH is
 * flush_all; NOKEY commands name no key. gat/gats return values but also
 * change the expiry, so they are writes for the cache. */
#define DP_MC_OPS(X) \
	X(GET, "get", READ) \
	X(GETS, "gets", READ) \
	X(GAT, "gat", WRITE) \
	X(GATS, "gats", WRITE) \
	X(SET, "set", WRITE) \
	X(ADD, "add", WRITE) \
	X(REPLACE, "replace", WRITE) \
	X(APPEND, "append", WRITE) \
	X(PREPEND, "prepend", WRITE) \
	X(CAS, "cas", WRITE) \
	X(DELETE, "delete", WRITE) \
	X(INCR, "incr", WRITE) \
	X(DECR, "decr", WRITE) \
	X(TOUCH, "touch", WRITE) \
	X(FLUSH_ALL, "flush_all", FLUSH) \
	X(MG, "mg", READ) \
	X(MS, "ms", WRITE) \
	X(MD, "md", WRITE) \
	X(MA, "ma", WRITE) \
	X(MN, "mn", NOKEY) \
	X(VERSION, "version", NOKEY)

enum dp_mc_op {
#define DP_MC_X(name, word, kind) DP_MC_OP_##name,
	DP_MC_OPS(DP_MC_X)
#undef DP_MC_X
	DP_MC_OP_COUNT
};

enum dp_mc_kind {
	DP_MC_KIND_READ = 0,
	DP_MC_KIND_WRITE,
	DP_MC_KIND_FLUSH,
	DP_MC_KIND_NOKEY,
};

/* Parse results. DP_MC_OK and DP_MC_PARTIAL fill the request; the others
 * are reasons to refuse it (each one a counter in dp_mc.c). */
#define DP_MC_RESULTS(X) \
	X(OK, "complete request") \
	X(PARTIAL, "storage data continues in later datagrams") \
	X(SHORT, "shorter than the frame header") \
	X(NO_LINE, "no \\r\\n-terminated command line") \
	X(UNKNOWN_OP, "unknown command") \
	X(BAD_KEY, "missing key, key too long or with control characters") \
	X(TOO_MANY_KEYS, "more keys than DP_MC_MAX_KEYS") \
	X(BAD_ARGS, "wrong number or form of arguments") \
	X(BAD_DATA, "data block not followed by \\r\\n")

enum dp_mc_result {
#define DP_MC_X(name, help) DP_MC_##name,
	DP_MC_RESULTS(DP_MC_X)
#undef DP_MC_X
	DP_MC_RESULT_COUNT
};

/* A key: offset from the start of the ASCII payload (just after the frame
 * header) and length. */
struct dp_mc_key {
	uint16_t off;
	uint8_t len;
};

struct dp_mc_req {
	enum dp_mc_op op;
	enum dp_mc_kind kind;
	bool noreply;		/* "noreply" given (classic) or "q" flag (meta) */
	uint8_t nkeys;		/* 0 only for NOKEY and for flush_all */
	struct dp_mc_key keys[DP_MC_MAX_KEYS];
	/* For get/gets/gat/gats: [keys_off, keys_end) spans the key list in
	 * the line (for gat/gats, after the exptime), so a split can copy
	 * the words before it and pick keys. */
	uint16_t keys_off;
	uint16_t keys_end;
	uint16_t line_len;	/* command line including its "\r\n" */
	uint32_t data_len;	/* storage: declared bytes + 2; else 0 */
};

/* Reads the frame header of a UDP payload. Returns false when len < 8. */
bool dp_mc_read_hdr(const uint8_t *udp_payload, uint32_t len,
		struct dp_mc_udp_hdr *h);

/* Writes a frame header (host order in, wire order out). */
void dp_mc_write_hdr(uint8_t *udp_payload, const struct dp_mc_udp_hdr *h);

/* Parses the ASCII part of a seq-0 request datagram: p points just after
 * the frame header, len bytes follow. */
enum dp_mc_result dp_mc_parse_req(const uint8_t *p, uint32_t len,
		struct dp_mc_req *r);

/* Reply kinds, told apart by the first line. */
#define DP_MC_REPLY_KINDS(X) \
	X(VALUES, "VALUE ... END: items, possibly none") \
	X(STORED, "STORED") \
	X(NOT_STORED, "NOT_STORED") \
	X(EXISTS, "EXISTS") \
	X(NOT_FOUND, "NOT_FOUND") \
	X(DELETED, "DELETED") \
	X(TOUCHED, "TOUCHED") \
	X(OK, "OK") \
	X(NUMBER, "incr/decr result") \
	X(ERROR, "ERROR, CLIENT_ERROR or SERVER_ERROR") \
	X(META, "meta reply (HD, VA, EN, NF, NS, EX, MN)") \
	X(VERSION, "VERSION") \
	X(UNKNOWN, "anything else")

enum dp_mc_reply_kind {
#define DP_MC_X(name, help) DP_MC_REPLY_##name,
	DP_MC_REPLY_KINDS(DP_MC_X)
#undef DP_MC_X
	DP_MC_REPLY_KIND_COUNT
};

/* The kind of the reply in the ASCII part of a seq-0 reply datagram. */
enum dp_mc_reply_kind dp_mc_reply_kind(const uint8_t *p, uint32_t len);

/* One item of a VALUES reply. */
struct dp_mc_value {
	uint16_t key_off;
	uint8_t key_len;
	uint32_t flags;
	bool has_cas;
	uint64_t cas;
	uint32_t data_off;	/* from p */
	uint32_t data_len;	/* the declared bytes */
	uint32_t next_off;	/* where the next item (or "END\r\n") starts */
};

/* Parses the item at p + off. Returns 1 for an item, 0 when "END\r\n"
 * is at off (and *end_off gets the offset just past it), -1 when the
 * bytes there are neither or run past len. */
int dp_mc_parse_value(const uint8_t *p, uint32_t len, uint32_t off,
		struct dp_mc_value *v, uint32_t *end_off);

/* Writes "VALUE key flags bytes\r\n" data "\r\nEND\r\n" to dst. Returns
 * the length written, or 0 when it does not fit in cap. */
uint32_t dp_mc_build_value_reply(uint8_t *dst, uint32_t cap,
		const uint8_t *key, uint8_t key_len, uint32_t flags,
		const uint8_t *data, uint32_t data_len);

/* Writes a sub-request of a split get: the words of the original line
 * before keys_off (the command and, for gat/gats, the exptime), then the
 * keys whose bit is set in key_mask, then "\r\n". Returns the length, or
 * 0 when it does not fit. */
uint32_t dp_mc_build_subget(uint8_t *dst, uint32_t cap, const uint8_t *p,
		const struct dp_mc_req *r, uint32_t key_mask);

/* Writes a line ("SERVER_ERROR ...\r\n" and the like). Returns the
 * length, or 0 when it does not fit. */
uint32_t dp_mc_build_line(uint8_t *dst, uint32_t cap, const char *line);

const char *dp_mc_op_name(enum dp_mc_op op);
const char *dp_mc_result_name(enum dp_mc_result r);

#endif /* DP_MC_PROTO_H */
