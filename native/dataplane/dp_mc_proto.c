/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memcached UDP protocol (dp_mc_proto.h): frame header, request
 * parsing, reply classification, VALUE items and the few lines the data
 * plane writes itself. Plain C11, no DPDK, no allocation.
 *
 * Every read is bounded by the caller's len. Command lines are looked at
 * through a window of DP_MC_MAX_LINE bytes and tokenised on spaces, as
 * memcached does (runs of spaces separate, leading and trailing ones are
 * ignored). Anything the parser accepts memcached 1.6 accepts too; where
 * memcached quietly ignores a stray word (a last word that is not
 * "noreply", say), the parser refuses the request with BAD_ARGS.
 */
#include <stddef.h>
#include <string.h>

#include "dp_lcname.h"
#include "dp_mc_proto.h"

#define DP_MC_MAX_BYTES 0x7ffffffdu	/* memcached: INT_MAX - 2 */

static const char *const dp_mc_op_words[DP_MC_OP_COUNT] = {
#define DP_MC_X(name, word, kind) [DP_MC_OP_##name] = word,
	DP_MC_OPS(DP_MC_X)
#undef DP_MC_X
};

static const uint8_t dp_mc_op_kinds[DP_MC_OP_COUNT] = {
#define DP_MC_X(name, word, kind) [DP_MC_OP_##name] = DP_MC_KIND_##kind,
	DP_MC_OPS(DP_MC_X)
#undef DP_MC_X
};

