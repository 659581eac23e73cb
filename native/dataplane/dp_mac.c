/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The slow paths of the MAC table (dp_mac.h): inserting, moving, static
 * entries. Free of DPDK; the inline fast paths are in the header.
 */
#include <errno.h>
#include <string.h>

#include "dp_mac.h"

void
dp_mac_init(struct dp_mac_table *t, uint64_t age_tsc)
{
	memset(t->buckets, 0, sizeof(t->buckets));
	t->age_tsc = age_tsc;
}

static inline uint64_t
dp_mac_word(uint64_t mac, uint16_t port_idx, bool is_static)
{
	return mac | DP_MAC_VALID | ((uint64_t)port_idx << DP_MAC_PORT_SHIFT) |
		(is_static ? DP_MAC_STATIC : 0);
}

/*
 * The slot a new MAC goes to: the first empty or dead slot of its two
 * buckets, else the oldest live dynamic one (*evicting set), else NULL
 * when all of them are static.
 */
static struct dp_mac_entry *
dp_mac_victim(struct dp_mac_table *t, uint64_t mac, uint64_t now,
		bool *evicting)
{
	uint32_t b = dp_mac_bucket_of(mac);
	struct dp_mac_entry *oldest = NULL;
	unsigned int i, j;

	*evicting = false;
	for (i = 0; i < DP_MAC_PROBE_BUCKETS; i++) {
		struct dp_mac_bucket *bk =
			&t->buckets[(b + i) & (DP_MAC_BUCKETS - 1)];

		for (j = 0; j < DP_MAC_BUCKET_SLOTS; j++) {
			struct dp_mac_entry *e = &bk->slots[j];

			if (!(e->word & DP_MAC_VALID) ||
					!dp_mac_entry_live(t, e, now))
				return e;
			if (e->word & DP_MAC_STATIC)
				continue;
			if (oldest == NULL || e->seen_tsc < oldest->seen_tsc)
				oldest = e;
		}
	}
	*evicting = oldest != NULL;
	return oldest;
}

void
dp_mac_learn_slow(struct dp_mac_table *t, uint64_t mac, uint16_t port_idx,
		uint64_t now, struct dp_global_counters *c)
{
	struct dp_mac_entry *e = dp_mac_find(t, mac);
	bool evicting;

	if (e != NULL) {
		if (e->word & DP_MAC_STATIC)
			return;	/* configured, not learned: frames cannot move it */
		/* A live entry on another port is a move; an aged-out entry
		 * coming back is learned afresh. */
		if (dp_mac_entry_live(t, e, now))
			c->mac_moved++;
		else
			c->mac_learned++;
		e->word = dp_mac_word(mac, port_idx, false);
		e->seen_tsc = now;
		return;
	}
	e = dp_mac_victim(t, mac, now, &evicting);
	if (e == NULL) {
		c->mac_learn_full++;
		return;
	}
	if (evicting)
		c->mac_evicted++;
	else
		c->mac_learned++;
	e->word = dp_mac_word(mac, port_idx, false);
	e->seen_tsc = now;
}

int
dp_mac_add_static(struct dp_mac_table *t, uint64_t mac, uint16_t port_idx,
		uint64_t now)
{
	struct dp_mac_entry *e;
	bool evicting;

	/* The group bit is the least significant bit of the first octet. */
	if (mac == 0 || (mac & DP_MAC_ADDR_MASK) != mac ||
			(mac >> 40) & 1 || port_idx > DP_MAC_MAX_PORT_IDX)
		return -EINVAL;
	e = dp_mac_find(t, mac);
	if (e != NULL && (e->word & DP_MAC_STATIC))
		return -EEXIST;
	if (e == NULL) {
		e = dp_mac_victim(t, mac, now, &evicting);
		if (e == NULL)
			return -ENOSPC;
	}
	e->word = dp_mac_word(mac, port_idx, true);
	e->seen_tsc = 0;
	return 0;
}

unsigned int
dp_mac_count(const struct dp_mac_table *t, uint64_t now)
{
	unsigned int i, j, n = 0;

	for (i = 0; i < DP_MAC_BUCKETS; i++)
		for (j = 0; j < DP_MAC_BUCKET_SLOTS; j++) {
			const struct dp_mac_entry *e = &t->buckets[i].slots[j];

			if ((e->word & DP_MAC_VALID) && dp_mac_entry_live(t, e, now))
				n++;
		}
	return n;
}
