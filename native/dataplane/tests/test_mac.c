/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data plane's MAC table (dp_mac.c) without DPDK: learning, lookups,
 * moves, ageing, static entries, and what happens when a MAC's two buckets
 * are full; then two threads sharing one table, as the data plane's
 * workers do (learning the same MACs, moving MACs under readers, fighting
 * over one bucket pair). Times are plain numbers standing in for TSC
 * values. `make run-tsan` runs this file under ThreadSanitizer.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
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

/* ---- two threads, one table ------------------------------------------- */

#define LONG_AGE (UINT64_C(1) << 40)	/* nothing ages in these tests */
#define SAME_MACS 4
#define SAME_ROUNDS 20000
#define ROUNDS 200

static struct dp_mac_table shared;

struct racer {
	pthread_t thread;
	unsigned int id;
	uint16_t port;
	struct dp_global_counters c;
	unsigned int bad;	/* wrong answers seen (checked by main) */
	const uint64_t *macs;	/* for the bucket fight */
	unsigned int nmacs;
};

/* How many valid slots of its two buckets hold m (while the other thread
 * waits, or after it joined). */
static unsigned int
copies_near(const struct dp_mac_table *t, uint64_t m)
{
	uint32_t b = dp_mac_bucket_of(m);
	unsigned int i, j, n = 0;

	for (i = 0; i < DP_MAC_PROBE_BUCKETS; i++)
		for (j = 0; j < DP_MAC_BUCKET_SLOTS; j++) {
			uint64_t w = __atomic_load_n(&t->buckets[(b + i) &
					(DP_MAC_BUCKETS - 1)].slots[j].word,
					__ATOMIC_ACQUIRE);

			if ((w & DP_MAC_VALID) && (w & DP_MAC_ADDR_MASK) == m)
				n++;
		}
	return n;
}

/* How many valid slots hold mac (after the threads joined). */
static unsigned int
copies(const struct dp_mac_table *t, uint64_t m)
{
	unsigned int i, j, n = 0;

	for (i = 0; i < DP_MAC_BUCKETS; i++)
		for (j = 0; j < DP_MAC_BUCKET_SLOTS; j++) {
			uint64_t w = t->buckets[i].slots[j].word;

			if ((w & DP_MAC_VALID) && (w & DP_MAC_ADDR_MASK) == m)
				n++;
		}
	return n;
}

/* A spinning barrier for two threads: a blocking one wakes them
 * microseconds apart, far too long for them to meet in the slow path. */
static unsigned int gate_count, gate_gen;

static void
gate(void)
{
	unsigned int gen = __atomic_load_n(&gate_gen, __ATOMIC_ACQUIRE);
	unsigned long spins = 0;

	if (__atomic_add_fetch(&gate_count, 1, __ATOMIC_ACQ_REL) == 2) {
		__atomic_store_n(&gate_count, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&gate_gen, gen + 1, __ATOMIC_RELEASE);
		return;
	}
	while (__atomic_load_n(&gate_gen, __ATOMIC_ACQUIRE) == gen)
		if (++spins % 1024 == 0)
			sched_yield();	/* the other thread may not be running */
}

/* Both threads learn the same new MACs on the same port at the same
 * moment, round after round: each MAC must end up in one slot, inserted
 * and counted once (learned, or evicting an older one once the table is
 * full). Thread 0 checks each round's MACs while thread 1 waits. */
static void *
learn_same(void *arg)
{
	struct racer *r = arg;
	unsigned int round, i;

	for (round = 0; round < SAME_ROUNDS; round++) {
		gate();
		for (i = 0; i < SAME_MACS; i++)
			dp_mac_learn(&shared, mac(round * SAME_MACS + i + 1), 3,
					T0 + round, &r->c);
		gate();
		if (r->id != 0)
			continue;
		for (i = 0; i < SAME_MACS; i++) {
			uint64_t m = mac(round * SAME_MACS + i + 1);

			r->bad += copies_near(&shared, m) != 1 ||
				dp_mac_lookup(&shared, m, T0 + round) != 3;
		}
	}
	return NULL;
}

static void
test_concurrent_learning(void)
{
	struct racer r[2];
	uint64_t inserted = 0, other = 0;
	unsigned int t;

	dp_mac_init(&shared, LONG_AGE);
	memset(r, 0, sizeof(r));
	for (t = 0; t < 2; t++) {
		r[t].id = t;
		pthread_create(&r[t].thread, NULL, learn_same, &r[t]);
	}
	for (t = 0; t < 2; t++) {
		pthread_join(r[t].thread, NULL);
		inserted += r[t].c.mac_learned + r[t].c.mac_evicted;
		other += r[t].c.mac_moved + r[t].c.mac_learn_full;
	}
	CHECK(r[0].bad == 0, "%u MACs missing, on the wrong port or twice",
			r[0].bad);
	CHECK(inserted == (uint64_t)SAME_MACS * SAME_ROUNDS && other == 0,
			"inserted %lu of %u, moved or full %lu",
			(unsigned long)inserted, SAME_MACS * SAME_ROUNDS,
			(unsigned long)other);
}