/* Result names: the X-macro names in lower case (dp_lcname.h). */
#define DP_MC_X(name, help)						\
	_Static_assert(sizeof(#name) <= DP_LCNAME_MAX,			\
			"result name " #name " too long");
DP_MC_RESULTS(DP_MC_X)
#undef DP_MC_X

static const char dp_mc_result_names[DP_MC_RESULT_COUNT][DP_LCNAME_MAX] = {
#define DP_MC_X(name, help) [DP_MC_##name] = DP_LCNAME(#name),
	DP_MC_RESULTS(DP_MC_X)
#undef DP_MC_X
};

const char *
dp_mc_op_name(enum dp_mc_op op)
{
	return (unsigned int)op < DP_MC_OP_COUNT ? dp_mc_op_words[op] : "?";
}

const char *
dp_mc_result_name(enum dp_mc_result r)
{
	return (unsigned int)r < DP_MC_RESULT_COUNT ?
		dp_mc_result_names[r] : "?";
}

/* ---- tokens and numbers ------------------------------------------------ */

/* A walk over the words of one line: p[pos, end). */
struct dp_mc_cur {
	const uint8_t *p;
	uint32_t pos;
	uint32_t end;
};

/* The next word: its offset in *off and its length, 0 at the line end. */
static inline uint32_t
dp_mc_next(struct dp_mc_cur *c, uint32_t *off)
{
	const uint8_t *sp;
	uint32_t i = c->pos;

	while (i < c->end && c->p[i] == ' ')
		i++;
	*off = i;
	if (i == c->end)
		return 0;
	sp = memchr(c->p + i, ' ', c->end - i);
	c->pos = sp != NULL ? (uint32_t)(sp - c->p) : c->end;
	return c->pos - i;
}

/* Decimal digits only, at most max; no sign, no spaces. */
static inline bool
dp_mc_dec(const uint8_t *t, uint32_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	uint32_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		uint32_t d = (uint32_t)t[i] - '0';

		if (d > 9 || v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* A signed 32-bit decimal, as memcached's exptime and delay. */
static inline bool
dp_mc_s32(const uint8_t *t, uint32_t n)
{
	uint64_t v;

	if (n > 0 && t[0] == '-')
		return dp_mc_dec(t + 1, n - 1, UINT64_C(0x80000000), &v);
	return dp_mc_dec(t, n, INT32_MAX, &v);
}

/* 1..DP_MC_MAX_KEY_LEN bytes, none of them a control character or space. */
static inline bool
dp_mc_key_ok(const uint8_t *t, uint32_t n)
{
	uint32_t i, bad = 0;

	if (n == 0 || n > DP_MC_MAX_KEY_LEN)
		return false;
	for (i = 0; i < n; i++)
		bad |= (uint32_t)(t[i] < 0x21) | (uint32_t)(t[i] == 0x7f);
	return bad == 0;
}

static inline bool
dp_mc_is(const uint8_t *t, uint32_t n, const char *word, uint32_t wlen)
{
	return n == wlen && memcmp(t, word, wlen) == 0;
}

/* ---- requests ---------------------------------------------------------- */

#define DP_MC_W2(a, b) ((uint32_t)(a) | (uint32_t)(b) << 8)
#define DP_MC_W3(a, b, c) (DP_MC_W2(a, b) | (uint32_t)(c) << 16)
#define DP_MC_W4(a, b, c, d) (DP_MC_W3(a, b, c) | (uint32_t)(d) << 24)

static inline bool
dp_mc_word_is(const uint8_t *t, uint32_t n, enum dp_mc_op op)
{
	return memcmp(t, dp_mc_op_words[op], n) == 0;
}

/* The op named by the command word t[0, n), or -1. */
static int
dp_mc_op_of(const uint8_t *t, uint32_t n)
{
	switch (n) {
	case 2:
		switch (DP_MC_W2(t[0], t[1])) {
		case DP_MC_W2('m', 'g'): return DP_MC_OP_MG;
		case DP_MC_W2('m', 's'): return DP_MC_OP_MS;
		case DP_MC_W2('m', 'd'): return DP_MC_OP_MD;
		case DP_MC_W2('m', 'a'): return DP_MC_OP_MA;
		case DP_MC_W2('m', 'n'): return DP_MC_OP_MN;
		}
		break;
	case 3:
		switch (DP_MC_W3(t[0], t[1], t[2])) {
		case DP_MC_W3('g', 'e', 't'): return DP_MC_OP_GET;
		case DP_MC_W3('s', 'e', 't'): return DP_MC_OP_SET;
		case DP_MC_W3('g', 'a', 't'): return DP_MC_OP_GAT;
		case DP_MC_W3('a', 'd', 'd'): return DP_MC_OP_ADD;
		case DP_MC_W3('c', 'a', 's'): return DP_MC_OP_CAS;
		}
		break;
	case 4:
		switch (DP_MC_W4(t[0], t[1], t[2], t[3])) {
		case DP_MC_W4('g', 'e', 't', 's'): return DP_MC_OP_GETS;
		case DP_MC_W4('g', 'a', 't', 's'): return DP_MC_OP_GATS;
		case DP_MC_W4('i', 'n', 'c', 'r'): return DP_MC_OP_INCR;
		case DP_MC_W4('d', 'e', 'c', 'r'): return DP_MC_OP_DECR;
		}
		break;
	case 5:
		if (dp_mc_word_is(t, n, DP_MC_OP_TOUCH))
			return DP_MC_OP_TOUCH;
		break;
	case 6:
		if (t[0] == 'd' && dp_mc_word_is(t, n, DP_MC_OP_DELETE))
			return DP_MC_OP_DELETE;
		if (t[0] == 'a' && dp_mc_word_is(t, n, DP_MC_OP_APPEND))
			return DP_MC_OP_APPEND;
		break;
	case 7:
		if (t[0] == 'r' && dp_mc_word_is(t, n, DP_MC_OP_REPLACE))
			return DP_MC_OP_REPLACE;
		if (t[0] == 'p' && dp_mc_word_is(t, n, DP_MC_OP_PREPEND))
			return DP_MC_OP_PREPEND;
		if (t[0] == 'v' && dp_mc_word_is(t, n, DP_MC_OP_VERSION))
			return DP_MC_OP_VERSION;
		break;
	case 9:
		if (dp_mc_word_is(t, n, DP_MC_OP_FLUSH_ALL))
			return DP_MC_OP_FLUSH_ALL;
		break;
	}
	return -1;
}

/* Records the key at p[off, off + n) as the request's only key. */
static inline enum dp_mc_result
dp_mc_one_key(const uint8_t *p, uint32_t off, uint32_t n,
		struct dp_mc_req *r)
{
	if (!dp_mc_key_ok(p + off, n))
		return DP_MC_BAD_KEY;
	r->keys[0].off = (uint16_t)off;
	r->keys[0].len = (uint8_t)n;
	r->nkeys = 1;
	r->keys_off = (uint16_t)off;
	r->keys_end = (uint16_t)(off + n);
	return DP_MC_OK;
}

/* What is left of the line: nothing, or "noreply" alone. */
static inline bool
dp_mc_tail(struct dp_mc_cur *c, struct dp_mc_req *r)
{
	uint32_t off, n = dp_mc_next(c, &off);

	if (n == 0)
		return true;
	if (!dp_mc_is(c->p + off, n, "noreply", 7))
		return false;
	r->noreply = true;
	return dp_mc_next(c, &off) == 0;
}

/* The data block after the line: bytes, then "\r\n". */
static inline enum dp_mc_result
dp_mc_data(const uint8_t *p, uint32_t len, struct dp_mc_req *r,
		uint32_t bytes)
{
	uint64_t end = (uint64_t)r->line_len + bytes + 2;

	r->data_len = bytes + 2;
	if (end > len)
		return DP_MC_PARTIAL;
	if (p[end - 2] != '\r' || p[end - 1] != '\n')
		return DP_MC_BAD_DATA;
	return DP_MC_OK;
}

/* get/gets KEY+, gat/gats EXPTIME KEY+ */
static enum dp_mc_result
dp_mc_parse_get(struct dp_mc_cur *c, struct dp_mc_req *r, bool touch)
{
	uint32_t off, n;

	if (touch) {
		n = dp_mc_next(c, &off);
		if (!dp_mc_s32(c->p + off, n))
			return DP_MC_BAD_ARGS;
	}
	while ((n = dp_mc_next(c, &off)) != 0) {
		if (r->nkeys == DP_MC_MAX_KEYS)
			return DP_MC_TOO_MANY_KEYS;
		if (!dp_mc_key_ok(c->p + off, n))
			return DP_MC_BAD_KEY;
		r->keys[r->nkeys].off = (uint16_t)off;
		r->keys[r->nkeys].len = (uint8_t)n;
		r->nkeys++;
	}
	if (r->nkeys == 0)
		return DP_MC_BAD_KEY;
	r->keys_off = r->keys[0].off;
	r->keys_end = (uint16_t)(r->keys[r->nkeys - 1].off +
			r->keys[r->nkeys - 1].len);
	return DP_MC_OK;
}

/* set/add/replace/append/prepend KEY FLAGS EXPTIME BYTES [noreply],
 * cas KEY FLAGS EXPTIME BYTES CASUNIQUE [noreply], then the data. */
static enum dp_mc_result
dp_mc_parse_store(struct dp_mc_cur *c, uint32_t len, struct dp_mc_req *r,
		bool cas)
{
	uint32_t off, n = dp_mc_next(c, &off);
	enum dp_mc_result res = dp_mc_one_key(c->p, off, n, r);
	uint64_t v, bytes;

	if (res != DP_MC_OK)
		return res;
	n = dp_mc_next(c, &off);
	if (!dp_mc_dec(c->p + off, n, UINT32_MAX, &v))
		return DP_MC_BAD_ARGS;
	n = dp_mc_next(c, &off);
	if (!dp_mc_s32(c->p + off, n))
		return DP_MC_BAD_ARGS;
	n = dp_mc_next(c, &off);
	if (!dp_mc_dec(c->p + off, n, DP_MC_MAX_BYTES, &bytes))
		return DP_MC_BAD_ARGS;
	if (cas) {
		n = dp_mc_next(c, &off);
		if (!dp_mc_dec(c->p + off, n, UINT64_MAX, &v))
			return DP_MC_BAD_ARGS;
	}
	if (!dp_mc_tail(c, r))
		return DP_MC_BAD_ARGS;
	return dp_mc_data(c->p, len, r, (uint32_t)bytes);
}

/* delete KEY [0] [noreply]; incr/decr KEY VALUE [noreply];
 * touch KEY EXPTIME [noreply] */
static enum dp_mc_result
dp_mc_parse_keyed(struct dp_mc_cur *c, struct dp_mc_req *r)
{
	uint32_t off, n = dp_mc_next(c, &off);
	enum dp_mc_result res = dp_mc_one_key(c->p, off, n, r);
	struct dp_mc_cur save;
	uint64_t v;

	if (res != DP_MC_OK)
		return res;
	switch (r->op) {
	case DP_MC_OP_DELETE:
		save = *c;
		n = dp_mc_next(c, &off);
		if (!dp_mc_is(c->p + off, n, "0", 1))
			*c = save;
		break;
	case DP_MC_OP_INCR:
	case DP_MC_OP_DECR:
		n = dp_mc_next(c, &off);
		if (!dp_mc_dec(c->p + off, n, UINT64_MAX, &v))
			return DP_MC_BAD_ARGS;
		break;
	default:	/* touch */
		n = dp_mc_next(c, &off);
		if (!dp_mc_s32(c->p + off, n))
			return DP_MC_BAD_ARGS;
		break;
	}
	return dp_mc_tail(c, r) ? DP_MC_OK : DP_MC_BAD_ARGS;
}

/* flush_all [DELAY] [noreply] */
static enum dp_mc_result
dp_mc_parse_flush(struct dp_mc_cur *c, struct dp_mc_req *r)
{
	struct dp_mc_cur save = *c;
	uint32_t off, n = dp_mc_next(c, &off);

	if (n == 0 || dp_mc_is(c->p + off, n, "noreply", 7))
		*c = save;
	else if (!dp_mc_s32(c->p + off, n))
		return DP_MC_BAD_ARGS;
	return dp_mc_tail(c, r) ? DP_MC_OK : DP_MC_BAD_ARGS;
}

/* Letters as bits, for the duplicate-flag check. */
static inline uint64_t
dp_mc_flag_bit(uint8_t ch)
{
	if (ch >= 'a' && ch <= 'z')
		return UINT64_C(1) << (ch - 'a');
	if (ch >= 'A' && ch <= 'Z')
		return UINT64_C(1) << (26 + ch - 'A');
	return 0;
}

/* mg/md/ma KEY [flags], ms KEY DATALEN [flags], then ms's data. A flag
 * is a letter and an optional value ("v", "T30"); memcached refuses a
 * flag given twice, and "q" asks for quiet mode. */
static enum dp_mc_result
dp_mc_parse_meta(struct dp_mc_cur *c, uint32_t len, struct dp_mc_req *r)
{
	uint32_t off, n = dp_mc_next(c, &off);
	enum dp_mc_result res = dp_mc_one_key(c->p, off, n, r);
	uint64_t bytes = 0, seen = 0;

	if (res != DP_MC_OK)
		return res;
	if (r->op == DP_MC_OP_MS) {
		n = dp_mc_next(c, &off);
		if (!dp_mc_dec(c->p + off, n, DP_MC_MAX_BYTES, &bytes))
			return DP_MC_BAD_ARGS;
	}
	while ((n = dp_mc_next(c, &off)) != 0) {
		uint64_t bit = dp_mc_flag_bit(c->p[off]);

		if (bit == 0 || (seen & bit) != 0)
			return DP_MC_BAD_ARGS;
		seen |= bit;
	}
	r->noreply = (seen & dp_mc_flag_bit('q')) != 0;
	if (r->op == DP_MC_OP_MS)
		return dp_mc_data(c->p, len, r, (uint32_t)bytes);
	return DP_MC_OK;
}

enum dp_mc_result
dp_mc_parse_req(const uint8_t *p, uint32_t len, struct dp_mc_req *r)
{
	uint32_t n = dp_mc_get1_len(p, len);

	if (n == 0)
		return dp_mc_parse_req_general(p, len, r);
	r->op = DP_MC_OP_GET;
	r->kind = DP_MC_KIND_READ;
	r->noreply = false;
	r->nkeys = 1;
	r->keys[0].off = 4;
	r->keys[0].len = (uint8_t)n;
	r->keys_off = 4;
	r->keys_end = (uint16_t)(4 + n);
	r->line_len = (uint16_t)(4 + n + 2);
	r->data_len = 0;
	return DP_MC_OK;
}

enum dp_mc_result
dp_mc_parse_req_general(const uint8_t *p, uint32_t len, struct dp_mc_req *r)
{
	uint32_t win = len < DP_MC_MAX_LINE ? len : DP_MC_MAX_LINE;
	const uint8_t *nl;
	struct dp_mc_cur c;
	uint32_t off, n, e;
	int op;

	if (len == 0)
		return DP_MC_NO_LINE;
	nl = memchr(p, '\n', win);
	if (nl == NULL)
		return DP_MC_NO_LINE;
	e = (uint32_t)(nl - p);
	r->line_len = (uint16_t)(e + 1);
	if (e > 0 && p[e - 1] == '\r')
		e--;

	c.p = p;
	c.pos = 0;
	c.end = e;
	n = dp_mc_next(&c, &off);
	op = dp_mc_op_of(p + off, n);
	if (op < 0)
		return DP_MC_UNKNOWN_OP;
	r->op = (enum dp_mc_op)op;
	r->kind = (enum dp_mc_kind)dp_mc_op_kinds[op];
	r->noreply = false;
	r->nkeys = 0;
	r->keys_off = 0;
	r->keys_end = 0;
	r->data_len = 0;

	switch (r->op) {
	case DP_MC_OP_GET:
	case DP_MC_OP_GETS:
		return dp_mc_parse_get(&c, r, false);
	case DP_MC_OP_GAT:
	case DP_MC_OP_GATS:
		return dp_mc_parse_get(&c, r, true);
	case DP_MC_OP_SET:
	case DP_MC_OP_ADD:
	case DP_MC_OP_REPLACE:
	case DP_MC_OP_APPEND:
	case DP_MC_OP_PREPEND:
		return dp_mc_parse_store(&c, len, r, false);
	case DP_MC_OP_CAS:
		return dp_mc_parse_store(&c, len, r, true);
	case DP_MC_OP_DELETE:
	case DP_MC_OP_INCR:
	case DP_MC_OP_DECR:
	case DP_MC_OP_TOUCH:
		return dp_mc_parse_keyed(&c, r);
	case DP_MC_OP_FLUSH_ALL:
		return dp_mc_parse_flush(&c, r);
	case DP_MC_OP_MG:
	case DP_MC_OP_MS:
	case DP_MC_OP_MD:
	case DP_MC_OP_MA:
		return dp_mc_parse_meta(&c, len, r);
	case DP_MC_OP_MN:
	case DP_MC_OP_VERSION:
	default:
		return dp_mc_next(&c, &off) == 0 ? DP_MC_OK : DP_MC_BAD_ARGS;
	}
}

/* ---- replies ----------------------------------------------------------- */

/* p starts with the n bytes of s. */
static inline bool
dp_mc_starts(const uint8_t *p, uint32_t len, const char *s, uint32_t n)
{
	return len >= n && memcmp(p, s, n) == 0;
}

#define DP_MC_STARTS(p, len, lit) dp_mc_starts(p, len, lit, sizeof(lit) - 1)

/* p is s alone on its line ("s\r\n"), or s and a space when sp. */
static inline bool
dp_mc_word(const uint8_t *p, uint32_t len, const char *s, uint32_t n,
		bool sp)
{
	if (!dp_mc_starts(p, len, s, n))
		return false;
	if (sp && len > n && p[n] == ' ')
		return true;
	return len >= n + 2 && p[n] == '\r' && p[n + 1] == '\n';
}

#define DP_MC_WORD(p, len, lit, sp) dp_mc_word(p, len, lit, sizeof(lit) - 1, sp)

/* A meta reply code: two letters, then a space or the line end. */
static inline bool
dp_mc_meta_code(const uint8_t *p, uint32_t len)
{
	if (len < 3 || !(p[2] == ' ' || (p[2] == '\r' && len >= 4 &&
			p[3] == '\n')))
		return false;
	switch (DP_MC_W2(p[0], p[1])) {
	case DP_MC_W2('H', 'D'):
	case DP_MC_W2('E', 'N'):
	case DP_MC_W2('N', 'F'):
	case DP_MC_W2('N', 'S'):
	case DP_MC_W2('E', 'X'):
	case DP_MC_W2('M', 'N'):
		return true;
	case DP_MC_W2('V', 'A'):
		return p[2] == ' ';
	}
	return false;
}

enum dp_mc_reply_kind
dp_mc_reply_kind(const uint8_t *p, uint32_t len)
{
	uint32_t i;

	if (len == 0)
		return DP_MC_REPLY_UNKNOWN;
	switch (p[0]) {
	case 'V':
		if (DP_MC_STARTS(p, len, "VALUE "))
			return DP_MC_REPLY_VALUES;
		if (DP_MC_STARTS(p, len, "VERSION "))
			return DP_MC_REPLY_VERSION;
		break;
	case 'E':
		if (DP_MC_WORD(p, len, "END", false))
			return DP_MC_REPLY_VALUES;
		if (DP_MC_WORD(p, len, "EXISTS", false))
			return DP_MC_REPLY_EXISTS;
		if (DP_MC_WORD(p, len, "ERROR", true))
			return DP_MC_REPLY_ERROR;
		break;
	case 'S':
		if (DP_MC_WORD(p, len, "STORED", false))
			return DP_MC_REPLY_STORED;
		if (DP_MC_WORD(p, len, "SERVER_ERROR", true))
			return DP_MC_REPLY_ERROR;
		break;
	case 'N':
		if (DP_MC_WORD(p, len, "NOT_STORED", false))
			return DP_MC_REPLY_NOT_STORED;
		if (DP_MC_WORD(p, len, "NOT_FOUND", false))
			return DP_MC_REPLY_NOT_FOUND;
		break;
	case 'D':
		if (DP_MC_WORD(p, len, "DELETED", false))
			return DP_MC_REPLY_DELETED;
		break;
	case 'T':
		if (DP_MC_WORD(p, len, "TOUCHED", false))
			return DP_MC_REPLY_TOUCHED;
		break;
	case 'O':
		if (DP_MC_WORD(p, len, "OK", false))
			return DP_MC_REPLY_OK;
		break;
	case 'C':
		if (DP_MC_WORD(p, len, "CLIENT_ERROR", true))
			return DP_MC_REPLY_ERROR;
		break;
	case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		for (i = 1; i < len && (uint32_t)p[i] - '0' <= 9; i++)
			;
		if (len - i >= 2 && p[i] == '\r' && p[i + 1] == '\n')
			return DP_MC_REPLY_NUMBER;
		return DP_MC_REPLY_UNKNOWN;
	}
	return dp_mc_meta_code(p, len) ? DP_MC_REPLY_META :
		DP_MC_REPLY_UNKNOWN;
}

/* "VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n" or "END\r\n" */
int
dp_mc_parse_value(const uint8_t *p, uint32_t len, uint32_t off,
		struct dp_mc_value *v, uint32_t *end_off)
{
	const uint8_t *nl;
	struct dp_mc_cur c;
	uint32_t left, win, t, n;
	uint64_t flags, bytes, end;

	if (off >= len)
		return -1;
	left = len - off;
	if (DP_MC_STARTS(p + off, left, "END\r\n")) {
		*end_off = off + 5;
		return 0;
	}
	if (!DP_MC_STARTS(p + off, left, "VALUE "))
		return -1;
	win = left < DP_MC_MAX_LINE ? left : DP_MC_MAX_LINE;
	nl = memchr(p + off, '\n', win);
	if (nl == NULL || nl[-1] != '\r')
		return -1;
	c.p = p;
	c.pos = off + 6;
	c.end = (uint32_t)(nl - p) - 1;

	n = dp_mc_next(&c, &t);
	if (!dp_mc_key_ok(p + t, n) || t + n > UINT16_MAX)
		return -1;
	v->key_off = (uint16_t)t;
	v->key_len = (uint8_t)n;
	n = dp_mc_next(&c, &t);
	if (!dp_mc_dec(p + t, n, UINT32_MAX, &flags))
		return -1;
	v->flags = (uint32_t)flags;
	n = dp_mc_next(&c, &t);
	if (!dp_mc_dec(p + t, n, DP_MC_MAX_BYTES, &bytes))
		return -1;
	v->has_cas = false;
	v->cas = 0;
	n = dp_mc_next(&c, &t);
	if (n != 0) {
		if (!dp_mc_dec(p + t, n, UINT64_MAX, &v->cas))
			return -1;
		v->has_cas = true;
		if (dp_mc_next(&c, &t) != 0)
			return -1;
	}
	v->data_off = c.end + 2;
	v->data_len = (uint32_t)bytes;
	end = (uint64_t)v->data_off + bytes + 2;
	if (end > len || p[end - 2] != '\r' || p[end - 1] != '\n')
		return -1;
	v->next_off = (uint32_t)end;
	return 1;
}

/* ---- building ---------------------------------------------------------- */

/* The decimal digits of v, right-aligned in buf[20]; returns the count. */
static inline uint32_t
dp_mc_fmt_u32(uint8_t buf[20], uint32_t v)
{
	uint32_t i = 20;

	do {
		buf[--i] = (uint8_t)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return 20 - i;
}

uint32_t
dp_mc_build_value_reply(uint8_t *dst, uint32_t cap, const uint8_t *key,
		uint8_t key_len, uint32_t flags, const uint8_t *data,
		uint32_t data_len)
{
	uint8_t fbuf[20], lbuf[20];
	uint32_t fn = dp_mc_fmt_u32(fbuf, flags);
	uint32_t ln = dp_mc_fmt_u32(lbuf, data_len);
	uint64_t total = 6 + (uint64_t)key_len + 1 + fn + 1 + ln + 2 +
		data_len + 2 + 5;
	uint8_t *d = dst;

	if (total > cap)
		return 0;
	memcpy(d, "VALUE ", 6);
	d += 6;
	if (key_len != 0)
		memcpy(d, key, key_len);
	d += key_len;
	*d++ = ' ';
	memcpy(d, fbuf + 20 - fn, fn);
	d += fn;
	*d++ = ' ';
	memcpy(d, lbuf + 20 - ln, ln);
	d += ln;
	*d++ = '\r';
	*d++ = '\n';
	if (data_len != 0)
		memcpy(d, data, data_len);
	d += data_len;
	memcpy(d, "\r\nEND\r\n", 7);
	return (uint32_t)total;
}

uint32_t
dp_mc_build_subget(uint8_t *dst, uint32_t cap, const uint8_t *p,
		const struct dp_mc_req *r, uint32_t key_mask)
{
	uint32_t i, m, total, pos;

	if (r->nkeys < 32)
		key_mask &= (UINT32_C(1) << r->nkeys) - 1;
	if (key_mask == 0)
		return 0;
	total = r->keys_off + 2;
	for (m = key_mask; m != 0; m &= m - 1)
		total += r->keys[__builtin_ctz(m)].len + 1;
	total--;	/* one space fewer than keys */
	if (total > cap)
		return 0;
	memcpy(dst, p, r->keys_off);
	pos = r->keys_off;
	for (m = key_mask; m != 0; m &= m - 1) {
		i = (uint32_t)__builtin_ctz(m);
		if (pos != r->keys_off)
			dst[pos++] = ' ';
		memcpy(dst + pos, p + r->keys[i].off, r->keys[i].len);
		pos += r->keys[i].len;
	}
	dst[pos++] = '\r';
	dst[pos++] = '\n';
	return pos;
}

uint32_t
dp_mc_build_line(uint8_t *dst, uint32_t cap, const char *line)
{
	size_t n = strlen(line);

	if (n > cap)
		return 0;
	memcpy(dst, line, n);
	return (uint32_t)n;
}
