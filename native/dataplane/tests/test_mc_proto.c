/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memcached UDP protocol code (dp_mc_proto.c): frame headers, every
 * request op with typical and edge arguments, reply kinds and their near
 * misses, VALUE items, the builders, and a loop over pseudo-random
 * buffers that must never read out of bounds (run it with run-debug).
 *
 * Inputs are copied to heap buffers of exactly their length, so ASan
 * catches a read one byte past len.
 */
#include <stdlib.h>
#include <string.h>

#include "dp_mc_proto.h"
#include "tsw_test.h"

static struct dp_mc_req req;
static const char *last;	/* the text req's offsets point into */

static uint8_t *
heap_copy(const void *s, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);

	if (b == NULL)
		abort();
	memcpy(b, s, n);
	return b;
}

static enum dp_mc_result
parse_n(const char *s, size_t n)
{
	uint8_t *b = heap_copy(s, n);
	enum dp_mc_result res;

	memset(&req, 0xa5, sizeof(req));
	res = dp_mc_parse_req(b, (uint32_t)n, &req);
	free(b);
	last = s;
	return res;
}

#define parse(s) parse_n(s, strlen(s))

/* Key i of the last parse is the text k. */
static int
key_is(unsigned int i, const char *k)
{
	return i < req.nkeys && req.keys[i].len == strlen(k) &&
		memcmp(last + req.keys[i].off, k, req.keys[i].len) == 0;
}

static void
expect(const char *s, enum dp_mc_result want, int line)
{
	enum dp_mc_result got = parse(s);

	CHECK(got == want, "line %d: \"%s\": %s, want %s", line, s,
			dp_mc_result_name(got), dp_mc_result_name(want));
}

#define EXPECT(s, want) expect(s, DP_MC_##want, __LINE__)

static void
test_header(void)
{
	static const uint8_t wire[8] = { 0x12, 0x34, 0, 1, 0, 3, 0xff, 0xfe };
	struct dp_mc_udp_hdr h = { 0 }, h2;
	uint8_t out[8], *b = heap_copy(wire, 8);

	CHECK(dp_mc_read_hdr(b, 8, &h), "read 8 bytes");
	CHECK(h.req_id == 0x1234 && h.seq == 1 && h.total == 3 &&
			h.reserved == 0xfffe, "fields %x %x %x %x",
			h.req_id, h.seq, h.total, h.reserved);
	CHECK(!dp_mc_read_hdr(b, 7, &h2), "7 bytes are short");
	CHECK(!dp_mc_read_hdr(b, 0, &h2), "0 bytes are short");
	dp_mc_write_hdr(out, &h);
	CHECK(memcmp(out, wire, 8) == 0, "write is big endian");
	h2 = (struct dp_mc_udp_hdr){ 0xffff, 0, 0x8000, 0x0102 };
	dp_mc_write_hdr(out, &h2);
	CHECK(dp_mc_read_hdr(out, 8, &h) && h.req_id == 0xffff &&
			h.seq == 0 && h.total == 0x8000 && h.reserved == 0x0102,
			"round trip");
	free(b);
}

