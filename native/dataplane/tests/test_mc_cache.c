/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memcached hot-key cache (dp_mc_cache.c) without DPDK: admission,
 * hits, expiry, LRU and the memory bound, and every coherence race the
 * header names. Then a model check: a simulated switch, network and
 * server with reordering, loss, late write replies, flushes and time,
 * where every hit must equal the server's value at that moment.
 * Times are plain numbers standing in for TSC values.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dp_mc_cache.h"
#include "tsw_test.h"

#define T0 1000000
#define TTL 1000
#define WT 100		/* write timeout */
#define PT 50		/* pending timeout */

static struct dp_mc_cache_config
config(void)
{
	return (struct dp_mc_cache_config){
		.nslots = 64,
		.max_value = 64,
		.hot_threshold = 3,
		.sketch_width = 256,
		.decay_every = 1000000,
		.nstripes = 16,
		.ttl_tsc = TTL,
		.write_timeout_tsc = WT,
		.pending_timeout_tsc = PT,
	};
}

static struct dp_mc_cache *
make(const struct dp_mc_cache_config *cfg)
{
	struct dp_mc_cache *c = NULL;
	int rc = dp_mc_cache_create(cfg, &c);

	CHECK(rc == 0 && c != NULL, "create: %d", rc);
	if (c == NULL)
		exit(1);
	return c;
}

static uint64_t
hash(uint32_t pool, const char *key)
{
	return dp_mc_cache_hash(pool, (const uint8_t *)key,
			(uint32_t)strlen(key));
}

static bool
miss(struct dp_mc_cache *c, uint32_t pool, const char *key, uint64_t ticket,
		uint64_t now)
{
	return dp_mc_cache_read_miss(c, hash(pool, key), (const uint8_t *)key,
			(uint32_t)strlen(key), UINT16_MAX, ticket, now);
}

static enum dp_mc_fill_result
fill(struct dp_mc_cache *c, uint32_t pool, const char *key, uint64_t ticket,
		const char *value, uint64_t now)
{
	return dp_mc_cache_fill(c, hash(pool, key), (const uint8_t *)key,
			(uint32_t)strlen(key), ticket, 0,
			(const uint8_t *)value, (uint32_t)strlen(value), now);
}

/* The cached value as a string, or NULL on a miss. */
static const char *
look(struct dp_mc_cache *c, uint32_t pool, const char *key, uint64_t now)
{
	static char buf[1024];
	struct dp_mc_hit hit;

	if (!dp_mc_cache_lookup(c, hash(pool, key), (const uint8_t *)key,
			(uint32_t)strlen(key), now, &hit))
		return NULL;
	memcpy(buf, hit.value, hit.value_len);
	buf[hit.value_len] = '\0';
	return buf;
}

static bool
is(const char *got, const char *want)
{
	return got != NULL && strcmp(got, want) == 0;
}

/* Caches key = value through a read_miss and its fill. */
static void
put(struct dp_mc_cache *c, uint32_t pool, const char *key, const char *value,
		uint64_t ticket, uint64_t now)
{
	CHECK(miss(c, pool, key, ticket, now), "read_miss %s", key);
	CHECK(fill(c, pool, key, ticket, value, now) == DP_MC_FILL_FILLED,
			"fill %s", key);
}

static uint32_t
write_begin(struct dp_mc_cache *c, uint32_t pool, const char *key,
		uint64_t now, bool *inv)
{
	return dp_mc_cache_write_begin(c, hash(pool, key), now, inv);
}

