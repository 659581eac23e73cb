/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MemSwitch's fast paths against their slow counterparts: the parser's
 * "get KEY\r\n" path (dp_mc_get1_len, tried first by dp_mc_parse_req)
 * against the general parser on valid, near-valid and random lines; the
 * checksum sums (dp_mc_sum, dp_mc_sum_fold) against RFC 1071 word by word
 * (what DPDK's rte_raw_cksum computes), including sums of pieces; and
 * the cache's reply text (dp_mc_hit.text, text_sum, tag) against
 * dp_mc_build_value_reply. Buffers are heap copies of exactly their
 * length, so run-debug (ASan) catches a read past the end.
 */
#include <stdlib.h>
#include <string.h>

#include "dp_mc_cache.h"
#include "dp_mc_proto.h"
#include "tsw_test.h"

static uint64_t rng = UINT64_C(0x9e3779b97f4a7c15);

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static uint8_t *
heap_copy(const void *s, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);

	if (b == NULL)
		abort();
	memcpy(b, s, n);
	return b;
}

/* ---- parser ------------------------------------------------------------ */

static int
same_req(enum dp_mc_result ra, const struct dp_mc_req *a,
		enum dp_mc_result rb, const struct dp_mc_req *b)
{
	unsigned int i;

	if (ra != rb)
		return 0;
	if (ra != DP_MC_OK && ra != DP_MC_PARTIAL)
		return 1;
	if (a->op != b->op || a->kind != b->kind || a->noreply != b->noreply ||
			a->nkeys != b->nkeys || a->keys_off != b->keys_off ||
			a->keys_end != b->keys_end ||
			a->line_len != b->line_len || a->data_len != b->data_len)
		return 0;
	for (i = 0; i < a->nkeys; i++)
		if (a->keys[i].off != b->keys[i].off ||
				a->keys[i].len != b->keys[i].len)
			return 0;
	return 1;
}

static unsigned int fast_taken;

/* Both parsers on buf[0, n); the fast one's answer, when it has one,
 * must be the general parser's. */
static void
compare(const uint8_t *buf, uint32_t n, const char *what)
{
	uint8_t *b = heap_copy(buf, n);
	struct dp_mc_req a, g;
	enum dp_mc_result ra, rg;
	uint32_t k;

	memset(&a, 0xa5, sizeof(a));
	memset(&g, 0x5a, sizeof(g));
	ra = dp_mc_parse_req(b, n, &a);
	rg = dp_mc_parse_req_general(b, n, &g);
	CHECK(same_req(ra, &a, rg, &g), "%s (%u bytes): %s vs general %s",
			what, n, dp_mc_result_name(ra), dp_mc_result_name(rg));
	k = dp_mc_get1_len(b, n);
	/* Read further (as from a frame's buffer): bytes past n, whatever
	 * they are, change nothing. */
	{
		uint8_t *wide = malloc(n + 40);
		uint32_t j;

		if (wide == NULL)
			abort();
		memcpy(wide, buf, n);
		for (j = n; j < n + 40; j++)
			wide[j] = (uint8_t)(rnd() % 2 ? 'x' : rnd());
		CHECK(dp_mc_get1_len_room(wide, n, n + 40 - (rnd() % 40)) == k,
				"%s: get1_len_room", what);
		free(wide);
	}
	if (k != 0) {
		fast_taken++;
		CHECK(rg == DP_MC_OK && g.op == DP_MC_OP_GET && g.nkeys == 1 &&
				g.keys[0].off == 4 && g.keys[0].len == k &&
				g.line_len == k + 6, "%s: get1_len %u", what,
				k);
	}
	free(b);
}

static void
test_parse_valid(void)
{
	uint8_t buf[300];
	uint32_t n, i;

	/* Every key length up to one past the limit, with and without a
	 * following line, every key byte value at every position. */
	for (n = 0; n <= DP_MC_MAX_KEY_LEN + 2; n++) {
		memcpy(buf, "get ", 4);
		for (i = 0; i < n; i++)
			buf[4 + i] = (uint8_t)('a' + i % 26);
		memcpy(buf + 4 + n, "\r\n", 2);
		compare(buf, 4 + n + 2, "get of every length");
		compare(buf, 4 + n + 1, "get without \\n");
		compare(buf, 4 + n, "get without \\r\\n");
		memcpy(buf + 4 + n + 2, "get x\r\n", 7);
		compare(buf, 4 + n + 9, "get and a second line");
	}
	for (i = 0; i < 256; i++) {
		uint32_t pos;

		for (pos = 0; pos < 17; pos++) {
			memcpy(buf, "get 0123456789abcdef\r\n", 22);
			buf[4 + pos] = (uint8_t)i;
			compare(buf, 22, "byte in key");
		}
	}
}

