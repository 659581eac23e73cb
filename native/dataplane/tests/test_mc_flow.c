/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memcached path's request table (dp_mc_flow.c) without DPDK:
 * insert, lookup, remove, expiry, eviction of the entry closest to
 * expiry, the reaper's budget and cursor, and the release callback,
 * which must see every entry the table drops exactly once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dp_mc_flow.h"
#include "tsw_test.h"

#define T0 1000000
#define MAXREL 4096

/* What the release callback saw. */
static uint64_t released[MAXREL];
static uint32_t released_ip[MAXREL];
static unsigned int nreleased;
static int bad_release;

static void
on_release(struct dp_mc_flow *f, void *arg)
{
	if (arg != &nreleased || !(f->flags & DP_MC_FLOW_USED))
		bad_release++;
	if (nreleased < MAXREL) {
		released[nreleased] = f->key;
		released_ip[nreleased] = f->server_ip;
	}
	nreleased++;
}

static struct dp_mc_flow_table *
make(uint32_t n)
{
	struct dp_mc_flow_table *t = NULL;
	int rc = dp_mc_flow_create(n, on_release, &nreleased, &t);

	CHECK(rc == 0 && t != NULL, "create %u: %d", n, rc);
	nreleased = 0;
	return t;
}

static unsigned int
times_released(uint64_t key)
{
	unsigned int i, n = 0;

	for (i = 0; i < nreleased && i < MAXREL; i++)
		n += released[i] == key;
	return n;
}

static void
test_create(void)
{
	struct dp_mc_flow_table *t = (struct dp_mc_flow_table *)&t;

	CHECK(dp_mc_flow_create(0, NULL, NULL, &t) == -EINVAL && t == NULL,
			"zero entries");
	CHECK(dp_mc_flow_create(0x80000001u, NULL, NULL, &t) == -EINVAL,
			"too many entries");
	/* No callback is fine. */
	CHECK(dp_mc_flow_create(3, NULL, NULL, &t) == 0, "no callback");
	CHECK(dp_mc_flow_insert(t, 1, T0, &(bool){ false }) != NULL, "insert");
	dp_mc_flow_free(t);
	dp_mc_flow_free(NULL);
}

static void
test_basic(void)
{
	struct dp_mc_flow_table *t = make(1024);
	struct dp_mc_flow *f, *g;
	bool ev = true;
	uint64_t k;

	CHECK(dp_mc_flow_lookup(t, 7, T0) == NULL, "empty table");
	/* Key 0 is a key like any other: the USED flag marks a slot. */
	CHECK(dp_mc_flow_lookup(t, 0, T0) == NULL, "zero key in empty table");
	f = dp_mc_flow_insert(t, 7, T0 + 100, &ev);
	CHECK(f != NULL && !ev, "insert");
	CHECK(f->key == 7 && f->expire_tsc == T0 + 100 &&
			f->flags == DP_MC_FLOW_USED && f->stripe == 0 &&
			f->server_ip == 0 && f->pool_id == 0, "fresh entry");
	f->flags |= DP_MC_FLOW_SERVER;
	f->server_ip = 0x0a000001;
	f->server_port = 11211;
	CHECK(dp_mc_flow_lookup(t, 7, T0) == f, "lookup");
	CHECK(dp_mc_flow_lookup(t, 7, T0 + 99) == f, "just before expiry");
	CHECK(dp_mc_flow_lookup(t, 7, T0 + 100) == NULL, "at expiry");
	CHECK(dp_mc_flow_lookup(t, 8, T0) == NULL, "other key");
	g = dp_mc_flow_insert(t, 0, T0 + 100000, &ev);
	CHECK(g != NULL && g != f && !ev, "key 0");
	CHECK(dp_mc_flow_lookup(t, 0, T0) == g, "key 0 found");
	CHECK(dp_mc_flow_count(t) == 2, "count %u", dp_mc_flow_count(t));

	/* Remove: no callback, the slot is free, the other key stays. */
	dp_mc_flow_remove(t, f);
	CHECK(dp_mc_flow_lookup(t, 7, T0) == NULL, "removed");
	CHECK(dp_mc_flow_lookup(t, 0, T0) == g, "neighbour kept");
	CHECK(dp_mc_flow_count(t) == 1, "count %u", dp_mc_flow_count(t));
	dp_mc_flow_remove(t, f);	/* twice: nothing */
	CHECK(dp_mc_flow_count(t) == 1, "double remove");
	CHECK(nreleased == 0, "remove released %u", nreleased);

	/* Many keys at a quarter load: all there, all removable. */
	for (k = 100; k < 356; k++)
		dp_mc_flow_insert(t, k << 16 | 0x11, T0 + k, &ev);
	CHECK(dp_mc_flow_count(t) + nreleased == 257, "count %u released %u",
			dp_mc_flow_count(t), nreleased);
	for (k = 100; k < 356; k++) {
		f = dp_mc_flow_lookup(t, k << 16 | 0x11, T0);
		if (f != NULL)
			dp_mc_flow_remove(t, f);
	}
	CHECK(dp_mc_flow_count(t) == 1, "count after removes %u",
			dp_mc_flow_count(t));
	CHECK(dp_mc_flow_lookup(t, 0, T0) == g, "key 0 after removes");
	dp_mc_flow_free(t);
	CHECK(nreleased >= 1 && times_released(0) == 1, "free released key 0");
	CHECK(bad_release == 0, "bad release calls");
}

