/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data plane's MAC table (dp_mac.c) without DPDK: learning, lookups,
 * moves, ageing, static entries, and what happens when a MAC's two buckets
 * are full. Times are plain numbers standing in for TSC values.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dp_mac.h"
#include "tsw_test.h"

#define AGE 1000
#define T0 1000000

static struct dp_mac_table table;
static struct dp_global_counters c;

static void
reset(void)
{
	dp_mac_init(&table, AGE);
	memset(&c, 0, sizeof(c));
}

/* Locally administered unicast MACs 02:00:xx:xx:xx:xx. */
static uint64_t
mac(uint32_t n)
{
	return UINT64_C(0x020000000000) | n;
}

/* n distinct MACs whose home bucket is the same (the first one's). */
static void
colliding(uint64_t *out, unsigned int n)
{
	uint32_t want = dp_mac_bucket_of(mac(1)), i = 1;
	unsigned int k = 0;

	while (k < n) {
		if (dp_mac_bucket_of(mac(i)) == want)
			out[k++] = mac(i);
		i++;
	}
}

static void
test_learn_and_lookup(void)
{
	reset();
	CHECK(dp_mac_lookup(&table, mac(1), T0) == -1, "empty table");
	/* An empty slot must not match the zero MAC. */
	CHECK(dp_mac_lookup(&table, 0, T0) == -1, "zero MAC in empty table");
	dp_mac_learn(&table, mac(1), 3, T0, &c);
	dp_mac_learn(&table, mac(2), 5, T0, &c);
	CHECK(dp_mac_lookup(&table, mac(1), T0 + 1) == 3, "learned on 3");
	CHECK(dp_mac_lookup(&table, mac(2), T0 + 1) == 5, "learned on 5");
	CHECK(dp_mac_lookup(&table, mac(3), T0 + 1) == -1, "never seen");
	CHECK(c.mac_learned == 2, "learned %lu", (unsigned long)c.mac_learned);
	/* Seeing it again on the same port changes nothing but the time. */
	dp_mac_learn(&table, mac(1), 3, T0 + 10, &c);
	CHECK(c.mac_learned == 2 && c.mac_moved == 0, "refresh counted");
	CHECK(dp_mac_count(&table, T0 + 10) == 2, "count %u",
			dp_mac_count(&table, T0 + 10));
	/* The highest port index fits. */
	dp_mac_learn(&table, mac(9), DP_MAC_MAX_PORT_IDX, T0, &c);
	CHECK(dp_mac_lookup(&table, mac(9), T0) == DP_MAC_MAX_PORT_IDX,
			"max port index");
}

static void
test_move(void)
{
	reset();
	dp_mac_learn(&table, mac(1), 1, T0, &c);
	dp_mac_learn(&table, mac(1), 2, T0 + 5, &c);
	CHECK(dp_mac_lookup(&table, mac(1), T0 + 6) == 2, "moved to 2");
	CHECK(c.mac_moved == 1 && c.mac_learned == 1, "moved %lu learned %lu",
			(unsigned long)c.mac_moved, (unsigned long)c.mac_learned);
	CHECK(dp_mac_count(&table, T0 + 6) == 1, "a move must not duplicate");
}

static void
test_aging(void)
{
	reset();
	dp_mac_learn(&table, mac(1), 1, T0, &c);
	CHECK(dp_mac_lookup(&table, mac(1), T0 + AGE - 1) == 1, "alive before age");
	CHECK(dp_mac_lookup(&table, mac(1), T0 + AGE) == -1, "dead at age");
	/* A refresh restarts the clock. */
	dp_mac_learn(&table, mac(2), 1, T0, &c);
	dp_mac_learn(&table, mac(2), 1, T0 + AGE - 1, &c);
	CHECK(dp_mac_lookup(&table, mac(2), T0 + 2 * AGE - 2) == 1,
			"refreshed entry aged too early");
	/* An aged MAC seen on another port is learned afresh, not moved. */
	dp_mac_learn(&table, mac(1), 4, T0 + 2 * AGE, &c);
	CHECK(dp_mac_lookup(&table, mac(1), T0 + 2 * AGE) == 4, "relearned");
	CHECK(c.mac_moved == 0 && c.mac_learned == 3, "moved %lu learned %lu",
			(unsigned long)c.mac_moved, (unsigned long)c.mac_learned);
	/* A dead slot is reused before anything live is evicted. */
	{
		uint64_t k[DP_MAC_PROBE_BUCKETS * DP_MAC_BUCKET_SLOTS + 1];
		unsigned int i, n = DP_MAC_PROBE_BUCKETS * DP_MAC_BUCKET_SLOTS;

		reset();
		colliding(k, n + 1);
		for (i = 0; i < n; i++)
			dp_mac_learn(&table, k[i], 1, i == 0 ? T0 : T0 + AGE, &c);
		dp_mac_learn(&table, k[n], 2, T0 + AGE, &c);
		CHECK(c.mac_evicted == 0, "evicted with a dead slot free");
		CHECK(dp_mac_lookup(&table, k[n], T0 + AGE) == 2, "new entry");
		for (i = 1; i < n; i++)
			CHECK(dp_mac_lookup(&table, k[i], T0 + AGE) == 1,
					"live entry %u lost", i);
	}
}