static void
test_create(void)
{
	struct dp_mc_cache_config base = config(), cfg;
	struct dp_mc_cache *c = (struct dp_mc_cache *)&c;
	unsigned int i;

	/* Each a change from a good configuration that makes it bad. */
	for (i = 0; i < 14; i++) {
		cfg = base;
		switch (i) {
		case 0: cfg.nslots = 0; break;
		case 1: cfg.nslots = 0x80000001u; break;
		case 2: cfg.max_value = 0; break;
		case 3: cfg.max_value = (1u << 20) + 1; break;
		case 4: cfg.sketch_width = 0; break;
		case 5: cfg.sketch_width = 96; break;
		case 6: cfg.nstripes = 0; break;
		case 7: cfg.nstripes = 24; break;
		case 8: cfg.nstripes = 1u << 17; break;
		case 9: cfg.decay_every = 0; break;
		case 10: cfg.ttl_tsc = 0; break;
		case 11: cfg.write_timeout_tsc = 0; break;
		case 12: cfg.pending_timeout_tsc = 0; break;
		case 13: cfg.hot_threshold = 70000; break;
		}
		CHECK(dp_mc_cache_create(&cfg, &c) == -EINVAL && c == NULL,
				"bad config %u accepted", i);
	}
	/* The edges that are fine; a 1 MiB value fits. */
	cfg = base;
	cfg.nslots = 1;
	cfg.max_value = 1u << 20;
	cfg.sketch_width = 1;
	cfg.nstripes = 1u << 16;
	cfg.hot_threshold = 0;
	c = make(&cfg);
	{
		uint8_t *big = calloc(1, 1u << 20);
		struct dp_mc_hit hit;
		uint64_t h = hash(0, "big");

		CHECK(dp_mc_cache_count(c, h) == 1, "one counter per row");
		CHECK(dp_mc_cache_read_miss(c, h, (const uint8_t *)"big", 3, 0,
				1, T0), "threshold 0 admits all");
		big[(1u << 20) - 1] = 0x5a;
		CHECK(dp_mc_cache_fill(c, h, (const uint8_t *)"big", 3, 1, 9,
				big, 1u << 20, T0) == DP_MC_FILL_FILLED,
				"1 MiB");
		CHECK(dp_mc_cache_lookup(c, h, (const uint8_t *)"big", 3, T0,
				&hit) && hit.value_len == 1u << 20 &&
				hit.value[(1u << 20) - 1] == 0x5a &&
				hit.flags == 9, "1 MiB hit");
		free(big);
	}
	dp_mc_cache_free(c);
	dp_mc_cache_free(NULL);

	CHECK(strcmp(dp_mc_fill_result_name(DP_MC_FILL_FILLED), "filled") == 0,
			"name %s", dp_mc_fill_result_name(DP_MC_FILL_FILLED));
	CHECK(strcmp(dp_mc_fill_result_name(DP_MC_FILL_NOT_PENDING),
			"not_pending") == 0, "name not_pending");
	CHECK(strcmp(dp_mc_fill_result_name(DP_MC_FILL_RESULT_COUNT), "?") == 0,
			"name out of range");
}

static void
test_hash(void)
{
	/* Pool, length and every byte matter. */
	CHECK(hash(0, "foo") != hash(1, "foo"), "pool ignored");
	CHECK(hash(0, "foo") != hash(0, "fop"), "byte ignored");
	CHECK(hash(0, "0123456789abcdef") != hash(0, "0123456789abcdeg"),
			"second word ignored");
	CHECK(dp_mc_cache_hash(0, (const uint8_t *)"a\0", 2) !=
			dp_mc_cache_hash(0, (const uint8_t *)"a", 1),
			"length ignored");
	CHECK(hash(0, "foo") == hash(0, "foo"), "not deterministic");
}

static void
test_admission(void)
{
	struct dp_mc_cache_config cfg = config();
	struct dp_mc_cache *c = make(&cfg);
	const char *k = "user:1";
	uint64_t h = hash(0, k);
	uint32_t e, i;

	for (i = 1; i <= 3; i++) {
		e = dp_mc_cache_count(c, h);
		CHECK(e == i, "estimate %u after %u gets", e, i);
		CHECK(dp_mc_cache_read_miss(c, h, (const uint8_t *)k, 6, e, i,
				T0) == (i == 3), "admitted after %u gets", i);
	}
	/* Another key is still cold. */
	CHECK(dp_mc_cache_count(c, hash(0, "user:2")) == 1, "cold key");
	/* Keys the cache cannot hold are never admitted. */
	CHECK(!dp_mc_cache_read_miss(c, h, (const uint8_t *)"", 0, 99, 9, T0),
			"empty key");
	{
		char longkey[252];

		memset(longkey, 'x', 251);
		longkey[251] = '\0';
		CHECK(!miss(c, 0, longkey, 9, T0), "251-byte key");
		longkey[250] = '\0';
		CHECK(miss(c, 0, longkey, 9, T0), "250-byte key");
		CHECK(fill(c, 0, longkey, 9, "v", T0) == DP_MC_FILL_FILLED,
				"250-byte key fill");
		CHECK(is(look(c, 0, longkey, T0), "v"), "250-byte key hit");
	}
	dp_mc_cache_free(c);

	/* Decay: with a halving every 4 counts a key counted once per
	 * round among three others never gets hot, one counted often does. */
	cfg.decay_every = 4;
	c = make(&cfg);
	for (i = 0; i < 100; i++) {
		e = dp_mc_cache_count(c, hash(0, "rare"));
		dp_mc_cache_count(c, hash(0, "a"));
		dp_mc_cache_count(c, hash(0, "b"));
		dp_mc_cache_count(c, hash(0, "c"));
	}
	CHECK(e < 3, "rare key estimate %u", e);
	for (i = 0; i < 4; i++)
		e = dp_mc_cache_count(c, hash(0, "hot"));
	CHECK(e >= 3 && e <= 4, "hot key estimate %u", e);
	dp_mc_cache_free(c);

	/* Saturation: the counters stop at 65535. */
	cfg = config();
	c = make(&cfg);
	for (i = 0; i < 70000; i++)
		e = dp_mc_cache_count(c, h);
	CHECK(e == UINT16_MAX, "saturated at %u", e);
	dp_mc_cache_free(c);
}

