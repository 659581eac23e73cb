/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The MAC table of the L2 learning switch. It is owned by the one worker
 * lcore, so it takes no locks. It is lossy on purpose: when all probed
 * slots hold live entries the oldest is replaced, which at worst turns a
 * known unicast destination into a flood, never into a drop.
 */
#include <string.h>

#include "dp.h"

static inline uint32_t
dp_mac_hash(uint64_t key)
{
	/* Fibonacci hashing: multiply by 2^64 / phi, keep the top bits. */
	return (uint32_t)((key * 0x9E3779B97F4A7C15ULL) >> 52) &
		(DP_MAC_ENTRIES - 1);
}

void
dp_mac_init(struct dp_mac_table *t, uint64_t age_tsc)
{
	memset(t->slots, 0, sizeof(t->slots));
	t->age_tsc = age_tsc;
}

/* Returns the port index the MAC was last seen on, or -1 when unknown or
 * aged out. */
int
dp_mac_lookup(const struct dp_mac_table *t, uint64_t key, uint64_t now)
{
	uint32_t h = dp_mac_hash(key);
	unsigned int i;

	for (i = 0; i < DP_MAC_PROBE; i++) {
		const struct dp_mac_entry *e =
			&t->slots[(h + i) & (DP_MAC_ENTRIES - 1)];

		if (e->key == key)
			return now - e->seen_tsc < t->age_tsc ? e->port_idx : -1;
	}
	return -1;
}

void
dp_mac_learn(struct dp_core *dc, uint64_t key, uint16_t port_idx,
		uint64_t now)
{
	struct dp_mac_table *t = &dc->mac;
	uint32_t h = dp_mac_hash(key);
	struct dp_mac_entry *free_slot = NULL, *oldest = NULL;
	unsigned int i;

	for (i = 0; i < DP_MAC_PROBE; i++) {
		struct dp_mac_entry *e =
			&t->slots[(h + i) & (DP_MAC_ENTRIES - 1)];

		if (e->key == key) {
			if (e->port_idx != port_idx) {
				e->port_idx = port_idx;
				dc->stats.mac_moved++;
			}
			e->seen_tsc = now;
			return;
		}
		if (free_slot == NULL &&
				(e->key == 0 || now - e->seen_tsc >= t->age_tsc))
			free_slot = e;
		if (oldest == NULL || e->seen_tsc < oldest->seen_tsc)
			oldest = e;
	}
	if (free_slot == NULL) {
		free_slot = oldest;
		dc->stats.mac_evicted++;
	} else {
		dc->stats.mac_learned++;
	}
	free_slot->key = key;
	free_slot->port_idx = port_idx;
	free_slot->seen_tsc = now;
}
