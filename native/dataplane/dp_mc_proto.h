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

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

static inline uint16_t
dp_mc_be16(const uint8_t *b)
{
	return (uint16_t)(b[0] << 8 | b[1]);
}

static inline void
dp_mc_put_be16(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

/* Reads the frame header of a UDP payload. Returns false when len < 8. */
static inline bool
dp_mc_read_hdr(const uint8_t *udp_payload, uint32_t len,
		struct dp_mc_udp_hdr *h)
{
	if (len < DP_MC_UDP_HDR_LEN)
		return false;
	h->req_id = dp_mc_be16(udp_payload);
	h->seq = dp_mc_be16(udp_payload + 2);
	h->total = dp_mc_be16(udp_payload + 4);
	h->reserved = dp_mc_be16(udp_payload + 6);
	return true;
}

/* Writes a frame header (host order in, wire order out). */
static inline void
dp_mc_write_hdr(uint8_t *udp_payload, const struct dp_mc_udp_hdr *h)
{
	dp_mc_put_be16(udp_payload, h->req_id);
	dp_mc_put_be16(udp_payload + 2, h->seq);
	dp_mc_put_be16(udp_payload + 4, h->total);
	dp_mc_put_be16(udp_payload + 6, h->reserved);
}

/* Parses the ASCII part of a seq-0 request datagram: p points just after
 * the frame header, len bytes follow. */
enum dp_mc_result dp_mc_parse_req(const uint8_t *p, uint32_t len,
		struct dp_mc_req *r);

/* The same without the fast path for "get KEY\r\n" that dp_mc_parse_req
 * tries first (the tests check that both agree). */
enum dp_mc_result dp_mc_parse_req_general(const uint8_t *p, uint32_t len,
		struct dp_mc_req *r);

/*
 * The fast path: "get KEY\r\n", one key of key characters (no space, no
 * control character, no DEL) right after one space, the line ending right
 * after it. That is most of what a cache sees, and for exactly those
 * lines the general parser comes to the same request: the first "\n"
 * ends the line, its words are "get" and the key. dp_mc_get1_len returns
 * the key's length (the key is at p + 4, the line 4 + n + 2 bytes long)
 * when p[0, len) starts with such a line, else 0: anything else (more
 * keys, runs of spaces, a bare "\n", a bad or overlong key) is for
 * dp_mc_parse_req_general.
 *
 * dp_mc_get1_len_room does the same reading up to room >= len bytes at p
 * (a frame's buffer holds more than its datagram), which lets it look at
 * 16 bytes at a time; the bytes past len never change the answer.
 * Without SSE2, or near the end of what may be read, key bytes are
 * checked eight at a time: in a little-endian word, the lowest byte
 * flagged by dp_mc_swar_stop is the first stop byte (below 0x21, or
 * 0x7f); flags above it may be false (borrows), and are not looked at.
 */
#define DP_MC_ONES UINT64_C(0x0101010101010101)
#define DP_MC_HIGHS UINT64_C(0x8080808080808080)

static inline uint64_t
dp_mc_swar_stop(uint64_t w)
{
	uint64_t del = w ^ (DP_MC_ONES * 0x7f);

	return ((w - DP_MC_ONES * 0x21) & ~w & DP_MC_HIGHS) |
		((del - DP_MC_ONES) & ~del & DP_MC_HIGHS);
}

#define DP_MC_LIKELY(x) __builtin_expect(!!(x), 1)

static inline uint32_t
dp_mc_get1_len_room(const uint8_t *p, uint32_t len, uint32_t room)
{
	/* Longest line taken: "get " + 250 + "\r\n". */
	uint32_t lim = len < 4 + DP_MC_MAX_KEY_LEN + 2 ? len :
		4 + DP_MC_MAX_KEY_LEN + 2;
	uint32_t i = 4, head, get;
	uint16_t crlf, end;

	if (len < 7)
		return 0;
	__builtin_memcpy(&head, p, 4);
	__builtin_memcpy(&get, "get ", 4);
	if (head != get)
		return 0;
#if defined(__SSE2__)
	/* Bit j of stop: byte i + j ends the key (not a key byte, or at
	 * lim). The first 16 key bytes on their own: most keys end there. */
	if (DP_MC_LIKELY(room >= 4 + 16)) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 4));
		__m128i ge = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x21)), v);
		__m128i del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
		uint32_t stop = ((uint32_t)_mm_movemask_epi8(ge) ^ 0xffffu) |
			(uint32_t)_mm_movemask_epi8(del);

		if (lim - 4 < 16)
			stop |= 0xffffu << (lim - 4);
		if (DP_MC_LIKELY(stop != 0)) {
			i = 4 + (uint32_t)__builtin_ctz(stop);
			goto found;
		}
		i = 4 + 16;
	}
	while (i + 16 <= room) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
		__m128i ge = _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x21)), v);
		__m128i del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
		uint32_t stop = ((uint32_t)_mm_movemask_epi8(ge) ^ 0xffffu) |
			(uint32_t)_mm_movemask_epi8(del);

		if (lim - i < 16)
			stop |= 0xffffu << (lim - i);
		if (stop != 0) {
			i += (uint32_t)__builtin_ctz(stop);
			goto found;
		}
		i += 16;
	}
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (lim >= 8) {
		uint64_t w, stop;

		for (; i + 8 <= lim; i += 8) {
			__builtin_memcpy(&w, p + i, 8);
			stop = dp_mc_swar_stop(w);
			if (stop != 0) {
				i += (uint32_t)__builtin_ctzll(stop) >> 3;
				goto found;
			}
		}
		if (i < lim) {
			/* The last 8 bytes before lim, shifted down to
			 * start at i: the zero bytes shifted in stop the
			 * key at lim at the latest. */
			__builtin_memcpy(&w, p + lim - 8, 8);
			w >>= 8 * (i - (lim - 8));
			i += (uint32_t)__builtin_ctzll(dp_mc_swar_stop(w)) >> 3;
		}
		goto found;
	}