static void
test_table_full(void)
{
	uint64_t k[DP_MAC_PROBE_BUCKETS * DP_MAC_BUCKET_SLOTS + 2];
	unsigned int i, n = DP_MAC_PROBE_BUCKETS * DP_MAC_BUCKET_SLOTS;

	reset();
	colliding(k, n + 2);
	/* Fill both buckets; k[3] is the oldest because the others are
	 * refreshed afterwards. */
	for (i = 0; i < n; i++)
		dp_mac_learn(&table, k[i], (uint16_t)i, T0, &c);
	for (i = 0; i < n; i++)
		if (i != 3)
			dp_mac_learn(&table, k[i], (uint16_t)i, T0 + 10, &c);
	CHECK(c.mac_learned == n && c.mac_evicted == 0, "filled");
	dp_mac_learn(&table, k[n], 42, T0 + 20, &c);
	CHECK(c.mac_evicted == 1, "evicted %lu", (unsigned long)c.mac_evicted);
	CHECK(dp_mac_lookup(&table, k[n], T0 + 20) == 42, "newcomer present");
	CHECK(dp_mac_lookup(&table, k[3], T0 + 20) == -1, "oldest evicted");
	for (i = 0; i < n; i++)
		if (i != 3)
			CHECK(dp_mac_lookup(&table, k[i], T0 + 20) == (int)i,
					"entry %u lost", i);
	CHECK(dp_mac_count(&table, T0 + 20) == n, "count after eviction");
}

static void
test_static(void)
{
	uint64_t k[DP_MAC_PROBE_BUCKETS * DP_MAC_BUCKET_SLOTS + 1];
	unsigned int i, n = DP_MAC_PROBE_BUCKETS * DP_MAC_BUCKET_SLOTS;

	reset();
	CHECK(dp_mac_add_static(&table, mac(1), 7, T0) == 0, "add");
	CHECK(dp_mac_add_static(&table, mac(1), 7, T0) == -EEXIST, "twice");
	CHECK(dp_mac_add_static(&table, 0, 7, T0) == -EINVAL, "zero MAC");
	CHECK(dp_mac_add_static(&table, UINT64_C(0x010000000001), 7, T0) ==
			-EINVAL, "multicast MAC");
	CHECK(dp_mac_add_static(&table, mac(2), DP_MAC_MAX_PORT_IDX + 1, T0) ==
			-EINVAL, "port index too large");
	/* Never ages, never moves. */
	CHECK(dp_mac_lookup(&table, mac(1), T0 + 100 * AGE) == 7, "aged static");
	dp_mac_learn(&table, mac(1), 2, T0 + 1, &c);
	CHECK(dp_mac_lookup(&table, mac(1), T0 + 1) == 7, "static moved");
	CHECK(c.mac_moved == 0 && c.mac_learned == 0, "static learn counted");
	/* A learned entry becomes static in place. */
	dp_mac_learn(&table, mac(3), 2, T0, &c);
	CHECK(dp_mac_add_static(&table, mac(3), 5, T0) == 0, "over dynamic");
	CHECK(dp_mac_lookup(&table, mac(3), T0 + 100 * AGE) == 5, "converted");
	CHECK(dp_mac_count(&table, T0) == 2, "count %u", dp_mac_count(&table, T0));

	/* Buckets full of static entries: learning gives up and says so,
	 * adding another static entry fails. */
	reset();
	colliding(k, n + 1);
	for (i = 0; i < n; i++)
		CHECK(dp_mac_add_static(&table, k[i], 1, T0) == 0, "static %u", i);
	dp_mac_learn(&table, k[n], 2, T0, &c);
	CHECK(c.mac_learn_full == 1 && c.mac_evicted == 0, "full %lu evicted %lu",
			(unsigned long)c.mac_learn_full, (unsigned long)c.mac_evicted);
	CHECK(dp_mac_lookup(&table, k[n], T0) == -1, "learned into static");
	CHECK(dp_mac_add_static(&table, k[n], 1, T0) == -ENOSPC, "no space");
	for (i = 0; i < n; i++)
		CHECK(dp_mac_lookup(&table, k[i], T0) == 1, "static %u lost", i);
}

static void
test_many(void)
{
	unsigned int i, found = 0, n = DP_MAC_ENTRIES / 2;

	/* At half load nearly everything fits: only a bucket pair that
	 * overflows may lose entries, and each loss is counted. */
	reset();
	for (i = 1; i <= n; i++)
		dp_mac_learn(&table, mac(i * 7919), (uint16_t)(i % 16), T0, &c);
	for (i = 1; i <= n; i++)
		found += dp_mac_lookup(&table, mac(i * 7919), T0) ==
			(int)(i % 16);
	CHECK(found + c.mac_evicted == n, "found %u evicted %lu of %u", found,
			(unsigned long)c.mac_evicted, n);
	CHECK(found >= n * 95 / 100, "only %u of %u found", found, n);
}

int
main(void)
{
	test_learn_and_lookup();
	test_move();
	test_aging();
	test_table_full();
	test_static();
	test_many();
	TEST_MAIN_END("test_mac");
}
