/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ring's fast paths (tsw_route.c): the inline fnv1a_64 of the ketama fast path and the
 * per-bucket answers that skip the search. Over rings of 1 to 100 servers, weights, dead
 * servers, ids that do and do not fit a byte, and over the general path (another hash, an
 * override, a hash tag), every lookup must equal TwemProxy's plain binary search over the
 * continuum for the key's hash, for random keys of every length up to 40 bytes with bytes
 * above 0x7f (signed in fnv1a_64).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsw/tsw_hash.h"
#include "tsw/tsw_route.h"
#include "tsw/tsw_status.h"

#include "tsw_test.h"

#define MAX_SRV 100
#define KEYS 40000

static uint64_t rng = UINT64_C(0x243f6a8885a308d3);

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static uint32_t
plain_search(const uint32_t *values, const uint32_t *servers, uint32_t n, uint32_t hash)
{
	uint32_t lo = 0, hi = n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (values[mid] < hash)
			lo = mid + 1;
		else
			hi = mid;
	}
	return servers[lo == n ? 0 : lo];
}

struct ring_case {
	const char *what;
	uint32_t nserver;
	int hash;
	int weighted;   /* weights 1..4 instead of 1 */
	int some_dead;  /* every fifth server dead */
	int big_ids;    /* ids 1000 + i: no bucket answers */
};

static void
check_ring(const struct ring_case *c)
{
	static char names[MAX_SRV * 24];
	uint32_t offs[MAX_SRV + 1], weights[MAX_SRV], ids[MAX_SRV], i, n, len;
	uint8_t live[MAX_SRV], key[40];
	uint32_t *values, *servers, bad = 0, batch_bad = 0;
	uint8_t keys[64 * 40];
	uint32_t koffs[65], out[64], want[64], nb = 0;
	struct tsw_ring_spec s;
	struct tsw_ring *r;

	offs[0] = 0;
	for (i = 0; i < c->nserver; i++) {
		int w = snprintf(names + offs[i], 24, "10.0.%u.%u:11211", i / 200, i % 200);

		offs[i + 1] = offs[i] + (uint32_t)w;
		weights[i] = c->weighted ? 1 + i % 4 : 1;
		live[i] = !(c->some_dead && i % 5 == 4);
		ids[i] = c->big_ids ? 1000 + i : i;
	}
	memset(&s, 0, sizeof(s));
	s.distribution = TSW_DIST_KETAMA;
	s.hash = c->hash;
	s.nserver = c->nserver;
	s.names = (const uint8_t *)names;
	s.name_offsets = offs;
	s.weights = weights;
	s.live = live;
	s.server_ids = ids;
	CHECK(tsw_ring_build(&s, &r) == TSW_OK, "%s: build", c->what);
	if (r == NULL)
		return;
	n = tsw_ring_npoints(r);
	values = calloc(n ? n : 1, sizeof(*values));
	servers = calloc(n ? n : 1, sizeof(*servers));
	if (values == NULL || servers == NULL)
		abort();
	CHECK(tsw_ring_points(r, values, servers, n) == n, "%s: points", c->what);
	koffs[0] = 0;
	for (i = 0; i < KEYS; i++) {
		uint32_t j, got, h;

		len = rnd() % 41;
		for (j = 0; j < len; j++)
			key[j] = (uint8_t)(rnd() % 3 ? 0x21 + rnd() % 94 : rnd());
		h = len ? tsw_hash(c->hash, key, len) : 0;
		got = tsw_ring_lookup(r, key, len);
		if (got != plain_search(values, servers, n, h) && bad++ < 5)
			fprintf(stderr, "%s: key %u (len %u) hash %08x: %u, want %u\n", c->what, i,
				len, h, got, plain_search(values, servers, n, h));
		CHECK(tsw_ring_key_hash(r, key, len) == h, "%s: key hash", c->what);
		/* Batches of 64 through tsw_ring_lookup_batch. */
		memcpy(keys + koffs[nb], key, len);
		want[nb] = plain_search(values, servers, n, h);
		koffs[nb + 1] = koffs[nb] + len;
		if (++nb == 64) {
			tsw_ring_lookup_batch(r, keys, koffs, nb, out);
			for (j = 0; j < nb; j++)
				batch_bad += out[j] != want[j];
			nb = 0;
		}
	}
	CHECK(bad == 0, "%s: %u of %u lookups differ from the plain search", c->what, bad, KEYS);
	CHECK(batch_bad == 0, "%s: %u batch lookups differ", c->what, batch_bad);
	free(values);
	free(servers);
	tsw_ring_free(r);
}

