/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ring behaviour: ketama point counts and order, lookups equal to a plain binary search over
 * the continuum (TwemProxy's dispatch), modula weights, liveness, overrides, hash tags, ids,
 * and every invalid spec rejected.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsw/tsw_hash.h"
#include "tsw/tsw_route.h"
#include "tsw/tsw_status.h"

#include "tsw_test.h"

#define NSRV 5

static const char *names = "s0s1s22s3s4"; /* s0 s1 s22 s3 s4 */
static const uint32_t offsets[NSRV + 1] = { 0, 2, 4, 7, 9, 11 };
static const uint32_t weights[NSRV] = { 1, 2, 3, 1, 1 };

static void
spec_init(struct tsw_ring_spec *s, int dist)
{
	memset(s, 0, sizeof(*s));
	s->distribution = dist;
	s->hash = TSW_HASH_FNV1A_64;
	s->nserver = NSRV;
	s->names = (const uint8_t *)names;
	s->name_offsets = offsets;
	s->weights = weights;
}

/* TwemProxy's dispatch, verbatim in behaviour: first point >= hash, else the first. */
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

static void
test_ketama(void)
{
	struct tsw_ring_spec s;
	struct tsw_ring *r;
	uint32_t n, *values, *servers, counts[NSRV] = { 0 };
	char key[32];

	spec_init(&s, TSW_DIST_KETAMA);
	CHECK(tsw_ring_build(&s, &r) == TSW_OK, "build");
	n = tsw_ring_npoints(r);
	/* floor(w/8 * 160 / 4 * 5) * 4 per server: 100, 200, 300, 100, 100 */
	CHECK(n == 800, "npoints %u", n);
	values = calloc(n, sizeof(*values));
	servers = calloc(n, sizeof(*servers));
	CHECK(tsw_ring_points(r, values, servers, n) == n, "points");
	for (uint32_t i = 0; i < n; i++) {
		counts[servers[i]]++;
		if (i)
			CHECK(values[i - 1] <= values[i], "sorted at %u", i);
	}
	CHECK(counts[0] == 100 && counts[1] == 200 && counts[2] == 300, "weighted counts");
	for (int i = 0; i < 100000; i++) {
		int len = snprintf(key, sizeof(key), "key-%d", i * 7919);
		uint32_t h = tsw_hash(TSW_HASH_FNV1A_64, key, (size_t)len);
		uint32_t want = plain_search(values, servers, n, h);

		CHECK(tsw_ring_lookup(r, key, (size_t)len) == want, "key %s", key);
	}
	/* The extreme hashes: above the last point wraps to the first. */
	CHECK(plain_search(values, servers, n, UINT32_MAX) == servers[values[n - 1] ==
		UINT32_MAX ? n - 1 : 0], "wrap");
	free(values);
	free(servers);
	tsw_ring_free(r);
}

static void
test_modula_live_ids(void)
{
	struct tsw_ring_spec s;
	struct tsw_ring *r;
	uint8_t live[NSRV] = { 1, 0, 1, 1, 1 };
	uint32_t ids[NSRV] = { 10, 11, 12, 13, 14 };
	int seen[NSRV] = { 0 };

	spec_init(&s, TSW_DIST_MODULA);
	CHECK(tsw_ring_build(&s, &r) == TSW_OK, "build");
	CHECK(tsw_ring_npoints(r) == 8, "modula slots = total weight");
	tsw_ring_free(r);
	s.live = live;
	s.server_ids = ids;
	CHECK(tsw_ring_build(&s, &r) == TSW_OK, "build live");
	CHECK(tsw_ring_npoints(r) == 6, "dead server's slots gone");
	for (int i = 0; i < 5000; i++) {
		char key[16];
		int len = snprintf(key, sizeof(key), "k%d", i);
		uint32_t t = tsw_ring_lookup(r, key, (size_t)len);

		CHECK(t >= 10 && t <= 14 && t != 11, "id %u", t);
		if (t >= 10 && t <= 14)
			seen[t - 10]++;
	}
	CHECK(seen[0] && seen[2] && seen[3] && seen[4] && !seen[1], "all live servers used");
	tsw_ring_free(r);
}

static void
test_overrides_and_tags(void)
{
	struct tsw_ring_spec s;
	struct tsw_ring *r;
	const char *okeys = "pinnedother";
	uint32_t ooff[3] = { 0, 6, 11 }, otgt[2] = { 3, 4 };
	uint8_t live[NSRV] = { 1, 1, 1, 1, 0 };

	spec_init(&s, TSW_DIST_KETAMA);
	s.noverride = 2;
	s.override_keys = (const uint8_t *)okeys;
	s.override_offsets = ooff;
	s.override_targets = otgt;
	s.has_hash_tag = 1;
	s.hash_tag[0] = '{';
	s.hash_tag[1] = '}';
	s.live = live;
	CHECK(tsw_ring_build(&s, &r) == TSW_OK, "build");
	CHECK(tsw_ring_lookup(r, "pinned", 6) == 3, "override wins");
	/* "other" is pinned to a dead server: it falls through to the distribution */
	CHECK(tsw_ring_lookup(r, "other", 5) != 4, "dead override target ignored");
	CHECK(tsw_ring_key_hash(r, "a{tag}b", 7) == tsw_hash(TSW_HASH_FNV1A_64, "tag", 3),
	      "hash tag");
	CHECK(tsw_ring_key_hash(r, "a{}b", 4) == tsw_hash(TSW_HASH_FNV1A_64, "a{}b", 4),
	      "empty tag hashes the whole key");
	CHECK(tsw_ring_key_hash(r, "a{tag", 5) == tsw_hash(TSW_HASH_FNV1A_64, "a{tag", 5),
	      "unclosed tag hashes the whole key");
	CHECK(tsw_ring_key_hash(r, "", 0) == 0, "empty key hashes to 0");
	CHECK(tsw_ring_lookup(r, "x{tag}y", 7) == tsw_ring_lookup(r, "z{tag}", 6), "same tag");
	tsw_ring_free(r);
}

static void
test_rendezvous(void)
{
	struct tsw_ring_spec s;
	struct tsw_ring *r, *r2;
	uint8_t live[NSRV] = { 1, 1, 1, 1, 0 };
	int moved = 0, total = 20000;

	spec_init(&s, TSW_DIST_RENDEZVOUS);
	CHECK(tsw_ring_build(&s, &r) == TSW_OK, "build");
	s.live = live;
	CHECK(tsw_ring_build(&s, &r2) == TSW_OK, "build without s4");
	for (int i = 0; i < total; i++) {
		char key[16];
		int len = snprintf(key, sizeof(key), "b%d", i);
		uint32_t a = tsw_ring_lookup(r, key, (size_t)len);
		uint32_t b = tsw_ring_lookup(r2, key, (size_t)len);

		/* Minimal disruption: only keys that were on the removed server move. */
		CHECK(a == b || a == 4, "key %s moved from %u to %u", key, a, b);
		moved += a != b;
	}
	CHECK(moved > total / 16 && moved < total / 4, "moved %d of %d (weight share 1/8)",
	      moved, total);
	tsw_ring_free(r);
	tsw_ring_free(r2);
}

static void
test_invalid(void)
{
	struct tsw_ring_spec s;
	struct tsw_ring *r = (struct tsw_ring *)1;
	uint32_t zero_w[NSRV] = { 1, 0, 1, 1, 1 };
	uint32_t ooff[3] = { 0, 1, 2 }, otgt[2] = { 0, 1 };
	uint8_t none[NSRV] = { 0 };
	char longname[100];
	uint32_t longoff[2] = { 0, 90 };

	spec_init(&s, TSW_DIST_KETAMA);
	s.nserver = 0;
	CHECK(tsw_ring_build(&s, &r) == TSW_EINVAL && r == NULL, "no servers");
	spec_init(&s, TSW_DIST_KETAMA);
	s.weights = zero_w;
	CHECK(tsw_ring_build(&s, &r) == TSW_EINVAL, "zero weight");
	spec_init(&s, 99);
	CHECK(tsw_ring_build(&s, &r) == TSW_EINVAL, "unknown distribution");
	spec_init(&s, TSW_DIST_KETAMA);
	s.hash = -1;
	CHECK(tsw_ring_build(&s, &r) == TSW_EINVAL, "unknown hash");
	spec_init(&s, TSW_DIST_KETAMA);
	s.noverride = 2;
	s.override_keys = (const uint8_t *)"aa";
	s.override_offsets = ooff;
	s.override_targets = otgt;
	CHECK(tsw_ring_build(&s, &r) == TSW_EINVAL, "duplicate override key");
	otgt[1] = NSRV;
	s.override_keys = (const uint8_t *)"ab";
	CHECK(tsw_ring_build(&s, &r) == TSW_EINVAL, "override target out of range");
	memset(longname, 'n', sizeof(longname));
	spec_init(&s, TSW_DIST_KETAMA);
	s.nserver = 1;
	s.names = (const uint8_t *)longname;
	s.name_offsets = longoff;
	CHECK(tsw_ring_build(&s, &r) == TSW_EINVAL, "name too long for ketama");
	spec_init(&s, TSW_DIST_KETAMA);
	s.live = none;
	CHECK(tsw_ring_build(&s, &r) == TSW_OK, "all dead builds");
	CHECK(tsw_ring_lookup(r, "k", 1) == TSW_ROUTE_NONE, "no live server");
	tsw_ring_free(r);
	tsw_ring_free(NULL);
}

int
main(void)
{
	test_ketama();
	test_modula_live_ids();
	test_overrides_and_tags();
	test_rendezvous();
	test_invalid();
	TEST_MAIN_END("test_route");
}