static void
test_hit_and_ttl(void)
{
	struct dp_mc_cache_config cfg = config();
	struct dp_mc_cache *c = make(&cfg);
	struct dp_mc_hit hit;
	uint64_t h = hash(0, "k");

	CHECK(look(c, 0, "k", T0) == NULL, "empty cache");
	CHECK(fill(c, 0, "k", 1, "v", T0) == DP_MC_FILL_NOT_PENDING,
			"fill without a get");
	CHECK(miss(c, 0, "k", 1, T0), "read_miss");
	CHECK(look(c, 0, "k", T0) == NULL, "pending is not a hit");
	CHECK(dp_mc_cache_entries(c) == 0, "pending counted");
	CHECK(dp_mc_cache_fill(c, h, (const uint8_t *)"k", 1, 1, 0xabcd,
			(const uint8_t *)"hello", 5, T0 + 10) ==
			DP_MC_FILL_FILLED, "fill");
	CHECK(dp_mc_cache_entries(c) == 1, "entries %u",
			dp_mc_cache_entries(c));
	CHECK(dp_mc_cache_lookup(c, h, (const uint8_t *)"k", 1, T0 + 11,
			&hit) && hit.flags == 0xabcd && hit.value_len == 5 &&
			memcmp(hit.value, "hello", 5) == 0, "hit");
	/* A second reply, or a get of a live key: nothing changes. */
	CHECK(fill(c, 0, "k", 1, "other", T0 + 12) == DP_MC_FILL_NOT_PENDING,
			"second fill");
	CHECK(!miss(c, 0, "k", 2, T0 + 12), "read_miss of a live key");
	CHECK(is(look(c, 0, "k", T0 + 12), "hello"), "value kept");
	CHECK(look(c, 0, "K", T0 + 12) == NULL, "other key");

	/* TTL runs from the fill. */
	CHECK(is(look(c, 0, "k", T0 + 10 + TTL - 1), "hello"), "before TTL");
	CHECK(look(c, 0, "k", T0 + 10 + TTL) == NULL, "at TTL");
	CHECK(dp_mc_cache_entries(c) == 0, "expired counted");
	put(c, 0, "k", "again", 3, T0 + 10 + TTL);
	CHECK(is(look(c, 0, "k", T0 + 10 + TTL), "again"), "refilled");

	/* Pending timeout: inclusive. */
	CHECK(miss(c, 0, "p", 4, T0), "read_miss p");
	CHECK(fill(c, 0, "p", 4, "x", T0 + PT) == DP_MC_FILL_FILLED,
			"fill at the deadline");
	CHECK(miss(c, 0, "q", 5, T0), "read_miss q");
	CHECK(fill(c, 0, "q", 5, "x", T0 + PT + 1) == DP_MC_FILL_EXPIRED,
			"fill past the deadline");
	CHECK(fill(c, 0, "q", 5, "x", T0 + PT + 1) == DP_MC_FILL_NOT_PENDING,
			"expired pending dropped");
	CHECK(look(c, 0, "q", T0 + PT + 1) == NULL, "expired fill hit");
	/* A pending fill nobody answered is replaced after its deadline. */
	CHECK(miss(c, 0, "r", 6, T0), "read_miss r");
	CHECK(!miss(c, 0, "r", 7, T0 + PT), "second get while pending");
	CHECK(miss(c, 0, "r", 6, T0 + PT), "same ticket again");
	CHECK(miss(c, 0, "r", 8, T0 + PT + 1), "replaced after deadline");
	CHECK(fill(c, 0, "r", 6, "x", T0 + PT + 2) == DP_MC_FILL_NOT_PENDING,
			"old ticket");
	CHECK(fill(c, 0, "r", 8, "y", T0 + PT + 2) == DP_MC_FILL_FILLED,
			"new ticket");
	dp_mc_cache_free(c);
}

static void
test_too_big(void)
{
	struct dp_mc_cache_config cfg = config();
	struct dp_mc_cache *c;
	char v[66];

	cfg.max_value = 64;
	c = make(&cfg);
	memset(v, 'v', 65);
	v[65] = '\0';
	CHECK(miss(c, 0, "k", 1, T0), "read_miss");
	CHECK(fill(c, 0, "k", 1, v, T0) == DP_MC_FILL_TOO_BIG, "65 bytes");
	CHECK(look(c, 0, "k", T0) == NULL, "too big hit");
	CHECK(fill(c, 0, "k", 1, v + 1, T0) == DP_MC_FILL_NOT_PENDING,
			"pending kept after too big");
	CHECK(miss(c, 0, "k", 2, T0), "read_miss again");
	CHECK(fill(c, 0, "k", 2, v + 1, T0) == DP_MC_FILL_FILLED, "64 bytes");
	CHECK(is(look(c, 0, "k", T0), v + 1), "64-byte hit");
	dp_mc_cache_free(c);
}

