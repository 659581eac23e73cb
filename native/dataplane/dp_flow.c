/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The slow paths of the steering flow table (dp_flow.h): recording a new
 * connection's decision, choosing the slot it replaces, counting. Free of
 * DPDK; the per-segment fast path is inline in the header.
 */
#include <string.h>

#include "dp_flow.h"

void
dp_flow_init(struct dp_flow_table *t, uint64_t idle_tsc, uint64_t closing_tsc,
		uint64_t seed)
{
	memset(t->buckets, 0, sizeof(t->buckets));
	t->idle_tsc = idle_tsc;
	t->closing_tsc = closing_tsc < idle_tsc ? closing_tsc : idle_tsc;
	t->seed = seed;
	t->steered_tsc = 0;
	t->any_steered = false;
}

/* Eviction class of a live entry: lower goes first (see dp_flow.h). */
static unsigned int
dp_flow_class(const struct dp_flow_entry *e)
{
	if (e->state & DP_FLOW_CLOSING)
		return 0;
	if (!(e->state & DP_FLOW_PAST_SYN))
		return 1;
	return e->state & DP_FLOW_STEERED ? 3 : 2;
}

/*
 * The slot a new flow goes to: the first empty or dead slot of its two
 * buckets, else the live one of the lowest class, oldest first
 * (*evicting set).
 */
static struct dp_flow_entry *
dp_flow_victim(struct dp_flow_table *t, const struct dp_flow_key *k,
		uint64_t now, bool *evicting)
{
	uint32_t b = dp_flow_bucket_of(t, k);
	struct dp_flow_entry *best = NULL;
	unsigned int i, j, best_class = 0;

	*evicting = false;
	for (i = 0; i < DP_FLOW_PROBE_BUCKETS; i++) {
		struct dp_flow_bucket *bk =
			&t->buckets[(b + i) & (DP_FLOW_BUCKETS - 1)];

		for (j = 0; j < DP_FLOW_BUCKET_SLOTS; j++) {
			struct dp_flow_entry *e = &bk->slots[j];
			unsigned int cls;

			if (!dp_flow_entry_live(t, e, now))
				return e;
			cls = dp_flow_class(e);
			if (best == NULL || cls < best_class ||
					(cls == best_class &&
					 e->seen_tsc < best->seen_tsc)) {
				best = e;
				best_class = cls;
			}
		}
	}
	*evicting = true;
	return best;
}

bool
dp_flow_syn(struct dp_flow_table *t, const struct dp_flow_key *k,
		uint32_t isn, bool steer_on, uint64_t now,
		struct dp_global_counters *c)
{
	struct dp_flow_entry *e = dp_flow_find(t, k);
	bool evicting;

	if (e != NULL && dp_flow_entry_live(t, e, now) &&
			!(e->state & DP_FLOW_CLOSING) && e->isn == isn) {
		/* The same SYN again: it must meet the same peer. */
		e->seen_tsc = now;
		if (!(e->state & DP_FLOW_STEERED))
			return false;
		t->steered_tsc = now;
		return true;
	}
	/* A new connection; on the slot of an old one with this tuple (dead,
	 * closing, or one whose end we missed) if there is one. */
	if (e == NULL) {
		e = dp_flow_victim(t, k, now, &evicting);
		if (evicting)
			c->flow_evicted++;
	}
	e->key = *k;
	e->isn = isn;
	e->seen_tsc = now;
	e->state = DP_FLOW_VALID | (steer_on ? DP_FLOW_STEERED : 0);
	if (!steer_on) {
		c->flows_direct++;
		return false;
	}
	c->flows_steered++;
	t->steered_tsc = now;
	t->any_steered = true;
	return true;
}

unsigned int
dp_flow_count(const struct dp_flow_table *t, uint64_t now,
		unsigned int *steered)
{
	unsigned int i, j, n = 0, s = 0;

	for (i = 0; i < DP_FLOW_BUCKETS; i++)
		for (j = 0; j < DP_FLOW_BUCKET_SLOTS; j++) {
			const struct dp_flow_entry *e = &t->buckets[i].slots[j];

			if (!dp_flow_entry_live(t, e, now))
				continue;
			n++;
			if (e->state & DP_FLOW_STEERED)
				s++;
		}
	if (steered != NULL)
		*steered = s;
	return n;
}