/* An override and a hash tag take the general path; its answers are still the plain search's
 * for keys that are neither pinned nor tagged. */
static void
check_general(void)
{
	static const char *names = "a:1b:1c:1d:1";
	static const uint32_t offs[5] = { 0, 3, 6, 9, 12 };
	static const uint32_t weights[4] = { 1, 1, 1, 1 };
	static const uint8_t okeys[] = "pinned";
	static const uint32_t ooffs[2] = { 0, 6 };
	static const uint32_t otargets[1] = { 2 };
	uint32_t values[4 * 160], servers[4 * 160], n, i, bad = 0;
	struct tsw_ring_spec s;
	struct tsw_ring *r;
	char key[32];

	memset(&s, 0, sizeof(s));
	s.distribution = TSW_DIST_KETAMA;
	s.hash = TSW_HASH_FNV1A_64;
	s.nserver = 4;
	s.names = (const uint8_t *)names;
	s.name_offsets = offs;
	s.weights = weights;
	s.noverride = 1;
	s.override_keys = okeys;
	s.override_offsets = ooffs;
	s.override_targets = otargets;
	CHECK(tsw_ring_build(&s, &r) == TSW_OK, "override ring");
	n = tsw_ring_points(r, values, servers, 4 * 160);
	CHECK(tsw_ring_lookup(r, "pinned", 6) == 2, "pinned key");
	for (i = 0; i < KEYS; i++) {
		int len = snprintf(key, sizeof(key), "k%u", rnd());
		uint32_t h = tsw_hash(TSW_HASH_FNV1A_64, key, (size_t)len);

		bad += tsw_ring_lookup(r, key, (size_t)len) != plain_search(values, servers, n, h);
	}
	CHECK(bad == 0, "override ring: %u lookups differ", bad);
	tsw_ring_free(r);

	memset(&s, 0, sizeof(s));
	s.distribution = TSW_DIST_KETAMA;
	s.hash = TSW_HASH_FNV1A_64;
	s.nserver = 4;
	s.names = (const uint8_t *)names;
	s.name_offsets = offs;
	s.weights = weights;
	s.has_hash_tag = 1;
	s.hash_tag[0] = '{';
	s.hash_tag[1] = '}';
	CHECK(tsw_ring_build(&s, &r) == TSW_OK, "tag ring");
	n = tsw_ring_points(r, values, servers, 4 * 160);
	bad = 0;
	for (i = 0; i < KEYS; i++) {
		uint32_t t = rnd();
		int len = snprintf(key, sizeof(key), "x{%u}y%u", t, rnd());
		char inner[16];
		int ilen = snprintf(inner, sizeof(inner), "%u", t);
		uint32_t h = tsw_hash(TSW_HASH_FNV1A_64, inner, (size_t)ilen);

		bad += tsw_ring_lookup(r, key, (size_t)len) != plain_search(values, servers, n, h);
	}
	CHECK(bad == 0, "tag ring: %u lookups differ", bad);
	tsw_ring_free(r);
}

int
main(void)
{
	static const struct ring_case cases[] = {
		{ "1 server", 1, TSW_HASH_FNV1A_64, 0, 0, 0 },
		{ "2 servers", 2, TSW_HASH_FNV1A_64, 0, 0, 0 },
		{ "3 servers", 3, TSW_HASH_FNV1A_64, 0, 0, 0 },
		{ "4 servers", 4, TSW_HASH_FNV1A_64, 0, 0, 0 },
		{ "5 weighted", 5, TSW_HASH_FNV1A_64, 1, 0, 0 },
		{ "8 some dead", 8, TSW_HASH_FNV1A_64, 0, 1, 0 },
		{ "32 weighted, dead", 32, TSW_HASH_FNV1A_64, 1, 1, 0 },
		{ "100 servers", 100, TSW_HASH_FNV1A_64, 0, 0, 0 },
		{ "4, ids over a byte", 4, TSW_HASH_FNV1A_64, 0, 0, 1 },
		{ "32, ids over a byte", 32, TSW_HASH_FNV1A_64, 1, 1, 1 },
		{ "4 murmur", 4, TSW_HASH_MURMUR, 0, 0, 0 },
		{ "8 md5 weighted", 8, TSW_HASH_MD5, 1, 1, 0 },
		{ "4 fnv1_64", 4, TSW_HASH_FNV1_64, 0, 0, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_ring(&cases[i]);
	check_general();
	TEST_MAIN_END("test_route_fast");
}