static void
test_lru(void)
{
	struct dp_mc_cache_config cfg = config();
	struct dp_mc_cache *c;
	char key[32], val[32];
	unsigned int i, hits = 0;
	uint32_t most = 0;

	/* One set of 4: the least recently used goes. */
	cfg.nslots = 1;
	c = make(&cfg);
	put(c, 0, "a", "A", 1, T0);
	put(c, 0, "b", "B", 2, T0 + 1);
	put(c, 0, "c", "C", 3, T0 + 2);
	put(c, 0, "d", "D", 4, T0 + 3);
	CHECK(dp_mc_cache_entries(c) == 4, "entries %u",
			dp_mc_cache_entries(c));
	CHECK(is(look(c, 0, "a", T0 + 4), "A"), "a");
	put(c, 0, "e", "E", 5, T0 + 5);
	CHECK(look(c, 0, "b", T0 + 6) == NULL, "b should be evicted");
	CHECK(is(look(c, 0, "a", T0 + 6), "A") && is(look(c, 0, "c", T0 + 6),
			"C") && is(look(c, 0, "d", T0 + 6), "D") &&
			is(look(c, 0, "e", T0 + 6), "E"), "others kept");
	CHECK(dp_mc_cache_entries(c) == 4, "entries %u",
			dp_mc_cache_entries(c));
	/* An expired entry goes before the least recently used one, even
	 * when it was used last: a expires at T0 + TTL, c is the LRU. */
	CHECK(is(look(c, 0, "a", T0 + 7), "A"), "a again");
	put(c, 0, "f", "F", 6, T0 + TTL);
	CHECK(look(c, 0, "a", T0 + TTL) == NULL, "a expired");
	CHECK(is(look(c, 0, "c", T0 + TTL), "C") && is(look(c, 0, "d",
			T0 + TTL), "D") && is(look(c, 0, "e", T0 + TTL), "E") &&
			is(look(c, 0, "f", T0 + TTL), "F"), "live ones kept");
	dp_mc_cache_free(c);

	/* Many more keys than slots: never more entries than slots, and
	 * the most recent keys are there. */
	cfg.nslots = 64;
	c = make(&cfg);
	for (i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "key:%u", i);
		snprintf(val, sizeof(val), "val:%u", i);
		put(c, 0, key, val, 100 + i, T0 + i);
		if (dp_mc_cache_entries(c) > most)
			most = dp_mc_cache_entries(c);
	}
	CHECK(most == 64, "at most %u entries", most);
	for (i = 1990; i < 2000; i++) {
		snprintf(key, sizeof(key), "key:%u", i);
		snprintf(val, sizeof(val), "val:%u", i);
		hits += is(look(c, 0, key, T0 + 2000), val);
	}
	CHECK(hits == 10, "recent keys lost: %u of 10", hits);
	dp_mc_cache_free(c);
}

static void
test_pools(void)
{
	struct dp_mc_cache_config cfg = config();
	struct dp_mc_cache *c = make(&cfg);
	bool inv = false;

	put(c, 0, "k", "zero", 1, T0);
	put(c, 1, "k", "one", 2, T0);
	CHECK(dp_mc_cache_entries(c) == 2, "two entries");
	CHECK(is(look(c, 0, "k", T0), "zero"), "pool 0");
	CHECK(is(look(c, 1, "k", T0), "one"), "pool 1");
	dp_mc_cache_write_end(c, write_begin(c, 1, "k", T0, &inv));
	CHECK(inv, "pool 1 invalidated");
	CHECK(look(c, 1, "k", T0) == NULL, "pool 1 dropped");
	CHECK(is(look(c, 0, "k", T0), "zero"), "pool 0 kept");
	dp_mc_cache_free(c);
}