static void
test_parse_near(void)
{
	static const char *const lines[] = {
		"get a\r\n", "get  a\r\n", "get a \r\n", "get a b\r\n",
		"get a\n", "get a\r\r\n", "get\r\n", "get \r\n", "gets a\r\n",
		"Get a\r\n", "get\ta\r\n", "get a\rb\r\n", "get a\r", "get",
		"get a\r\nset b 0 0 1\r\nx\r\n", "getx a\r\n", " get a\r\n",
		"get \x7f\r\n", "get a\x7f\r\n", "get \x80\xff\r\n",
		"get a\x00\r\n", "get noreply\r\n", "gat 1 a\r\n",
	};
	size_t i;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		compare((const uint8_t *)lines[i], (uint32_t)strlen(lines[i]) +
				(strcmp(lines[i], "get a\x00\r\n") == 0 ? 3 : 0),
				lines[i]);
}

static void
test_parse_random(void)
{
	static const char alpha[] = "get \r\n\x7f\x01\x80\xffkK9:_-";
	uint8_t buf[300];
	unsigned int iter;

	for (iter = 0; iter < 200000; iter++) {
		uint32_t n = rnd() % 40, i, keep = rnd() % 5;

		/* Mostly lines that start as a get, so the fast path's
		 * every exit is taken. */
		if (keep != 0) {
			memcpy(buf, "get ", 4);
			for (i = 4; i < n + 4; i++)
				buf[i] = rnd() % 4 ? (uint8_t)('a' + rnd() % 26) :
					(uint8_t)alpha[rnd() % (sizeof(alpha) - 1)];
			n += 4;
			if (rnd() % 2 && n + 2 <= sizeof(buf)) {
				memcpy(buf + n, "\r\n", 2);
				n += 2;
			}
		} else {
			for (i = 0; i < n; i++)
				buf[i] = (uint8_t)alpha[rnd() %
					(sizeof(alpha) - 1)];
		}
		compare(buf, n, "random");
	}
	CHECK(fast_taken > 10000, "fast path taken only %u times", fast_taken);
}

/* ---- checksums --------------------------------------------------------- */

/* RFC 1071 as DPDK's rte_raw_cksum does it: 16-bit words in memory
 * order, the odd byte zero-padded, folded twice. */
static uint16_t
ref_sum(const uint8_t *p, uint32_t n)
{
	uint32_t sum = 0, i;
	uint16_t w;

	for (i = 0; i + 1 < n; i += 2) {
		memcpy(&w, p + i, 2);
		sum += w;
	}
	if (n & 1) {
		w = 0;
		memcpy(&w, p + n - 1, 1);
		sum += w;
	}
	sum = (sum >> 16) + (sum & 0xffff);
	sum = (sum >> 16) + (sum & 0xffff);
	return (uint16_t)sum;
}

static void
test_checksum(void)
{
	uint8_t buf[2048];
	unsigned int iter, bad = 0, split_bad = 0;

	for (iter = 0; iter < 100000; iter++) {
		uint32_t n = rnd() % 1600, i, cut;
		uint8_t *b;
		uint64_t acc;
		int fill = rnd() % 4;

		for (i = 0; i < n; i++)
			buf[i] = fill == 0 ? 0xff : fill == 1 ? 0 :
				(uint8_t)rnd();
		b = heap_copy(buf, n);
		if (dp_mc_sum_fold(dp_mc_sum(b, n, 0)) != ref_sum(b, n))
			bad++;
		/* In two pieces, the first of even length, and with a
		 * folded sum added in as a word. */
		cut = n ? (rnd() % (n + 1)) & ~1u : 0;
		acc = dp_mc_sum(b, cut, 0);
		acc = dp_mc_sum(b + cut, n - cut, acc);
		if (dp_mc_sum_fold(acc) != ref_sum(b, n))
			split_bad++;
		acc = dp_mc_sum(b, cut, dp_mc_sum_fold(dp_mc_sum(b + cut,
				n - cut, 0)));
		if (dp_mc_sum_fold(acc) != ref_sum(b, n))
			split_bad++;
		free(b);
	}
	CHECK(bad == 0, "%u sums differ from RFC 1071", bad);
	CHECK(split_bad == 0, "%u split sums differ", split_bad);
	CHECK(dp_mc_sum_fold(dp_mc_sum(buf, 0, 0)) == 0, "empty sum");
	memset(buf, 0xff, 64);
	CHECK(dp_mc_sum_fold(dp_mc_sum(buf, 64, 0)) == 0xffff, "all ones");
}