/* Re-inserting a key releases the old entry, which is not an eviction. */
static void
test_reinsert(void)
{
	struct dp_mc_flow_table *t = make(64);
	struct dp_mc_flow *f;
	bool ev = true;

	f = dp_mc_flow_insert(t, 42, T0 + 10, &ev);
	f->server_ip = 5;
	f = dp_mc_flow_insert(t, 42, T0 + 20, &ev);
	CHECK(!ev, "same key counted as eviction");
	CHECK(nreleased == 1 && released[0] == 42 && released_ip[0] == 5,
			"old entry released %u", nreleased);
	CHECK(f->server_ip == 0 && f->expire_tsc == T0 + 20, "new entry");
	CHECK(dp_mc_flow_count(t) == 1, "count %u", dp_mc_flow_count(t));
	CHECK(dp_mc_flow_lookup(t, 42, T0 + 15) == f, "new expiry");

	/* An expired entry is not found, but still released once when its
	 * key comes back. */
	CHECK(dp_mc_flow_lookup(t, 42, T0 + 20) == NULL, "expired");
	f = dp_mc_flow_insert(t, 42, T0 + 50, &ev);
	CHECK(!ev && nreleased == 2 && times_released(42) == 2,
			"expired re-insert %u", nreleased);
	CHECK(dp_mc_flow_count(t) == 1, "count %u", dp_mc_flow_count(t));
	dp_mc_flow_free(t);
	CHECK(nreleased == 3, "free released %u", nreleased);
}

/* A table of 8 slots is one neighbourhood: the 9th key evicts. */
static void
test_evict(void)
{
	struct dp_mc_flow_table *t = make(1);
	struct dp_mc_flow *f;
	unsigned int i;
	bool ev = true;
	uint64_t k;

	/* Expiries 5, 3, 8, 1, 9, 4, 7, 6 (times 10): key 103 is soonest. */
	static const uint64_t exp[8] = { 5, 3, 8, 1, 9, 4, 7, 6 };

	for (i = 0; i < 8; i++) {
		f = dp_mc_flow_insert(t, 100 + i, T0 + 10 * exp[i], &ev);
		CHECK(f != NULL && !ev, "fits %u", i);
	}
	CHECK(dp_mc_flow_count(t) == 8 && nreleased == 0, "full table");
	f = dp_mc_flow_insert(t, 200, T0 + 1000, &ev);
	CHECK(f != NULL && ev, "evicted");
	CHECK(nreleased == 1 && released[0] == 103, "released %u key %lu",
			nreleased, (unsigned long)released[0]);
	CHECK(dp_mc_flow_lookup(t, 103, T0) == NULL, "evictee gone");
	CHECK(dp_mc_flow_lookup(t, 200, T0) == f, "new key in");
	for (i = 0; i < 8; i++)
		if (i != 3)
			CHECK(dp_mc_flow_lookup(t, 100 + i, T0) != NULL,
					"key %u lost", 100 + i);
	CHECK(dp_mc_flow_count(t) == 8, "count %u", dp_mc_flow_count(t));
	/* Next goes key 101 (30), then 105 (40). */
	dp_mc_flow_insert(t, 201, T0 + 1000, &ev);
	dp_mc_flow_insert(t, 202, T0 + 1000, &ev);
	CHECK(nreleased == 3 && released[1] == 101 && released[2] == 105,
			"eviction order");
	dp_mc_flow_free(t);
	CHECK(nreleased == 11, "free released %u", nreleased);

	/* Half load on a big table: what does not fit is evicted, counted
	 * and released exactly once; nothing is lost silently. */
	t = make(4096);
	{
		unsigned int n = 2048, found = 0, evictions = 0, once = 0;

		for (k = 1; k <= n; k++) {
			dp_mc_flow_insert(t, k * 0x9e3779b1u, T0 + k, &ev);
			evictions += ev;
		}
		for (k = 1; k <= n; k++)
			found += dp_mc_flow_lookup(t, k * 0x9e3779b1u,
					T0) != NULL;
		for (k = 1; k <= n; k++)
			once += times_released(k * 0x9e3779b1u) <= 1;
		CHECK(found + evictions == n && nreleased == evictions,
				"found %u evicted %u released %u", found,
				evictions, nreleased);
		CHECK(found >= n * 95 / 100, "only %u of %u", found, n);
		CHECK(once == n, "released twice");
		CHECK(dp_mc_flow_count(t) == found, "count %u",
				dp_mc_flow_count(t));
		dp_mc_flow_free(t);
		CHECK(nreleased == n, "free released %u of %u", nreleased, n);
	}
}