static void
test_races(void)
{
	struct dp_mc_cache_config cfg = config();
	struct dp_mc_cache *c = make(&cfg);
	uint32_t s1, s2;
	bool inv;

	/* A write between the get and its reply: the reply read the old
	 * value, and is refused. */
	CHECK(miss(c, 0, "k", 1, T0), "read_miss");
	s1 = write_begin(c, 0, "k", T0 + 1, &inv);
	CHECK(inv, "pending invalidated");
	CHECK(fill(c, 0, "k", 1, "old", T0 + 2) == DP_MC_FILL_RACED, "raced");
	CHECK(look(c, 0, "k", T0 + 2) == NULL, "raced value served");
	/* While the write is in flight no get may record a fill... */
	CHECK(!miss(c, 0, "k", 2, T0 + 3), "read_miss during write");
	CHECK(fill(c, 0, "k", 2, "old", T0 + 4) == DP_MC_FILL_NOT_PENDING,
			"fill during write");
	/* ...until its reply has passed. */
	dp_mc_cache_write_end(c, s1);
	CHECK(miss(c, 0, "k", 3, T0 + 5), "read_miss after write");
	CHECK(fill(c, 0, "k", 3, "new", T0 + 6) == DP_MC_FILL_FILLED, "fill");
	CHECK(is(look(c, 0, "k", T0 + 6), "new"), "hit");

	/* A write drops a live value before it leaves the switch. */
	s1 = write_begin(c, 0, "k", T0 + 7, &inv);
	CHECK(inv && look(c, 0, "k", T0 + 7) == NULL, "live invalidated");
	CHECK(dp_mc_cache_entries(c) == 0, "entries %u",
			dp_mc_cache_entries(c));
	/* Two writes in flight: the stripe waits for both. */
	s2 = write_begin(c, 0, "k", T0 + 8, &inv);
	CHECK(!inv, "nothing left to invalidate");
	dp_mc_cache_write_end(c, s1);
	CHECK(!miss(c, 0, "k", 4, T0 + 9), "one of two writes ended");
	dp_mc_cache_write_end(c, s2);
	CHECK(miss(c, 0, "k", 4, T0 + 9), "both ended");
	/* An extra end changes nothing. */
	dp_mc_cache_write_end(c, s2);
	dp_mc_cache_write_end(c, 0xffffu);	/* no such stripe */
	CHECK(fill(c, 0, "k", 4, "v4", T0 + 10) == DP_MC_FILL_FILLED, "fill 4");

	/* Wrong ticket: refused, and the right one still fills. */
	CHECK(miss(c, 0, "w", 10, T0 + 20), "read_miss w");
	CHECK(fill(c, 0, "w", 11, "x", T0 + 21) == DP_MC_FILL_NOT_PENDING,
			"wrong ticket");
	CHECK(fill(c, 0, "w", 10, "y", T0 + 21) == DP_MC_FILL_FILLED,
			"right ticket");
	CHECK(is(look(c, 0, "w", T0 + 21), "y"), "right value");

	/* A client retrying a get with the same ticket across a write: the
	 * first get's late reply must not fill for the second. */
	CHECK(miss(c, 0, "t", 20, T0 + 30), "read_miss t");
	dp_mc_cache_write_end(c, write_begin(c, 0, "t", T0 + 31, &inv));
	CHECK(!miss(c, 0, "t", 20, T0 + 32), "same ticket after write");
	CHECK(fill(c, 0, "t", 20, "old", T0 + 33) == DP_MC_FILL_RACED,
			"stale reply");
	CHECK(look(c, 0, "t", T0 + 33) == NULL, "stale hit");
	dp_mc_cache_free(c);

	/* Keys that share a stripe: one's write costs the other its fill. */
	cfg.nstripes = 1;
	c = make(&cfg);
	CHECK(miss(c, 0, "a", 1, T0), "read_miss a");
	s1 = write_begin(c, 0, "b", T0, &inv);
	CHECK(!inv, "b had nothing");
	CHECK(fill(c, 0, "a", 1, "v", T0) == DP_MC_FILL_RACED, "false sharing");
	CHECK(!miss(c, 0, "a", 2, T0), "stripe busy");
	dp_mc_cache_write_end(c, s1);
	put(c, 0, "a", "v", 3, T0);
	dp_mc_cache_free(c);
}

static void
test_write_timeout(void)
{
	struct dp_mc_cache_config cfg = config();
	struct dp_mc_cache *c = make(&cfg);
	uint32_t s1, s2;
	bool inv;

	/* A write whose reply never comes holds the stripe write_timeout
	 * from the last write, then lets go. */
	s1 = write_begin(c, 0, "k", T0, &inv);
	CHECK(!miss(c, 0, "k", 1, T0 + WT - 1), "busy before timeout");
	write_begin(c, 0, "k", T0 + 50, &inv);
	CHECK(!miss(c, 0, "k", 1, T0 + 50 + WT - 1), "a later write extends");
	CHECK(miss(c, 0, "k", 1, T0 + 50 + WT), "free after timeout");
	CHECK(fill(c, 0, "k", 1, "v", T0 + 50 + WT) == DP_MC_FILL_FILLED,
			"fill after timeout");

	/* The timed-out write's reply comes in late, after a new write has
	 * gone out: it must not end the new write's hold. */
	s2 = write_begin(c, 0, "k", T0 + 200, &inv);
	CHECK(inv, "invalidated");
	dp_mc_cache_write_end(c, s1);
	CHECK(!miss(c, 0, "k", 2, T0 + 201), "late end freed a new write");
	dp_mc_cache_write_end(c, s2);
	CHECK(miss(c, 0, "k", 2, T0 + 202), "new write ended");
	/* A clock read before the last write counts as busy. */
	write_begin(c, 0, "j", T0 + 300, &inv);
	CHECK(!miss(c, 0, "j", 3, T0 + 299 - WT), "time went backwards");
	dp_mc_cache_free(c);
}