/* ---- the cache's reply text -------------------------------------------- */

static void
test_cache_text(void)
{
	struct dp_mc_cache_config cfg = {
		.nslots = 64, .max_value = 1400, .hot_threshold = 0,
		.sketch_width = 256, .decay_every = 1000000, .nstripes = 16,
		.ttl_tsc = 1000, .write_timeout_tsc = 100,
		.pending_timeout_tsc = 50,
	};
	static const uint32_t flag_vals[] = { 0, 7, 10, 12345, UINT32_MAX };
	static const uint32_t key_lens[] = { 1, 2, 8, 13, 100, 249, 250 };
	static const uint32_t value_lens[] = { 0, 1, 2, 31, 32, 1023, 1400 };
	uint8_t key[250], value[1400], want[1800];
	struct dp_mc_cache *c = NULL;
	uint64_t now = 1000000, ticket = 1;
	size_t f, k, v;
	unsigned int i, iter = 0;

	CHECK(dp_mc_cache_create(&cfg, &c) == 0, "create");
	if (c == NULL)
		return;
	for (i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(0x21 + rnd() % 94);
	for (i = 0; i < sizeof(value); i++)
		value[i] = (uint8_t)rnd();
	for (f = 0; f < sizeof(flag_vals) / sizeof(flag_vals[0]); f++)
	for (k = 0; k < sizeof(key_lens) / sizeof(key_lens[0]); k++)
	for (v = 0; v < sizeof(value_lens) / sizeof(value_lens[0]); v++) {
		uint32_t kl = key_lens[k], vl = value_lens[v];
		uint16_t tag = (uint16_t)(rnd() % 256);
		uint64_t h;
		struct dp_mc_hit hit;
		uint32_t n;

		/* Each its own item: the pool id is part of the hash. */
		h = dp_mc_cache_hash(1000 + iter++, key, kl);
		now += 10;
		ticket++;
		CHECK(dp_mc_cache_read_miss_tag(c, h, key, kl, 1, ticket, now,
					tag), "read_miss_tag");
		CHECK(dp_mc_cache_fill(c, h, key, kl, ticket, flag_vals[f],
					value, vl, now) == DP_MC_FILL_FILLED,
				"fill");
		CHECK(dp_mc_cache_lookup(c, h, key, kl, now, &hit), "hit");
		n = dp_mc_build_value_reply(want, sizeof(want), key,
				(uint8_t)kl, flag_vals[f], value, vl);
		CHECK(hit.text_len == n && memcmp(hit.text, want, n) == 0,
				"text: key %u value %u flags %u", kl, vl,
				flag_vals[f]);
		CHECK(hit.value_len == vl && hit.flags == flag_vals[f] &&
				(vl == 0 || memcmp(hit.value, value, vl) == 0) &&
				hit.value >= hit.text &&
				hit.value + vl <= hit.text + hit.text_len,
				"value in the text");
		CHECK(hit.text_sum == ref_sum(want, n), "text_sum");
		CHECK(hit.tag == tag, "tag %u, want %u", hit.tag, tag);
	}
	/* read_miss records tag 0. */
	now += 10;
	CHECK(dp_mc_cache_read_miss(c, dp_mc_cache_hash(2, key, 5), key, 5, 1,
				99, now), "read_miss");
	CHECK(dp_mc_cache_fill(c, dp_mc_cache_hash(2, key, 5), key, 5, 99, 1,
				value, 3, now) == DP_MC_FILL_FILLED, "fill");
	{
		struct dp_mc_hit hit;

		CHECK(dp_mc_cache_lookup(c, dp_mc_cache_hash(2, key, 5), key, 5,
					now, &hit) && hit.tag == 0, "tag 0");
	}
	dp_mc_cache_free(c);
}

int
main(void)
{
	test_parse_valid();
	test_parse_near();
	test_parse_random();
	test_checksum();
	test_cache_text();
	TEST_MAIN_END("test_mc_fast");
}