static void
test_reap(void)
{
	struct dp_mc_flow_table *t = make(128);
	unsigned int i, total = 0, rounds;
	bool ev;

	/* 40 entries: even keys expire at T0 + 10, odd ones at T0 + 1000. */
	for (i = 0; i < 40; i++)
		dp_mc_flow_insert(t, 1000 + i, i % 2 ? T0 + 1000 : T0 + 10,
				&ev);
	CHECK(dp_mc_flow_count(t) == 40 && nreleased == 0, "filled");
	CHECK(dp_mc_flow_reap(t, T0 + 9, 64) == 0, "nothing expired yet");
	CHECK(dp_mc_flow_reap(t, T0 + 10, 0) == 0, "zero budget");

	/* A budget of 10 looks at 10 slots: it takes 13 calls to go once
	 * round 128, and the 13th wraps. */
	for (rounds = 0; rounds < 13; rounds++) {
		uint32_t n = dp_mc_flow_reap(t, T0 + 10, 10);

		CHECK(n <= 10, "reaped %u with budget 10", n);
		total += n;
	}
	CHECK(total == 20 && nreleased == 20, "reaped %u released %u", total,
			nreleased);
	CHECK(dp_mc_flow_count(t) == 20, "count %u", dp_mc_flow_count(t));
	for (i = 0; i < 40; i++)
		CHECK((dp_mc_flow_lookup(t, 1000 + i, T0 + 10) != NULL) ==
				(i % 2 == 1), "key %u", 1000 + i);
	for (i = 0; i < nreleased; i++)
		CHECK(released[i] % 2 == 0, "reaped live key %lu",
				(unsigned long)released[i]);

	/* A budget larger than the table is one lap; the cursor carries
	 * on from wherever it stopped. */
	CHECK(dp_mc_flow_reap(t, T0 + 1000, 1000) == 20, "the rest");
	CHECK(dp_mc_flow_count(t) == 0 && nreleased == 40, "empty");
	CHECK(dp_mc_flow_reap(t, UINT64_MAX, 1000) == 0, "empty reap");
	dp_mc_flow_free(t);
	CHECK(nreleased == 40, "free of empty table released");

	/* An entry expiring at the cursor's back is found on the next lap. */
	t = make(8);
	dp_mc_flow_insert(t, 1, T0 + 5, &ev);
	total = 0;
	for (i = 0; i < 16; i++)
		total += dp_mc_flow_reap(t, i < 8 ? T0 : T0 + 5, 1);
	CHECK(total == 1 && dp_mc_flow_count(t) == 0, "next lap %u", total);
	dp_mc_flow_free(t);
	CHECK(bad_release == 0, "bad release calls");
}

int
main(void)
{
	test_create();
	test_basic();
	test_reinsert();
	test_evict();
	test_reap();
	TEST_MAIN_END("test_mc_flow");
}