static void
test_flush(void)
{
	struct dp_mc_cache_config cfg = config();
	struct dp_mc_cache *c = make(&cfg);
	unsigned int i;
	char key[16];

	for (i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "k%u", i);
		put(c, 0, key, "v", 1 + i, T0);
	}
	CHECK(miss(c, 0, "p", 100, T0), "read_miss p");
	CHECK(dp_mc_cache_entries(c) == 10, "entries %u",
			dp_mc_cache_entries(c));
	dp_mc_cache_flush(c);
	CHECK(dp_mc_cache_entries(c) == 0, "entries after flush %u",
			dp_mc_cache_entries(c));
	for (i = 0; i < 10; i++) {
		snprintf(key, sizeof(key), "k%u", i);
		CHECK(look(c, 0, key, T0 + 1) == NULL, "hit after flush");
	}
	CHECK(fill(c, 0, "p", 100, "v", T0 + 1) == DP_MC_FILL_RACED,
			"pending across a flush");
	/* The flush_all may still be on its way to the servers: no fills
	 * for write_timeout from the first call after it. */
	CHECK(!miss(c, 0, "q", 101, T0 + WT), "read_miss after flush");
	CHECK(miss(c, 0, "q", 101, T0 + 1 + WT), "hold over");
	CHECK(fill(c, 0, "q", 101, "v", T0 + 1 + WT) == DP_MC_FILL_FILLED,
			"fill after hold");
	CHECK(dp_mc_cache_entries(c) == 1, "entries %u",
			dp_mc_cache_entries(c));

	/* From another thread: nothing until the owner's next call. */
	CHECK(miss(c, 0, "r", 102, T0 + 200), "read_miss r");
	dp_mc_cache_flush_async(c);
	dp_mc_cache_flush_async(c);	/* two requests, one flush */
	CHECK(dp_mc_cache_entries(c) == 1, "applied by another thread");
	CHECK(look(c, 0, "q", T0 + 201) == NULL, "hit after async flush");
	CHECK(dp_mc_cache_entries(c) == 0, "entries %u",
			dp_mc_cache_entries(c));
	CHECK(fill(c, 0, "r", 102, "v", T0 + 202) == DP_MC_FILL_RACED,
			"pending across an async flush");
	CHECK(!miss(c, 0, "s", 103, T0 + 200 + WT), "hold after async flush");
	CHECK(miss(c, 0, "s", 103, T0 + 201 + WT), "hold over");
	/* Applied once: the next calls do not flush again. */
	CHECK(fill(c, 0, "s", 103, "v", T0 + 202 + WT) == DP_MC_FILL_FILLED,
			"fill");
	CHECK(is(look(c, 0, "s", T0 + 203 + WT), "v"), "hit");
	/* A request seen first by write_end (no time) is applied there. */
	dp_mc_cache_flush_async(c);
	dp_mc_cache_write_end(c, 0);
	CHECK(dp_mc_cache_entries(c) == 0, "flush at write_end");
	CHECK(!miss(c, 0, "s", 104, T0 + 300), "hold starts with a time");
	dp_mc_cache_free(c);
}

/* ---- model check ------------------------------------------------------- */

/*
 * A switch using the cache the way dp_mc.c does, a network that delays,
 * reorders and loses, and one memcached server per pool (all simulated
 * in one array of item versions). The rules the world keeps are the
 * header's assumptions: a write or flush_all reaches the server, or is
 * lost, within write_timeout of being forwarded. Everything else may be
 * late: get replies (also past pending_timeout), write replies (also
 * after the stripe timed out, as a request-table reap would end them),
 * or never (noreply writes).
 *
 * The check at every hit: the value is the server's current one and no
 * write to the key (or flush) is still on its way.
 */
#define MKEYS 50
#define MQ 4096
#define M_WT 200
#define M_PT 150
#define M_TTL 3000
#define M_MAXV 48
#ifndef M_OPS
#define M_OPS 500000
#endif

struct m_msg {
	int key;		/* -1: a flush_all */
	uint64_t ticket;	/* gets */
	uint32_t ver;		/* writes: new version (0 deletes); replies */
	uint32_t token;		/* writes */
	uint64_t sent;		/* forwarded at */
	uint64_t when;		/* replies and late ends: due at */
};

struct m_queue {
	struct m_msg m[MQ];
	unsigned int n;
};

static struct m_world {
	struct dp_mc_cache *c;
	uint64_t now;
	uint64_t rng;
	uint64_t tickets;
	uint32_t next_ver;
	uint32_t ver[MKEYS];		/* the server's items */
	unsigned int writes_out[MKEYS];	/* forwarded, not yet applied */
	unsigned int flushes_out;
	struct m_queue gets, replies, writes, wreplies, late;
	/* What happened, so the test can tell it exercised something. */
	unsigned long hits, stale, gets_sent;
	unsigned long fill_results[DP_MC_FILL_RESULT_COUNT];
	uint32_t most_entries;
} w;

static uint32_t
m_rand(uint32_t n)
{
	/* xorshift64*: fixed seed, so a failure reproduces. */
	w.rng ^= w.rng >> 12;
	w.rng ^= w.rng << 25;
	w.rng ^= w.rng >> 27;
	return (uint32_t)((w.rng * UINT64_C(2685821657736338717)) >> 32) % n;
}

static void
m_push(struct m_queue *q, struct m_msg m)
{
	if (q->n < MQ)
		q->m[q->n++] = m;	/* a full queue loses the message */
}

