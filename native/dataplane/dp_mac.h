/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The MAC table of the L2 learning switch. It has no DPDK dependency, so
 * native/dataplane/tests can test it with a plain C compiler.
 *
 * Layout: DP_MAC_BUCKETS buckets of four 16-byte slots, one bucket per
 * cache line. A MAC lives in its home bucket or the next one, so a lookup
 * reads at most two cache lines and never allocates. Each slot packs the
 * MAC, the port index and two flags into one word:
 *
 *   bit 63: static (never ages, never moves, never evicted)
 *   bit 62: valid
 *   bits 48..61: port index (an index into dp_core.ports, not a port_id)
 *   bits 0..47: the MAC address, first octet in bits 40..47
 *
 * The table is lossy on purpose: when both buckets are full of live
 * dynamic entries, learning replaces the oldest one. At worst a known
 * unicast destination becomes a flood, never a drop.
 *
 * Concurrency: every worker lcore of the data plane shares one table.
 *   - Lookups and the refresh of a known MAC's time are lock-free: aligned
 *     64-bit atomic loads and stores (relaxed: plain moves on x86-64). A
 *     refresh is stored only once the time has moved on by refresh_tsc
 *     (age_tsc / DP_MAC_REFRESH_DIV), so workers that see the same source
 *     do not fight over its cache line for every frame; an entry may thus
 *     age out up to refresh_tsc early. (dp_mac_learn_as with solo, for a
 *     table with one writer, refreshes on every frame as it always did.)
 *     Each worker reads its clock once per round, so a time stored by
 *     another may be a little ahead of a reader's: the age is a signed
 *     difference, and an entry seen "in the future" is live.
 *   - Writing a slot's word (learning a new MAC, a move, an eviction, a
 *     static entry) is the slow path and happens under the spinlock of
 *     the slot's bucket. Learning takes the locks of both of the MAC's
 *     buckets (lower index first), so two workers learning the same MAC
 *     cannot both insert it, and looks again under them. The writer
 *     stores the time before the word (release).
 *   - A reader racing with a writer may see the old or the new word of a
 *     slot, with the old or the new time: either MAC was on that port a
 *     moment ago, and a time too old only makes the entry look dead. At
 *     worst one frame goes where the MAC was, or is flooded.
 * The spinlock is a word driven with __atomic builtins (no DPDK here).
 * Static entries are added before the workers start.
 */
#ifndef DP_MAC_H
#define DP_MAC_H

#include <stdbool.h>
#include <stdint.h>

#include "dp_counters.h"

#define DP_MAC_BUCKETS 1024			/* power of two */
#define DP_MAC_BUCKET_SLOTS 4
#define DP_MAC_ENTRIES (DP_MAC_BUCKETS * DP_MAC_BUCKET_SLOTS)
#define DP_MAC_PROBE_BUCKETS 2
#define DP_MAC_MAX_PORT_IDX 0x3fff
#define DP_MAC_REFRESH_DIV 256		/* refresh_tsc = age_tsc / this */

#define DP_MAC_ADDR_MASK ((UINT64_C(1) << 48) - 1)
#define DP_MAC_VALID (UINT64_C(1) << 62)
#define DP_MAC_STATIC (UINT64_C(1) << 63)
#define DP_MAC_PORT_SHIFT 48
#define DP_MAC_MATCH_MASK (DP_MAC_ADDR_MASK | DP_MAC_VALID)

/* The per-frame paths, inlined whatever the compiler thinks of their size. */
#define DP_MAC_HOT static inline __attribute__((always_inline))

struct dp_mac_entry {
	uint64_t word;		/* see the layout above; 0: empty */
	uint64_t seen_tsc;	/* last time the MAC was seen as a source */
};

struct dp_mac_bucket {
	struct dp_mac_entry slots[DP_MAC_BUCKET_SLOTS];
} __attribute__((aligned(64)));

struct dp_mac_table {
	uint64_t age_tsc;	/* dynamic entries older than this are dead */
	uint64_t refresh_tsc;	/* a known MAC's time is rewritten this late */
	struct dp_mac_bucket buckets[DP_MAC_BUCKETS];
	uint32_t locks[DP_MAC_BUCKETS];	/* 0 free, 1 held: slot writers */
};

void dp_mac_init(struct dp_mac_table *t, uint64_t age_tsc);

/* Adds an entry that never ages or moves (before the workers start; it
 * takes the bucket locks all the same). Returns 0, -EINVAL for a zero
 * or multicast MAC or a port index out of range, -EEXIST if the MAC is
 * already static, or -ENOSPC if both of its buckets hold only static
 * entries. A dynamic entry for the same MAC is replaced; otherwise the
 * slot is chosen as for learning at time now (the oldest dynamic entry
 * may be evicted, without counting). */
int dp_mac_add_static(struct dp_mac_table *t, uint64_t mac,
		uint16_t port_idx, uint64_t now);

/* The learning slow path: a new MAC, a move, or a refresh of an aged or
 * static entry, under the locks of the MAC's buckets. Use dp_mac_learn(). */
void dp_mac_learn_slow(struct dp_mac_table *t, uint64_t mac,
		uint16_t port_idx, uint64_t now, struct dp_global_counters *c);

/* Number of live entries (control path and tests only: scans the table). */
unsigned int dp_mac_count(const struct dp_mac_table *t, uint64_t now);

