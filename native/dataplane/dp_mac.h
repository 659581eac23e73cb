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
 * Ownership: one worker lcore reads and writes a table; nothing else
 * touches it after start-up (static entries are added before the worker
 * starts), so there are no locks.
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

#define DP_MAC_ADDR_MASK ((UINT64_C(1) << 48) - 1)
#define DP_MAC_VALID (UINT64_C(1) << 62)
#define DP_MAC_STATIC (UINT64_C(1) << 63)
#define DP_MAC_PORT_SHIFT 48
#define DP_MAC_MATCH_MASK (DP_MAC_ADDR_MASK | DP_MAC_VALID)

struct dp_mac_entry {
	uint64_t word;		/* see the layout above; 0: empty */
	uint64_t seen_tsc;	/* last time the MAC was seen as a source */
};

struct dp_mac_bucket {
	struct dp_mac_entry slots[DP_MAC_BUCKET_SLOTS];
} __attribute__((aligned(64)));

struct dp_mac_table {
	uint64_t age_tsc;	/* dynamic entries older than this are dead */
	struct dp_mac_bucket buckets[DP_MAC_BUCKETS];
};

void dp_mac_init(struct dp_mac_table *t, uint64_t age_tsc);

/* Adds an entry that never ages or moves. Returns 0, -EINVAL for a zero
 * or multicast MAC or a port index out of range, -EEXIST if the MAC is
 * already static, or -ENOSPC if both of its buckets hold only static
 * entries. A dynamic entry for the same MAC is replaced; otherwise the
 * slot is chosen as for learning at time now (the oldest dynamic entry
 * may be evicted, without counting). */
int dp_mac_add_static(struct dp_mac_table *t, uint64_t mac,
		uint16_t port_idx, uint64_t now);

/* The learning slow path: a new MAC, a move, or a refresh of an aged or
 * static entry. Use dp_mac_learn(). */
void dp_mac_learn_slow(struct dp_mac_table *t, uint64_t mac,
		uint16_t port_idx, uint64_t now, struct dp_global_counters *c);

/* Number of live entries (control path and tests only: scans the table). */
unsigned int dp_mac_count(const struct dp_mac_table *t, uint64_t now);

static inline uint32_t
dp_mac_bucket_of(uint64_t mac)
{
	/* Fibonacci hashing: multiply by 2^64 / phi, keep the top bits. */
	return (uint32_t)((mac * UINT64_C(0x9E3779B97F4A7C15)) >> 40) &
		(DP_MAC_BUCKETS - 1);
}

static inline uint16_t
dp_mac_entry_port(const struct dp_mac_entry *e)
{
	return (uint16_t)((e->word >> DP_MAC_PORT_SHIFT) & DP_MAC_MAX_PORT_IDX);
}

static inline bool
dp_mac_entry_live(const struct dp_mac_table *t, const struct dp_mac_entry *e,
		uint64_t now)
{
	return (e->word & DP_MAC_STATIC) || now - e->seen_tsc < t->age_tsc;
}

/* The slot holding mac (live or not), or NULL. */
static inline struct dp_mac_entry *
dp_mac_find(const struct dp_mac_table *t, uint64_t mac)
{
	uint32_t b = dp_mac_bucket_of(mac);
	uint64_t want = mac | DP_MAC_VALID;
	unsigned int i, j;

	for (i = 0; i < DP_MAC_PROBE_BUCKETS; i++) {
		const struct dp_mac_bucket *bk =
			&t->buckets[(b + i) & (DP_MAC_BUCKETS - 1)];

		for (j = 0; j < DP_MAC_BUCKET_SLOTS; j++)
			if ((bk->slots[j].word & DP_MAC_MATCH_MASK) == want)
				return (struct dp_mac_entry *)&bk->slots[j];
	}
	return NULL;
}

/* The port index mac was last seen on, or -1 when unknown or aged out. */
static inline int
dp_mac_lookup(const struct dp_mac_table *t, uint64_t mac, uint64_t now)
{
	const struct dp_mac_entry *e = dp_mac_find(t, mac);

	if (e == NULL || !dp_mac_entry_live(t, e, now))
		return -1;
	return dp_mac_entry_port(e);
}

/* Records that mac was seen as a source on port_idx at time now. The
 * common case, a known MAC on the same port, only refreshes the time. */
static inline void
dp_mac_learn(struct dp_mac_table *t, uint64_t mac, uint16_t port_idx,
		uint64_t now, struct dp_global_counters *c)
{
	struct dp_mac_entry *e = dp_mac_find(t, mac);
	uint64_t same = mac | DP_MAC_VALID |
		((uint64_t)port_idx << DP_MAC_PORT_SHIFT);

	if (e != NULL && e->word == same) {
		e->seen_tsc = now;
		return;
	}
	dp_mac_learn_slow(t, mac, port_idx, now, c);
}

#endif /* DP_MAC_H */