/* A random message out of q (reordering), or NULL. */
static bool
m_take(struct m_queue *q, struct m_msg *out)
{
	unsigned int i;

	if (q->n == 0)
		return false;
	i = m_rand(q->n);
	*out = q->m[i];
	q->m[i] = q->m[--q->n];
	return true;
}

/* Key k is "key<k/2>" in pool k%2: the same names in both pools. */
static uint32_t
m_key(int k, char *buf)
{
	return (uint32_t)snprintf(buf, 16, "key%d", k / 2);
}

static uint64_t
m_hash(int k)
{
	char buf[16];
	uint32_t n = m_key(k, buf);

	return dp_mc_cache_hash((uint32_t)(k % 2), (const uint8_t *)buf, n);
}

/* The item bytes of version v of key k: 16 to 56 bytes, so some are
 * over M_MAXV. */
static uint32_t
m_value(int k, uint32_t v, uint8_t *buf)
{
	uint32_t n = (uint32_t)snprintf((char *)buf, 64, "k%02d:v%010u:", k, v);
	uint32_t pad = v * 7 % 41;

	memset(buf + n, 'a' + v % 26, pad);
	return n + pad;
}

static void
m_get(void)
{
	int k = (int)m_rand(MKEYS);
	uint64_t h = m_hash(k);
	struct dp_mc_hit hit;
	char key[16];
	uint32_t kl = m_key(k, key), est;

	est = dp_mc_cache_count(w.c, h);
	if (dp_mc_cache_lookup(w.c, h, (const uint8_t *)key, kl, w.now, &hit)) {
		uint8_t want[64];
		uint32_t n = m_value(k, w.ver[k], want);

		w.hits++;
		if (w.ver[k] == 0 || hit.value_len != n ||
				memcmp(hit.value, want, n) != 0 ||
				w.writes_out[k] != 0 || w.flushes_out != 0) {
			if (w.stale++ < 5)
				fprintf(stderr, "stale hit at %lu: key %d "
					"holds %.*s, server v%u, %u writes "
					"and %u flushes out\n",
					(unsigned long)w.now, k,
					(int)hit.value_len, hit.value,
					w.ver[k], w.writes_out[k],
					w.flushes_out);
		}
		return;
	}
	/* Forwarded either way; its reply is offered to the cache even
	 * when no fill was recorded, which must then be refused. */
	++w.tickets;
	dp_mc_cache_read_miss(w.c, h, (const uint8_t *)key, kl, est, w.tickets,
			w.now);
	m_push(&w.gets, (struct m_msg){ .key = k, .ticket = w.tickets,
			.sent = w.now });
	w.gets_sent++;
}

static void
m_write(void)
{
	int k = (int)m_rand(MKEYS);
	bool inv;
	struct m_msg m = { .key = k, .sent = w.now };

	m.ver = m_rand(8) == 0 ? 0 : ++w.next_ver;
	m.token = dp_mc_cache_write_begin(w.c, m_hash(k), w.now, &inv);
	/* Some writes take their time, up to the deadline. */
	m.when = w.now + (m_rand(4) == 0 ? m_rand(M_WT) : 0);
	w.writes_out[k]++;
	m_push(&w.writes, m);
}

static void
m_flush(void)
{
	dp_mc_cache_flush(w.c);
	w.flushes_out++;
	m_push(&w.writes, (struct m_msg){ .key = -1, .sent = w.now,
			.when = w.now + m_rand(M_WT) });
}

/* The server takes a get: answers with the item as it is now. */
static void
m_serve_get(void)
{
	struct m_msg m;

	if (!m_take(&w.gets, &m) || m_rand(20) == 0)
		return;
	m.ver = w.ver[m.key];
	/* Now and then a reply is slow, past the pending timeout too. */
	m.when = w.now + (m_rand(10) == 0 ? m_rand(3 * M_PT) : 0);
	m_push(&w.replies, m);
}

/* The server takes a write, or the network loses it. The switch sees
 * its reply, or ends it late (the reply was lost and the request table
 * reaps it, or the write itself was lost), or never (noreply). */
static void
m_apply(struct m_msg *m)
{
	unsigned int fate = m_rand(40);
	int k;

	if (m->key < 0) {
		w.flushes_out--;
		if (fate != 0)
			for (k = 0; k < MKEYS; k++)
				w.ver[k] = 0;
		return;	/* the cache is told nothing about its answer */
	}
	w.writes_out[m->key]--;
	if (fate != 0)
		w.ver[m->key] = m->ver;
	if (fate <= 3) {
		m->when = w.now + m_rand(3 * M_WT);
		m_push(&w.late, *m);
	} else if (fate > 4) {
		m_push(&w.wreplies, *m);
	}
}

static void
m_serve_write(void)
{
	struct m_msg m;
	unsigned int i;

	if (w.writes.n == 0)
		return;
	i = m_rand(w.writes.n);
	if (w.writes.m[i].when > w.now)
		return;
	m = w.writes.m[i];
	w.writes.m[i] = w.writes.m[--w.writes.n];
	m_apply(&m);
}