DP_MAC_HOT uint64_t
dp_mac_word_of(const struct dp_mac_entry *e)
{
	return __atomic_load_n(&e->word, __ATOMIC_RELAXED);
}

DP_MAC_HOT uint64_t
dp_mac_seen_of(const struct dp_mac_entry *e)
{
	return __atomic_load_n(&e->seen_tsc, __ATOMIC_RELAXED);
}

/* Time from seen to now; negative when seen is later than now: another
 * worker's clock, read at the start of its round, may be a little ahead
 * of this one's. Such an entry is live, and not refreshed backwards. */
DP_MAC_HOT int64_t
dp_mac_elapsed(uint64_t now, uint64_t seen)
{
	return (int64_t)(now - seen);
}

DP_MAC_HOT uint32_t
dp_mac_bucket_of(uint64_t mac)
{
	/* Fibonacci hashing: multiply by 2^64 / phi, keep the top bits. */
	return (uint32_t)((mac * UINT64_C(0x9E3779B97F4A7C15)) >> 40) &
		(DP_MAC_BUCKETS - 1);
}

DP_MAC_HOT uint16_t
dp_mac_word_port(uint64_t word)
{
	return (uint16_t)((word >> DP_MAC_PORT_SHIFT) & DP_MAC_MAX_PORT_IDX);
}

/* Whether the entry whose word was loaded as word is live at now. */
DP_MAC_HOT bool
dp_mac_word_live(const struct dp_mac_table *t, const struct dp_mac_entry *e,
		uint64_t word, uint64_t now)
{
	return (word & DP_MAC_STATIC) ||
		dp_mac_elapsed(now, dp_mac_seen_of(e)) < (int64_t)t->age_tsc;
}

static inline bool
dp_mac_entry_live(const struct dp_mac_table *t, const struct dp_mac_entry *e,
		uint64_t now)
{
	return dp_mac_word_live(t, e, dp_mac_word_of(e), now);
}

/* The slot of bk holding want (a MAC with DP_MAC_VALID), or NULL; its
 * word in *word. Written out slot by slot: the compiler does not unroll
 * a loop of atomic loads. */
DP_MAC_HOT struct dp_mac_entry *
dp_mac_find_in(const struct dp_mac_bucket *bk, uint64_t want, uint64_t *word)
{
	uint64_t w;

	_Static_assert(DP_MAC_BUCKET_SLOTS == 4, "dp_mac_find_in reads 4 slots");
#define DP_MAC_TRY(j) \
	w = dp_mac_word_of(&bk->slots[j]); \
	if ((w & DP_MAC_MATCH_MASK) == want) { \
		*word = w; \
		return (struct dp_mac_entry *)&bk->slots[j]; \
	}
	DP_MAC_TRY(0)
	DP_MAC_TRY(1)
	DP_MAC_TRY(2)
	DP_MAC_TRY(3)
#undef DP_MAC_TRY
	return NULL;
}

/* The slot holding mac (live or not), or NULL; its word in *word. */
DP_MAC_HOT struct dp_mac_entry *
dp_mac_find(const struct dp_mac_table *t, uint64_t mac, uint64_t *word)
{
	uint32_t b = dp_mac_bucket_of(mac);
	uint64_t want = mac | DP_MAC_VALID;
	struct dp_mac_entry *e;

	_Static_assert(DP_MAC_PROBE_BUCKETS == 2, "dp_mac_find probes 2 buckets");
	e = dp_mac_find_in(&t->buckets[b], want, word);
	if (e != NULL)
		return e;
	return dp_mac_find_in(&t->buckets[(b + 1) & (DP_MAC_BUCKETS - 1)],
			want, word);
}

/* The port index mac was last seen on, or -1 when unknown or aged out. */
DP_MAC_HOT int
dp_mac_lookup(const struct dp_mac_table *t, uint64_t mac, uint64_t now)
{
	uint64_t word;
	const struct dp_mac_entry *e = dp_mac_find(t, mac, &word);

	if (e == NULL || !dp_mac_word_live(t, e, word, now))
		return -1;
	return dp_mac_word_port(word);
}

/* Records that mac was seen as a source on port_idx at time now. The
 * common case, a known MAC on the same port, only refreshes the time:
 * always when solo (a constant: the table has one writer), else only once
 * it has moved on by refresh_tsc. */
DP_MAC_HOT void
dp_mac_learn_as(struct dp_mac_table *t, uint64_t mac, uint16_t port_idx,
		uint64_t now, struct dp_global_counters *c, const bool solo)
{
	uint64_t word;
	struct dp_mac_entry *e = dp_mac_find(t, mac, &word);
	uint64_t same = mac | DP_MAC_VALID |
		((uint64_t)port_idx << DP_MAC_PORT_SHIFT);

	if (e != NULL && word == same) {
		if (solo || dp_mac_elapsed(now, dp_mac_seen_of(e)) >=
				(int64_t)t->refresh_tsc)
			__atomic_store_n(&e->seen_tsc, now, __ATOMIC_RELAXED);
		return;
	}
	dp_mac_learn_slow(t, mac, port_idx, now, c);
}

/* dp_mac_learn_as for a table with several writers. */
DP_MAC_HOT void
dp_mac_learn(struct dp_mac_table *t, uint64_t mac, uint16_t port_idx,
		uint64_t now, struct dp_global_counters *c)
{
	dp_mac_learn_as(t, mac, port_idx, now, c, false);
}

#endif /* DP_MAC_H */