#endif
	while (i < lim && p[i] >= 0x21 && p[i] != 0x7f)
		i++;
	goto found;	/* the label's one use without SSE2 or little endian */
found:
	/* 1..250 key bytes, then "\r\n" within len. */
	if (i - 5 >= DP_MC_MAX_KEY_LEN || i + 2 > len)
		return 0;
	__builtin_memcpy(&crlf, p + i, 2);
	__builtin_memcpy(&end, "\r\n", 2);
	return crlf == end ? i - 4 : 0;
}

static inline uint32_t
dp_mc_get1_len(const uint8_t *p, uint32_t len)
{
	return dp_mc_get1_len_room(p, len, len);
}

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

/*
 * Internet checksum arithmetic (RFC 1071) for the frames the data plane
 * writes: dp_mc_sum adds n bytes, read as 16-bit words in memory order
 * from an even offset, to a 64-bit accumulator (end-around carry, eight
 * bytes at a time); dp_mc_sum_fold folds it to 16 bits. The result is
 * what DPDK's rte_raw_cksum gives for the same bytes (0 only when every
 * byte is 0), so checksums built from it are bit for bit DPDK's.
 */
static inline uint64_t
dp_mc_sum_add(uint64_t acc, uint64_t v)
{
	acc += v;
	return acc + (acc < v);
}

static inline uint64_t
dp_mc_sum(const void *buf, uint32_t n, uint64_t acc)
{
	const uint8_t *p = (const uint8_t *)buf;
	uint64_t w;
	uint32_t h;
	uint16_t s;

	for (; n >= 8; p += 8, n -= 8) {
		__builtin_memcpy(&w, p, 8);
		acc = dp_mc_sum_add(acc, w);
	}
	if (n >= 4) {
		__builtin_memcpy(&h, p, 4);
		acc = dp_mc_sum_add(acc, h);
		p += 4;
		n -= 4;
	}
	if (n >= 2) {
		__builtin_memcpy(&s, p, 2);
		acc = dp_mc_sum_add(acc, s);
		p += 2;
		n -= 2;
	}
	if (n != 0) {
		s = 0;
		__builtin_memcpy(&s, p, 1);	/* the odd byte, zero-padded */
		acc = dp_mc_sum_add(acc, s);
	}
	return acc;
}

static inline uint16_t
dp_mc_sum_fold(uint64_t acc)
{
	acc = (acc >> 32) + (acc & 0xffffffffu);
	acc = (acc >> 32) + (acc & 0xffffffffu);
	acc = (acc >> 16) + (acc & 0xffffu);
	acc = (acc >> 16) + (acc & 0xffffu);
	return (uint16_t)acc;
}

const char *dp_mc_op_name(enum dp_mc_op op);
const char *dp_mc_result_name(enum dp_mc_result r);

#endif /* DP_MC_PROTO_H */