static void
test_names(void)
{
#define X(name, word, kind)						\
	CHECK(strcmp(dp_mc_op_name(DP_MC_OP_##name), word) == 0,	\
			"op name %s", dp_mc_op_name(DP_MC_OP_##name));
	DP_MC_OPS(X)
#undef X
#define X(name, help) {							\
		const char *up = #name, *lo =				\
			dp_mc_result_name(DP_MC_##name);		\
		size_t i, n = strlen(up);				\
		int same = strlen(lo) == n;				\
		for (i = 0; same && i < n; i++)				\
			same = lo[i] == (up[i] >= 'A' && up[i] <= 'Z' ?	\
					up[i] + 32 : up[i]);		\
		CHECK(same, "result name %s for %s", lo, up);		\
	}
	DP_MC_RESULTS(X)
#undef X
	CHECK(strcmp(dp_mc_result_name(DP_MC_TOO_MANY_KEYS),
			"too_many_keys") == 0, "too_many_keys");
	CHECK(strcmp(dp_mc_op_name(DP_MC_OP_COUNT), "?") == 0, "bad op");
	CHECK(strcmp(dp_mc_result_name(DP_MC_RESULT_COUNT), "?") == 0,
			"bad result");
}

/* Each op's kind, as the op table says. */
static void
test_kinds(void)
{
	static const struct {
		const char *line;
		enum dp_mc_op op;
		enum dp_mc_kind kind;
	} v[] = {
		{ "get k\r\n", DP_MC_OP_GET, DP_MC_KIND_READ },
		{ "gets k\r\n", DP_MC_OP_GETS, DP_MC_KIND_READ },
		{ "gat 1 k\r\n", DP_MC_OP_GAT, DP_MC_KIND_WRITE },
		{ "gats 1 k\r\n", DP_MC_OP_GATS, DP_MC_KIND_WRITE },
		{ "set k 0 0 1\r\nx\r\n", DP_MC_OP_SET, DP_MC_KIND_WRITE },
		{ "add k 0 0 1\r\nx\r\n", DP_MC_OP_ADD, DP_MC_KIND_WRITE },
		{ "replace k 0 0 1\r\nx\r\n", DP_MC_OP_REPLACE,
			DP_MC_KIND_WRITE },
		{ "append k 0 0 1\r\nx\r\n", DP_MC_OP_APPEND,
			DP_MC_KIND_WRITE },
		{ "prepend k 0 0 1\r\nx\r\n", DP_MC_OP_PREPEND,
			DP_MC_KIND_WRITE },
		{ "cas k 0 0 1 7\r\nx\r\n", DP_MC_OP_CAS, DP_MC_KIND_WRITE },
		{ "delete k\r\n", DP_MC_OP_DELETE, DP_MC_KIND_WRITE },
		{ "incr k 1\r\n", DP_MC_OP_INCR, DP_MC_KIND_WRITE },
		{ "decr k 1\r\n", DP_MC_OP_DECR, DP_MC_KIND_WRITE },
		{ "touch k 1\r\n", DP_MC_OP_TOUCH, DP_MC_KIND_WRITE },
		{ "flush_all\r\n", DP_MC_OP_FLUSH_ALL, DP_MC_KIND_FLUSH },
		{ "mg k\r\n", DP_MC_OP_MG, DP_MC_KIND_READ },
		{ "ms k 1\r\nx\r\n", DP_MC_OP_MS, DP_MC_KIND_WRITE },
		{ "md k\r\n", DP_MC_OP_MD, DP_MC_KIND_WRITE },
		{ "ma k\r\n", DP_MC_OP_MA, DP_MC_KIND_WRITE },
		{ "mn\r\n", DP_MC_OP_MN, DP_MC_KIND_NOKEY },
		{ "version\r\n", DP_MC_OP_VERSION, DP_MC_KIND_NOKEY },
	};
	unsigned int i, seen = 0;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		enum dp_mc_result res = parse(v[i].line);
		unsigned int keys = v[i].kind == DP_MC_KIND_FLUSH ||
			v[i].kind == DP_MC_KIND_NOKEY ? 0 : 1;

		CHECK(res == DP_MC_OK && req.op == v[i].op &&
				req.kind == v[i].kind && req.nkeys == keys &&
				!req.noreply, "%s: %s op %d kind %d",
				v[i].line, dp_mc_result_name(res), req.op,
				req.kind);
		if (keys)
			CHECK(key_is(0, "k"), "%s: key", v[i].line);
		seen |= 1u << v[i].op;
	}
	CHECK(seen == (1u << DP_MC_OP_COUNT) - 1, "every op listed");
}

static void
test_get(void)
{
	char line[2200], key[300];
	unsigned int i, pos;

	EXPECT("get foo\r\n", OK);
	CHECK(req.op == DP_MC_OP_GET && req.nkeys == 1 && key_is(0, "foo") &&
			req.keys_off == 4 && req.keys_end == 7 &&
			req.line_len == 9 && req.data_len == 0 &&
			!req.noreply, "get foo");
	EXPECT("gets a bb ccc\r\nleftover", OK);
	CHECK(req.op == DP_MC_OP_GETS && req.nkeys == 3 && key_is(0, "a") &&
			key_is(1, "bb") && key_is(2, "ccc") &&
			req.keys_off == 5 && req.keys_end == 13 &&
			req.line_len == 15, "gets a bb ccc");
	/* Runs of spaces, leading and trailing spaces, a bare "\n". */
	EXPECT("  get   a  b   \n", OK);
	CHECK(req.nkeys == 2 && key_is(0, "a") && key_is(1, "b") &&
			req.keys_off == 8 && req.keys_end == 12 &&
			req.line_len == 16, "spaces: %u keys", req.nkeys);
	EXPECT("get k\n", OK);
	CHECK(req.line_len == 6, "bare \\n line_len %u", req.line_len);
	/* "noreply" is a key to get. */
	EXPECT("get noreply\r\n", OK);
	CHECK(key_is(0, "noreply") && !req.noreply, "get noreply");
	/* Bytes >= 0x80 are allowed in keys. */
	EXPECT("get caf\xc3\xa9\r\n", OK);
	CHECK(req.keys[0].len == 5, "utf-8 key");

	EXPECT("get\r\n", BAD_KEY);
	EXPECT("get \r\n", BAD_KEY);
	EXPECT("gets    \r\n", BAD_KEY);
	EXPECT("get a\tb\r\n", BAD_KEY);
	EXPECT("get a\x7f\r\n", BAD_KEY);
	EXPECT("get a\x01 b\r\n", BAD_KEY);
	EXPECT("get a\rb\r\n", BAD_KEY);
	EXPECT("get a\r\r\n", BAD_KEY);
	EXPECT("get ok b\x1f\r\n", BAD_KEY);
	/* A NUL inside the line is a control character too. */
	CHECK(parse_n("get a\0b\r\n", 9) == DP_MC_BAD_KEY, "NUL in key");

	/* Key length limits. */
	memset(key, 'k', sizeof(key));
	snprintf(line, sizeof(line), "get %.*s\r\n", 250, key);
	EXPECT(line, OK);
	CHECK(req.keys[0].len == 250, "250-byte key");
	snprintf(line, sizeof(line), "get a %.*s\r\n", 251, key);
	EXPECT(line, BAD_KEY);

	/* 32 keys fit, 33 do not. */
	pos = (unsigned int)snprintf(line, sizeof(line), "get");
	for (i = 0; i < 32; i++)
		pos += (unsigned int)snprintf(line + pos, sizeof(line) - pos,
				" key%u", i);
	snprintf(line + pos, sizeof(line) - pos, "\r\n");
	EXPECT(line, OK);
	CHECK(req.nkeys == 32 && key_is(0, "key0") && key_is(31, "key31") &&
			req.keys_end == pos, "32 keys: %u, end %u",
			req.nkeys, req.keys_end);
	snprintf(line + pos, sizeof(line) - pos, " key32\r\n");
	EXPECT(line, TOO_MANY_KEYS);
	/* Many long keys: the line limit comes first. */
	pos = (unsigned int)snprintf(line, sizeof(line), "get");
	for (i = 0; i < 9; i++)
		pos += (unsigned int)snprintf(line + pos, sizeof(line) - pos,
				" %.*s", 240, key);
	snprintf(line + pos, sizeof(line) - pos, "\r\n");
	EXPECT(line, NO_LINE);
}

static void
test_gat(void)
{
	EXPECT("gat 100 foo bar\r\n", OK);
	CHECK(req.op == DP_MC_OP_GAT && req.kind == DP_MC_KIND_WRITE &&
			req.nkeys == 2 && key_is(0, "foo") &&
			key_is(1, "bar") && req.keys_off == 8 &&
			req.keys_end == 15, "gat 100 foo bar");
	EXPECT("gats -1 k\r\n", OK);
	CHECK(req.op == DP_MC_OP_GATS && req.keys_off == 8, "gats -1 k");
	EXPECT("gat 0 k\r\n", OK);
	EXPECT("gat 2147483647 k\r\n", OK);
	EXPECT("gat -2147483648 k\r\n", OK);
	EXPECT("gat 2147483648 k\r\n", BAD_ARGS);
	EXPECT("gat -2147483649 k\r\n", BAD_ARGS);
	EXPECT("gat 99999999999999999999999 k\r\n", BAD_ARGS);
	EXPECT("gat - k\r\n", BAD_ARGS);
	EXPECT("gat 1x k\r\n", BAD_ARGS);
	EXPECT("gat +1 k\r\n", BAD_ARGS);
	EXPECT("gat k\r\n", BAD_ARGS);
	EXPECT("gat\r\n", BAD_ARGS);
	EXPECT("gat 10\r\n", BAD_KEY);
	EXPECT("gats 10 \r\n", BAD_KEY);
}

static void
test_storage(void)
{
	static const char *const words[] = {
		"set", "add", "replace", "append", "prepend",
	};
	char line[256];
	unsigned int i;

	for (i = 0; i < 5; i++) {
		snprintf(line, sizeof(line), "%s key 5 0 3\r\nabc\r\n",
				words[i]);
		EXPECT(line, OK);
		CHECK(req.op == (enum dp_mc_op)(DP_MC_OP_SET + i) &&
				req.nkeys == 1 && key_is(0, "key") &&
				req.data_len == 5 && !req.noreply &&
				req.line_len == strlen(words[i]) + 12,
				"%s: data_len %u line_len %u", words[i],
				req.data_len, req.line_len);
		snprintf(line, sizeof(line), "%s key 5 0 3 noreply\r\nabc\r\n",
				words[i]);
		EXPECT(line, OK);
		CHECK(req.noreply, "%s noreply", words[i]);
	}
	EXPECT("set k 0 0 2\nhi\r\n", OK);
	CHECK(req.line_len == 12 && req.data_len == 4, "bare \\n");
	EXPECT("set k 0 0 0\r\n\r\n", OK);
	CHECK(req.data_len == 2, "empty value");
	EXPECT("set k 4294967295 -1 1\r\nx\r\n", OK);
	EXPECT("set k 4294967296 0 1\r\nx\r\n", BAD_ARGS);
	EXPECT("set k -1 0 1\r\nx\r\n", BAD_ARGS);
	EXPECT("set k 0 x 1\r\nx\r\n", BAD_ARGS);
	EXPECT("set k 0 0 -1\r\nx\r\n", BAD_ARGS);
	EXPECT("set k 0 0 2147483645\r\nx\r\n", PARTIAL);
	CHECK(req.data_len == 2147483647u, "largest block %u", req.data_len);
	EXPECT("set k 0 0 2147483646\r\n", BAD_ARGS);
	EXPECT("set k 0 0 3 junk\r\nabc\r\n", BAD_ARGS);
	EXPECT("set k 0 0 3 noreply junk\r\nabc\r\n", BAD_ARGS);
	EXPECT("set k 0 0\r\n", BAD_ARGS);
	EXPECT("set k\r\n", BAD_ARGS);
	EXPECT("set\r\n", BAD_KEY);
	EXPECT("set a\x02 0 0 1\r\nx\r\n", BAD_KEY);

	/* The data block past the datagram, or not ending in "\r\n". */
	EXPECT("set k 0 0 10\r\nabc", PARTIAL);
	CHECK(req.op == DP_MC_OP_SET && req.line_len == 14 &&
			req.data_len == 12 && key_is(0, "k"), "partial set");
	EXPECT("set k 0 0 3 noreply\r\n", PARTIAL);
	CHECK(req.noreply && req.data_len == 5, "partial noreply");
	EXPECT("set k 0 0 3\r\nabc\r", PARTIAL);
	EXPECT("set k 0 0 3\r\nabcd\r\n", BAD_DATA);
	EXPECT("set k 0 0 3\r\nabcXY", BAD_DATA);
	EXPECT("set k 0 0 3\r\nabc\n\r", BAD_DATA);
	/* Whatever follows the block is not the parser's business. */
	EXPECT("set k 0 0 3\r\nabc\r\nget k\r\n", OK);

	EXPECT("cas k 1 2 3 99\r\nabc\r\n", OK);
	CHECK(req.op == DP_MC_OP_CAS && req.data_len == 5, "cas");
	EXPECT("cas k 1 2 3 18446744073709551615 noreply\r\nabc\r\n", OK);
	CHECK(req.noreply, "cas noreply");
	EXPECT("cas k 1 2 3 18446744073709551616\r\nabc\r\n", BAD_ARGS);
	EXPECT("cas k 1 2 3\r\nabc\r\n", BAD_ARGS);
	EXPECT("cas k 1 2 3 noreply\r\nabc\r\n", BAD_ARGS);
	EXPECT("cas k 1 2 3 4\r\nab", PARTIAL);
}

static void
test_keyed(void)
{
	EXPECT("delete k\r\n", OK);
	CHECK(req.op == DP_MC_OP_DELETE && key_is(0, "k") && !req.noreply,
			"delete");
	EXPECT("delete k 0\r\n", OK);
	EXPECT("delete k noreply\r\n", OK);
	CHECK(req.noreply, "delete noreply");
	EXPECT("delete k 0 noreply\r\n", OK);
	CHECK(req.noreply, "delete 0 noreply");
	EXPECT("delete k 1\r\n", BAD_ARGS);
	EXPECT("delete k 00\r\n", BAD_ARGS);
	EXPECT("delete k noreply 0\r\n", BAD_ARGS);
	EXPECT("delete k 0 0\r\n", BAD_ARGS);
	EXPECT("delete\r\n", BAD_KEY);

	EXPECT("incr k 1\r\n", OK);
	CHECK(req.op == DP_MC_OP_INCR && key_is(0, "k"), "incr");
	EXPECT("decr k 18446744073709551615 noreply\r\n", OK);
	CHECK(req.op == DP_MC_OP_DECR && req.noreply, "decr noreply");
	EXPECT("incr k 18446744073709551616\r\n", BAD_ARGS);
	EXPECT("incr k\r\n", BAD_ARGS);
	EXPECT("incr k -1\r\n", BAD_ARGS);
	EXPECT("incr k 1x\r\n", BAD_ARGS);
	EXPECT("incr k 1 2\r\n", BAD_ARGS);
	EXPECT("decr\r\n", BAD_KEY);

	EXPECT("touch k 10\r\n", OK);
	CHECK(req.op == DP_MC_OP_TOUCH && key_is(0, "k"), "touch");
	EXPECT("touch k -1 noreply\r\n", OK);
	CHECK(req.noreply, "touch noreply");
	EXPECT("touch k\r\n", BAD_ARGS);
	EXPECT("touch k x\r\n", BAD_ARGS);
	EXPECT("touch k noreply\r\n", BAD_ARGS);
}

static void
test_nokey(void)
{
	EXPECT("flush_all\r\n", OK);
	CHECK(req.kind == DP_MC_KIND_FLUSH && req.nkeys == 0 &&
			!req.noreply, "flush_all");
	EXPECT("flush_all 10\r\n", OK);
	EXPECT("flush_all 0\n", OK);
	EXPECT("flush_all noreply\r\n", OK);
	CHECK(req.noreply, "flush_all noreply");
	EXPECT("flush_all 10 noreply\r\n", OK);
	CHECK(req.noreply, "flush_all 10 noreply");
	EXPECT("flush_all x\r\n", BAD_ARGS);
	EXPECT("flush_all 10 20\r\n", BAD_ARGS);
	EXPECT("flush_all noreply 10\r\n", BAD_ARGS);

	EXPECT("version\r\n", OK);
	CHECK(req.op == DP_MC_OP_VERSION && req.nkeys == 0 &&
			req.line_len == 9, "version");
	EXPECT("version x\r\n", BAD_ARGS);
	EXPECT("mn\r\n", OK);
	CHECK(req.op == DP_MC_OP_MN && req.kind == DP_MC_KIND_NOKEY &&
			req.nkeys == 0, "mn");
	EXPECT("mn x\r\n", BAD_ARGS);
}

static void
test_meta(void)
{
	EXPECT("mg foo v t\r\n", OK);
	CHECK(req.op == DP_MC_OP_MG && req.kind == DP_MC_KIND_READ &&
			key_is(0, "foo") && !req.noreply &&
			req.data_len == 0, "mg foo v t");
	EXPECT("mg foo v q\r\n", OK);
	CHECK(req.noreply, "mg q");
	EXPECT("mg foo\r\n", OK);
	EXPECT("mg foo O1234 k T30 N0\r\n", OK);
	EXPECT("mg Zm9v b v\r\n", OK);
	CHECK(key_is(0, "Zm9v"), "base64 key as bytes");
	EXPECT("mg foo v v\r\n", BAD_ARGS);
	EXPECT("mg foo T1 T2\r\n", BAD_ARGS);
	EXPECT("mg foo 1\r\n", BAD_ARGS);
	EXPECT("mg foo _x\r\n", BAD_ARGS);
	EXPECT("mg\r\n", BAD_KEY);
	EXPECT("mg a\x03\r\n", BAD_KEY);

	EXPECT("ms foo 3 T30 F5\r\nabc\r\n", OK);
	CHECK(req.op == DP_MC_OP_MS && req.kind == DP_MC_KIND_WRITE &&
			req.data_len == 5 && req.line_len == 17 &&
			!req.noreply, "ms");
	EXPECT("ms foo 0\r\n\r\n", OK);
	EXPECT("ms foo 3 q\r\nab", PARTIAL);
	CHECK(req.noreply && req.data_len == 5 && key_is(0, "foo"),
			"ms partial q");
	EXPECT("ms foo 3\r\nabcd\r\n", BAD_DATA);
	EXPECT("ms foo\r\n", BAD_ARGS);
	EXPECT("ms foo x\r\n", BAD_ARGS);
	EXPECT("ms foo 3 3\r\nabc\r\n", BAD_ARGS);

	EXPECT("md foo q\r\n", OK);
	CHECK(req.op == DP_MC_OP_MD && req.noreply, "md q");
	EXPECT("ma foo N0 J13 D1 q\r\n", OK);
	CHECK(req.op == DP_MC_OP_MA && req.noreply, "ma");
	EXPECT("ma foo Q\r\n", OK);
	CHECK(!req.noreply, "Q is not q");
}

static void
test_malformed(void)
{
	char line[2100];

	CHECK(parse_n("", 0) == DP_MC_NO_LINE, "empty");
	EXPECT("get foo", NO_LINE);
	EXPECT("get foo\r", NO_LINE);
	EXPECT("\r\n", UNKNOWN_OP);
	EXPECT("\n", UNKNOWN_OP);
	EXPECT("   \r\n", UNKNOWN_OP);
	EXPECT("GET k\r\n", UNKNOWN_OP);
	EXPECT("gett k\r\n", UNKNOWN_OP);
	EXPECT("ge k\r\n", UNKNOWN_OP);
	EXPECT("m\r\n", UNKNOWN_OP);
	EXPECT("mx k\r\n", UNKNOWN_OP);
	EXPECT("flush_al\r\n", UNKNOWN_OP);
	EXPECT("versions\r\n", UNKNOWN_OP);
	EXPECT("stats\r\n", UNKNOWN_OP);
	EXPECT("\x80\xff\r\n", UNKNOWN_OP);

	/* The terminator must lie within the first DP_MC_MAX_LINE bytes. */
	memset(line, ' ', sizeof(line));
	memcpy(line, "get k", 5);
	memcpy(line + DP_MC_MAX_LINE - 2, "\r\n", 3);
	EXPECT(line, OK);
	CHECK(req.line_len == DP_MC_MAX_LINE && key_is(0, "k"),
			"longest line %u", req.line_len);
	line[DP_MC_MAX_LINE - 2] = ' ';
	memcpy(line + DP_MC_MAX_LINE - 1, "\r\n", 3);
	EXPECT(line, NO_LINE);
}

/* ---- replies ----------------------------------------------------------- */

static enum dp_mc_reply_kind
kind_n(const char *s, size_t n)
{
	uint8_t *b = heap_copy(s, n);
	enum dp_mc_reply_kind k = dp_mc_reply_kind(b, (uint32_t)n);

	free(b);
	return k;
}

static void
test_reply_kind(void)
{
	static const struct {
		const char *s;
		enum dp_mc_reply_kind k;
	} v[] = {
		{ "VALUE k 0 1\r\nx\r\nEND\r\n", DP_MC_REPLY_VALUES },
		{ "VALUE ", DP_MC_REPLY_VALUES },
		{ "END\r\n", DP_MC_REPLY_VALUES },
		{ "STORED\r\n", DP_MC_REPLY_STORED },
		{ "NOT_STORED\r\n", DP_MC_REPLY_NOT_STORED },
		{ "EXISTS\r\n", DP_MC_REPLY_EXISTS },
		{ "NOT_FOUND\r\n", DP_MC_REPLY_NOT_FOUND },
		{ "DELETED\r\n", DP_MC_REPLY_DELETED },
		{ "TOUCHED\r\n", DP_MC_REPLY_TOUCHED },
		{ "OK\r\n", DP_MC_REPLY_OK },
		{ "0\r\n", DP_MC_REPLY_NUMBER },
		{ "18446744073709551615\r\n", DP_MC_REPLY_NUMBER },
		{ "0123456789012345678901234\r\n", DP_MC_REPLY_NUMBER },
		{ "ERROR\r\n", DP_MC_REPLY_ERROR },
		{ "ERROR unknown command\r\n", DP_MC_REPLY_ERROR },
		{ "CLIENT_ERROR bad data chunk\r\n", DP_MC_REPLY_ERROR },
		{ "SERVER_ERROR out of memory\r\n", DP_MC_REPLY_ERROR },
		{ "HD\r\n", DP_MC_REPLY_META },
		{ "HD c123 t-1\r\n", DP_MC_REPLY_META },
		{ "VA 3 f0\r\nabc\r\n", DP_MC_REPLY_META },
		{ "EN\r\n", DP_MC_REPLY_META },
		{ "NF\r\n", DP_MC_REPLY_META },
		{ "NS\r\n", DP_MC_REPLY_META },
		{ "EX\r\n", DP_MC_REPLY_META },
		{ "MN\r\n", DP_MC_REPLY_META },
		{ "VERSION 1.6.21\r\n", DP_MC_REPLY_VERSION },
		/* near misses */
		{ "", DP_MC_REPLY_UNKNOWN },
		{ "VALUE", DP_MC_REPLY_UNKNOWN },
		{ "VALUEX k\r\n", DP_MC_REPLY_UNKNOWN },
		{ "END", DP_MC_REPLY_UNKNOWN },
		{ "END\r", DP_MC_REPLY_UNKNOWN },
		{ "END\n", DP_MC_REPLY_UNKNOWN },
		{ "ENDX\r\n", DP_MC_REPLY_UNKNOWN },
		{ "STORED", DP_MC_REPLY_UNKNOWN },
		{ "STOREDX\r\n", DP_MC_REPLY_UNKNOWN },
		{ "STORED \r\n", DP_MC_REPLY_UNKNOWN },
		{ "stored\r\n", DP_MC_REPLY_UNKNOWN },
		{ "NOT_STORE\r\n", DP_MC_REPLY_UNKNOWN },
		{ "EXISTSS\r\n", DP_MC_REPLY_UNKNOWN },
		{ "NOT_FOUNDX\r\n", DP_MC_REPLY_UNKNOWN },
		{ "DELETE\r\n", DP_MC_REPLY_UNKNOWN },
		{ "TOUCHED!\r\n", DP_MC_REPLY_UNKNOWN },
		{ "OKAY\r\n", DP_MC_REPLY_UNKNOWN },
		{ "O\r\n", DP_MC_REPLY_UNKNOWN },
		{ "12a\r\n", DP_MC_REPLY_UNKNOWN },
		{ "12\r", DP_MC_REPLY_UNKNOWN },
		{ "12", DP_MC_REPLY_UNKNOWN },
		{ "-1\r\n", DP_MC_REPLY_UNKNOWN },
		{ "ERRORS\r\n", DP_MC_REPLY_UNKNOWN },
		{ "CLIENT_ERRORX\r\n", DP_MC_REPLY_UNKNOWN },
		{ "SERVER_ERRO\r\n", DP_MC_REPLY_UNKNOWN },
		{ "HD", DP_MC_REPLY_UNKNOWN },
		{ "HD\r", DP_MC_REPLY_UNKNOWN },
		{ "HDX\r\n", DP_MC_REPLY_UNKNOWN },
		{ "VA\r\n", DP_MC_REPLY_UNKNOWN },
		{ "VA", DP_MC_REPLY_UNKNOWN },
		{ "XX\r\n", DP_MC_REPLY_UNKNOWN },
		{ "hd\r\n", DP_MC_REPLY_UNKNOWN },
		{ "VERSION\r\n", DP_MC_REPLY_UNKNOWN },
		{ "VERSIONX\r\n", DP_MC_REPLY_UNKNOWN },
		{ "\r\n", DP_MC_REPLY_UNKNOWN },
	};
	unsigned int i, seen = 0;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		enum dp_mc_reply_kind k = kind_n(v[i].s, strlen(v[i].s));

		CHECK(k == v[i].k, "\"%s\": kind %d, want %d", v[i].s, k,
				v[i].k);
		seen |= 1u << v[i].k;
	}
	CHECK(seen == (1u << DP_MC_REPLY_KIND_COUNT) - 1, "every kind listed");
}

static int
value_n(const char *s, size_t n, uint32_t off, struct dp_mc_value *v,
		uint32_t *end_off)
{
	uint8_t *b = heap_copy(s, n);
	int rc = dp_mc_parse_value(b, (uint32_t)n, off, v, end_off);

	free(b);
	return rc;
}

#define VALUE_RC(s, off) value_n(s, strlen(s), off, &v, &end)

static void
test_parse_value(void)
{
	static const char two[] =
		"VALUE k 5 3\r\nabc\r\n"
		"VALUE key2 4294967295 0 18446744073709551615\r\n\r\n"
		"END\r\n";
	struct dp_mc_value v;
	uint32_t end = 0, off, n = (uint32_t)strlen(two), cut;

	CHECK(value_n(two, n, 0, &v, &end) == 1, "first item");
	CHECK(v.key_off == 6 && v.key_len == 1 && v.flags == 5 &&
			!v.has_cas && v.data_off == 13 && v.data_len == 3 &&
			memcmp(two + v.data_off, "abc", 3) == 0 &&
			v.next_off == 18, "first item fields: data %u next %u",
			v.data_off, v.next_off);
	off = v.next_off;
	CHECK(value_n(two, n, off, &v, &end) == 1, "second item");
	CHECK(v.key_off == off + 6 && v.key_len == 4 &&
			v.flags == 4294967295u && v.has_cas &&
			v.cas == UINT64_MAX && v.data_len == 0 &&
			v.next_off == n - 5, "second item fields");
	end = 0;
	CHECK(value_n(two, n, v.next_off, &v, &end) == 0 && end == n,
			"END at %u", end);

	/* Cut anywhere before the end of an item, it is not there. */
	for (cut = 0; cut < 18; cut++)
		CHECK(value_n(two, cut, 0, &v, &end) == -1, "cut at %u", cut);
	CHECK(value_n(two, 18, 0, &v, &end) == 1, "cut just after item");
	for (cut = 18; cut < n - 5; cut++)
		CHECK(value_n(two, cut, 18, &v, &end) == -1, "cut at %u", cut);
	for (cut = n - 5; cut < n; cut++)
		CHECK(value_n(two, cut, n - 5, &v, &end) == -1,
				"END cut at %u", cut);

	CHECK(VALUE_RC("END\r\n", 5) == -1, "off at len");
	CHECK(VALUE_RC("END\r\n", 9) == -1, "off past len");
	CHECK(VALUE_RC("xEND\r\n", 1) == 0 && end == 6, "END at offset");
	CHECK(VALUE_RC("ENDX\r\n", 0) == -1, "ENDX");
	CHECK(VALUE_RC("STORED\r\n", 0) == -1, "not an item");
	CHECK(VALUE_RC("VALUE k 1 3\r\nabc\r\n", 0) == 1, "plain");
	CHECK(VALUE_RC("VALUE k 1 3\r\nabcd\r\n", 0) == -1, "data too long");
	CHECK(VALUE_RC("VALUE k 1 3\r\nab\r\n", 0) == -1, "data too short");
	CHECK(VALUE_RC("VALUE k 1 3\nabc\r\n", 0) == -1, "bare \\n");
	CHECK(VALUE_RC("VALUE k x 3\r\nabc\r\n", 0) == -1, "bad flags");
	CHECK(VALUE_RC("VALUE k 1 -3\r\nabc\r\n", 0) == -1, "bad bytes");
	CHECK(VALUE_RC("VALUE k 1 3 z\r\nabc\r\n", 0) == -1, "bad cas");
	CHECK(VALUE_RC("VALUE k 1 3 4 5\r\nabc\r\n", 0) == -1, "5 words");
	CHECK(VALUE_RC("VALUE k 1\r\nabc\r\n", 0) == -1, "2 words");
	CHECK(VALUE_RC("VALUE \r\n\r\n", 0) == -1, "no key");
	CHECK(VALUE_RC("VALUE k\x01 1 3\r\nabc\r\n", 0) == -1, "ctl key");
	CHECK(VALUE_RC("VALUE k 1 4294967296 3\r\nabc\r\n", 0) == -1,
			"huge bytes");
}

/* ---- builders ---------------------------------------------------------- */

static void
test_build_value_reply(void)
{
	static const char want[] = "VALUE foo 42 5\r\nhello\r\nEND\r\n";
	uint32_t n = (uint32_t)strlen(want), got;
	uint8_t buf[128], *exact;
	struct dp_mc_value v;
	uint32_t end;

	got = dp_mc_build_value_reply(buf, sizeof(buf),
			(const uint8_t *)"foo", 3, 42,
			(const uint8_t *)"hello", 5);
	CHECK(got == n && memcmp(buf, want, n) == 0, "value reply %u", got);
	exact = malloc(n);
	CHECK(dp_mc_build_value_reply(exact, n, (const uint8_t *)"foo", 3, 42,
			(const uint8_t *)"hello", 5) == n &&
			memcmp(exact, want, n) == 0, "exact cap");
	CHECK(dp_mc_build_value_reply(exact, n - 1, (const uint8_t *)"foo", 3,
			42, (const uint8_t *)"hello", 5) == 0, "cap - 1");
	CHECK(dp_mc_build_value_reply(exact, 0, (const uint8_t *)"foo", 3,
			42, (const uint8_t *)"hello", 5) == 0, "cap 0");
	free(exact);

	got = dp_mc_build_value_reply(buf, sizeof(buf),
			(const uint8_t *)"k", 1, 4294967295u, NULL, 0);
	CHECK(got == 29 && memcmp(buf, "VALUE k 4294967295 0\r\n\r\nEND\r\n",
			29) == 0, "empty data, largest flags: %u", got);
	CHECK(dp_mc_parse_value(buf, got, 0, &v, &end) == 1 &&
			v.flags == 4294967295u && v.data_len == 0 &&
			dp_mc_parse_value(buf, got, v.next_off, &v, &end) == 0 &&
			end == got, "round trip");
}

static uint32_t
subget(const char *line, uint32_t mask, uint8_t *dst, uint32_t cap)
{
	CHECK(parse(line) == DP_MC_OK, "subget source %s", line);
	return dp_mc_build_subget(dst, cap, (const uint8_t *)line, &req, mask);
}

static int
same(const uint8_t *b, uint32_t n, const char *s)
{
	return n == strlen(s) && memcmp(b, s, n) == 0;
}

static void
test_build_subget(void)
{
	static const char get[] = "get a bb ccc\r\n";
	static const char gat[] = "gat 100 a bb ccc dddd\r\n";
	char line[400];
	uint8_t buf[512];
	uint32_t n, i, pos;

	n = subget(get, 1, buf, sizeof(buf));
	CHECK(same(buf, n, "get a\r\n"), "mask 1");
	n = subget(get, 5, buf, sizeof(buf));
	CHECK(same(buf, n, "get a ccc\r\n"), "mask 5");
	n = subget(get, 6, buf, sizeof(buf));
	CHECK(same(buf, n, "get bb ccc\r\n"), "mask 6");
	n = subget(get, 7, buf, sizeof(buf));
	CHECK(same(buf, n, get), "mask 7");
	n = subget(get, 0xff, buf, sizeof(buf));
	CHECK(same(buf, n, get), "bits past nkeys ignored");
	CHECK(subget(get, 0, buf, sizeof(buf)) == 0, "empty mask");
	CHECK(subget(get, 8, buf, sizeof(buf)) == 0, "only bits past nkeys");
	CHECK(subget(get, 5, buf, 11) == 11, "exact cap");
	CHECK(subget(get, 5, buf, 10) == 0, "cap too small");

	n = subget("gets  x   y \r\n", 2, buf, sizeof(buf));
	CHECK(same(buf, n, "gets  y\r\n"), "words before keys kept");
	n = subget(gat, 1, buf, sizeof(buf));
	CHECK(same(buf, n, "gat 100 a\r\n"), "gat mask 1");
	n = subget(gat, 10, buf, sizeof(buf));
	CHECK(same(buf, n, "gat 100 bb dddd\r\n"), "gat mask 10");
	n = subget("gats -1 k1 k2\r\n", 2, buf, sizeof(buf));
	CHECK(same(buf, n, "gats -1 k2\r\n"), "gats");

	/* All 32 keys, and the last one alone. */
	pos = (unsigned int)snprintf(line, sizeof(line), "get");
	for (i = 0; i < 32; i++)
		pos += (unsigned int)snprintf(line + pos, sizeof(line) - pos,
				" k%u", i);
	snprintf(line + pos, sizeof(line) - pos, "\r\n");
	n = subget(line, 0xffffffffu, buf, sizeof(buf));
	CHECK(same(buf, n, line), "32 keys");
	n = subget(line, 0x80000000u, buf, sizeof(buf));
	CHECK(same(buf, n, "get k31\r\n"), "key 31");
}

static void
test_build_line(void)
{
	uint8_t buf[32];

	CHECK(dp_mc_build_line(buf, sizeof(buf), "SERVER_ERROR busy\r\n") ==
			19 && memcmp(buf, "SERVER_ERROR busy\r\n", 19) == 0,
			"line");
	CHECK(dp_mc_build_line(buf, 4, "END\r\n") == 0, "cap 4");
	CHECK(dp_mc_build_line(buf, 5, "END\r\n") == 5, "cap 5");
	CHECK(dp_mc_build_line(buf, 0, "") == 0, "empty");
}

/* ---- pseudo-random input ----------------------------------------------- */

static uint64_t rng = UINT64_C(0x9e3779b97f4a7c15);

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static const char *const seeds[] = {
	"get a bb ccc\r\n", "gat 10 k1 k2\r\n", "set k 1 2 3\r\nabc\r\n",
	"cas k 1 2 3 4 noreply\r\nabc\r\n", "delete k 0 noreply\r\n",
	"incr k 5\r\n", "touch k 1\r\n", "flush_all 1 noreply\r\n",
	"mg k v q T1\r\n", "ms k 2 q\r\nhi\r\n", "mn\r\n", "version\r\n",
	"VALUE k 1 3 9\r\nabc\r\nVALUE j 0 1\r\nx\r\nEND\r\n",
	"STORED\r\n", "HD c1\r\n", "12\r\n", "SERVER_ERROR x\r\n",
};

/* Random bytes, bytes from the protocol's alphabet, or a mutated seed. */
static uint32_t
random_buf(uint8_t *b)
{
	static const char alpha[] = " \r\n0123456789-abcdegkmnrstvENDVALUE";
	uint32_t len = rnd() % 301, i, how = rnd() % 3;

	if (how == 0) {
		for (i = 0; i < len; i++)
			b[i] = (uint8_t)rnd();
	} else if (how == 1) {
		for (i = 0; i < len; i++)
			b[i] = (uint8_t)alpha[rnd() % (sizeof(alpha) - 1)];
	} else {
		const char *s = seeds[rnd() % (sizeof(seeds) /
				sizeof(seeds[0]))];
		uint32_t n = (uint32_t)strlen(s), flips = rnd() % 4;

		len = len < n ? len : n;
		memcpy(b, s, len);
		for (i = 0; len != 0 && i < flips; i++)
			b[rnd() % len] = (uint8_t)alpha[rnd() %
				(sizeof(alpha) - 1)];
	}
	return len;
}

static void
test_random(void)
{
	uint8_t tmp[300], out[4096];
	unsigned int iter, i, bad = 0, ok = 0;

	for (iter = 0; iter < 5000; iter++) {
		uint32_t len = random_buf(tmp), off, end, steps;
		uint8_t *b = heap_copy(tmp, len);
		struct dp_mc_value v;
		enum dp_mc_result res;

		res = dp_mc_parse_req(b, len, &req);
		if (res == DP_MC_OK || res == DP_MC_PARTIAL) {
			ok++;
			if (req.line_len > len || req.nkeys > DP_MC_MAX_KEYS ||
					req.keys_end > req.line_len ||
					req.op >= DP_MC_OP_COUNT ||
					req.kind > DP_MC_KIND_NOKEY)
				bad++;
			for (i = 0; i < req.nkeys; i++)
				if (req.keys[i].off + req.keys[i].len >
						req.line_len ||
						req.keys[i].len == 0)
					bad++;
			if (res == DP_MC_OK && req.data_len != 0 &&
					req.line_len + req.data_len > len)
				bad++;
			if (req.nkeys != 0 && dp_mc_build_subget(out,
					rnd() % sizeof(out), b, &req,
					rnd()) > sizeof(out))
				bad++;
		}
		(void)dp_mc_reply_kind(b, len);
		for (off = 0, steps = 0; steps < 64; steps++) {
			int rc = dp_mc_parse_value(b, len, off, &v, &end);

			if (rc != 1)
				break;
			if (v.next_off <= off || v.next_off > len)
				bad++;
			off = v.next_off;
		}
		(void)dp_mc_parse_value(b, len, rnd() % (len + 1), &v, &end);
		free(b);
	}
	CHECK(bad == 0, "%u invariant violations", bad);
	CHECK(ok > 100, "only %u random requests parsed", ok);
}

int
main(void)
{
	test_header();
	test_names();
	test_kinds();
	test_get();
	test_gat();
	test_storage();
	test_keyed();
	test_nokey();
	test_meta();
	test_malformed();
	test_reply_kind();
	test_parse_value();
	test_build_value_reply();
	test_build_subget();
	test_build_line();
	test_random();
	TEST_MAIN_END("test_mc_proto");
}