static void
m_reply(void)
{
	struct m_msg m;
	uint8_t v[64];
	uint32_t n;
	char key[16];
	uint32_t kl;
	unsigned int i;
	enum dp_mc_fill_result r;

	if (w.replies.n == 0)
		return;
	i = m_rand(w.replies.n);
	if (w.replies.m[i].when > w.now)
		return;
	m = w.replies.m[i];
	w.replies.m[i] = w.replies.m[--w.replies.n];
	if (m.ver == 0)
		return;	/* END without a VALUE fills nothing */
	kl = m_key(m.key, key);
	n = m_value(m.key, m.ver, v);
	r = dp_mc_cache_fill(w.c, m_hash(m.key), (const uint8_t *)key, kl,
			m.ticket, m.ver, v, n, w.now);
	w.fill_results[r]++;
	if (dp_mc_cache_entries(w.c) > w.most_entries)
		w.most_entries = dp_mc_cache_entries(w.c);
}

static void
m_write_reply(void)
{
	struct m_msg m;

	if (m_take(&w.wreplies, &m))
		dp_mc_cache_write_end(w.c, m.token);
}

/* Time passes. Writes due by their deadline reach the server first (the
 * world's one promise); late ends that are due arrive. */
static void
m_tick(void)
{
	uint64_t to = w.now + 1 + m_rand(8);
	unsigned int i;

	for (i = 0; i < w.writes.n;) {
		if (w.writes.m[i].sent + M_WT <= to) {
			struct m_msg m = w.writes.m[i];

			w.writes.m[i] = w.writes.m[--w.writes.n];
			m_apply(&m);
		} else {
			i++;
		}
	}
	w.now = to;
	for (i = 0; i < w.late.n;) {
		if (w.late.m[i].when <= w.now) {
			dp_mc_cache_write_end(w.c, w.late.m[i].token);
			w.late.m[i] = w.late.m[--w.late.n];
		} else {
			i++;
		}
	}
	/* Replies older than a few pending timeouts are lost. */
	for (i = 0; i < w.replies.n;) {
		if (w.replies.m[i].sent + 4 * M_PT < w.now)
			w.replies.m[i] = w.replies.m[--w.replies.n];
		else
			i++;
	}
}

static void
test_model(uint64_t seed, uint32_t nstripes)
{
	struct dp_mc_cache_config cfg = {
		.nslots = 16,
		.max_value = M_MAXV,
		.hot_threshold = 2,
		.sketch_width = 64,
		.decay_every = 300,
		.nstripes = nstripes,
		.ttl_tsc = M_TTL,
		.write_timeout_tsc = M_WT,
		.pending_timeout_tsc = M_PT,
	};
	unsigned long i;

	memset(&w, 0, sizeof(w));
	w.c = make(&cfg);
	w.now = T0;
	w.rng = seed;
	for (i = 0; i < M_OPS; i++) {
		uint32_t r = m_rand(10000);

		if (r < 2000)
			m_get();
		else if (r < 2200)
			m_write();
		else if (r < 2201)
			m_flush();
		else if (r < 2202)
			dp_mc_cache_flush_async(w.c);
		else if (r < 4700)
			m_serve_get();
		else if (r < 5500)
			m_serve_write();
		else if (r < 8000)
			m_reply();
		else if (r < 8800)
			m_write_reply();
		else
			m_tick();
	}
	CHECK(w.stale == 0, "%lu stale hits of %lu", w.stale, w.hits);
	/* The run must have gone through every path to mean something. */
	CHECK(w.hits > 2000, "only %lu hits", w.hits);
	CHECK(w.fill_results[DP_MC_FILL_FILLED] > 1000, "only %lu fills",
			w.fill_results[DP_MC_FILL_FILLED]);
	for (i = 1; i < DP_MC_FILL_RESULT_COUNT; i++)
		CHECK(w.fill_results[i] > 0, "no %s",
				dp_mc_fill_result_name(i));
	CHECK(w.most_entries <= 16 && w.most_entries >= 12,
			"at most %u entries", w.most_entries);
	printf("model (%u stripes): %lu gets, %lu hits, fills:", nstripes,
			w.gets_sent + w.hits, w.hits);
	for (i = 0; i < DP_MC_FILL_RESULT_COUNT; i++)
		printf(" %s %lu", dp_mc_fill_result_name(i), w.fill_results[i]);
	printf("\n");
	dp_mc_cache_free(w.c);
}

int
main(void)
{
	test_create();
	test_hash();
	test_admission();
	test_hit_and_ttl();
	test_too_big();
	test_lru();
	test_pools();
	test_races();
	test_write_timeout();
	test_flush();
	/* Fewer stripes: more writes meet on one, fewer fills. */
	test_model(UINT64_C(0x243f6a8885a308d3), 8);
	test_model(UINT64_C(0x13198a2e03707344), 2);
	TEST_MAIN_END("test_mc_cache");
}