/* Thread 0 moves the MACs between ports 1 and 2; thread 1 looks them up
 * meanwhile (always 1 or 2: they never age) and learns 512 MACs of its
 * own, few enough that nothing is evicted. */
static void *
move_or_look(void *arg)
{
	struct racer *r = arg;
	unsigned int round, i;

	for (round = 0; round < ROUNDS; round++)
		for (i = 0; i < 64; i++) {
			uint64_t m = mac(i * 104729 + 5);

			if (r->id == 0) {
				dp_mac_learn(&shared, m, (uint16_t)(1 + (round & 1)),
						T0 + round, &r->c);
			} else {
				int p = dp_mac_lookup(&shared, m, T0 + round);

				r->bad += p != 1 && p != 2;
				dp_mac_learn(&shared,
						mac(0x100000 + (round * 64 + i) % 512),
						9, T0 + round, &r->c);
			}
		}
	return NULL;
}

static void
test_lookups_during_moves(void)
{
	struct racer r[2];
	unsigned int i, t, dup = 0;

	dp_mac_init(&shared, LONG_AGE);
	memset(r, 0, sizeof(r));
	for (i = 0; i < 64; i++)
		dp_mac_learn(&shared, mac(i * 104729 + 5), 2, T0, &c);
	for (t = 0; t < 2; t++) {
		r[t].id = t;
		pthread_create(&r[t].thread, NULL, move_or_look, &r[t]);
	}
	for (t = 0; t < 2; t++)
		pthread_join(r[t].thread, NULL);
	CHECK(r[1].bad == 0, "%u lookups of moving MACs went wrong", r[1].bad);
	CHECK(r[0].c.mac_moved == (uint64_t)64 * ROUNDS, "moves %lu",
			(unsigned long)r[0].c.mac_moved);
	CHECK(r[1].c.mac_learned == 512 && r[1].c.mac_evicted == 0 &&
			r[0].c.mac_evicted == 0, "learned %lu evicted %lu",
			(unsigned long)r[1].c.mac_learned,
			(unsigned long)r[1].c.mac_evicted);
	for (i = 0; i < 64; i++)
		dup += copies(&shared, mac(i * 104729 + 5)) > 1;
	CHECK(dup == 0, "%u moving MACs have two slots", dup);
}

/* Both threads learn MACs of one bucket pair, more than it holds: each
 * insert evicts, under the buckets' locks. */
static void *
fight(void *arg)
{
	struct racer *r = arg;
	unsigned int round, i;

	for (round = 0; round < ROUNDS * 10; round++)
		for (i = 0; i < r->nmacs; i++)
			dp_mac_learn(&shared, r->macs[i], r->port,
					T0 + round * r->nmacs + i, &r->c);
	return NULL;
}

static void
test_bucket_fight(void)
{
	uint64_t k[12];
	struct racer r[2];
	unsigned int i, t, live = 0, dup = 0, wrong = 0;

	dp_mac_init(&shared, LONG_AGE);
	colliding(k, 12);
	memset(r, 0, sizeof(r));
	for (t = 0; t < 2; t++) {
		r[t].id = t;
		r[t].port = (uint16_t)(t + 1);
		r[t].macs = &k[t * 6];
		r[t].nmacs = 6;
		pthread_create(&r[t].thread, NULL, fight, &r[t]);
	}
	for (t = 0; t < 2; t++)
		pthread_join(r[t].thread, NULL);
	for (i = 0; i < 12; i++) {
		int p = dp_mac_lookup(&shared, k[i], T0);

		dup += copies(&shared, k[i]) > 1;
		if (p >= 0) {
			live++;
			wrong += p != (i < 6 ? 1 : 2);
		}
	}
	CHECK(dup == 0, "%u MACs in two slots", dup);
	CHECK(wrong == 0, "%u MACs on the wrong port", wrong);
	CHECK(live == DP_MAC_PROBE_BUCKETS * DP_MAC_BUCKET_SLOTS,
			"%u live of 8 slots", live);
	CHECK(r[0].c.mac_evicted + r[1].c.mac_evicted > 0, "no evictions");
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
	test_concurrent_learning();
	test_lookups_during_moves();
	test_bucket_fight();
	TEST_MAIN_END("test_mac");
}
