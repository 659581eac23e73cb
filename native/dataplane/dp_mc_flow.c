/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memcached path's request and fragment tables (dp_mc_flow.h):
 * open addressing over a power-of-two array of one-cache-line entries.
 * A key lives in one of the DP_MC_FLOW_PROBE slots from its home slot,
 * and every lookup looks at all of them (no stop at an empty slot), so
 * removing an entry is clearing its slot: no tombstones, no moves.
 * Plain C11, no DPDK.
 *
 * The release callback runs for every entry the table drops on its own
 * (evicted, replaced, reaped, freed). It must not call back into the
 * table; the entry is cleared after it returns.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dp_mc_flow.h"

_Static_assert(sizeof(struct dp_mc_flow) == 64, "one entry, one line");

struct dp_mc_flow_table {
	struct dp_mc_flow *slots;
	uint32_t mask;		/* slots - 1 */
	uint32_t count;		/* used slots */
	uint32_t cursor;	/* where the reaper goes on */
	dp_mc_flow_release_fn release;
	void *release_arg;
};

int
dp_mc_flow_create(uint32_t nentries, dp_mc_flow_release_fn release,
		void *release_arg, struct dp_mc_flow_table **out)
{
	struct dp_mc_flow_table *t;
	uint32_t n;

	*out = NULL;
	if (nentries == 0 || nentries > (1u << 31))
		return -EINVAL;
	for (n = DP_MC_FLOW_PROBE; n < nentries; n <<= 1)
		;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	t->slots = aligned_alloc(sizeof(struct dp_mc_flow),
			(size_t)n * sizeof(struct dp_mc_flow));
	if (t->slots == NULL) {
		free(t);
		return -ENOMEM;
	}
	memset(t->slots, 0, (size_t)n * sizeof(struct dp_mc_flow));
	t->mask = n - 1;
	t->release = release;
	t->release_arg = release_arg;
	*out = t;
	return 0;
}

static void
dp_mc_flow_drop(struct dp_mc_flow_table *t, struct dp_mc_flow *f)
{
	if (t->release != NULL)
		t->release(f, t->release_arg);
	memset(f, 0, sizeof(*f));
	t->count--;
}

void
dp_mc_flow_free(struct dp_mc_flow_table *t)
{
	uint32_t i;

	if (t == NULL)
		return;
	for (i = 0; i <= t->mask; i++)
		if (t->slots[i].flags & DP_MC_FLOW_USED)
			dp_mc_flow_drop(t, &t->slots[i]);
	free(t->slots);
	free(t);
}

/* Keys are structured words (address, port, id): mix before masking. */
static inline uint32_t
dp_mc_flow_home(const struct dp_mc_flow_table *t, uint64_t key)
{
	key ^= key >> 33;
	key *= UINT64_C(0xff51afd7ed558ccd);
	key ^= key >> 33;
	key *= UINT64_C(0xc4ceb9fe1a85ec53);
	key ^= key >> 33;
	return (uint32_t)key & t->mask;
}

static inline struct dp_mc_flow *
dp_mc_flow_at(struct dp_mc_flow_table *t, uint32_t home, unsigned int i)
{
	return &t->slots[(home + i) & t->mask];
}

static struct dp_mc_flow *
dp_mc_flow_find(struct dp_mc_flow_table *t, uint32_t home, uint64_t key)
{
	unsigned int i;

	for (i = 0; i < DP_MC_FLOW_PROBE; i++) {
		struct dp_mc_flow *f = dp_mc_flow_at(t, home, i);

		if ((f->flags & DP_MC_FLOW_USED) && f->key == key)
			return f;
	}
	return NULL;
}

struct dp_mc_flow *
dp_mc_flow_lookup(struct dp_mc_flow_table *t, uint64_t key, uint64_t now)
{
	struct dp_mc_flow *f = dp_mc_flow_find(t, dp_mc_flow_home(t, key), key);

	/* An expired entry stays for the reaper (or an insert) to release. */
	if (f == NULL || now >= f->expire_tsc)
		return NULL;
	return f;
}

struct dp_mc_flow *
dp_mc_flow_insert(struct dp_mc_flow_table *t, uint64_t key,
		uint64_t expire_tsc, bool *evicted)
{
	uint32_t home = dp_mc_flow_home(t, key);
	struct dp_mc_flow *f = dp_mc_flow_find(t, home, key);
	unsigned int i;

	*evicted = false;
	if (f == NULL) {
		struct dp_mc_flow *soonest = NULL;

		for (i = 0; i < DP_MC_FLOW_PROBE; i++) {
			struct dp_mc_flow *g = dp_mc_flow_at(t, home, i);

			if (!(g->flags & DP_MC_FLOW_USED)) {
				f = g;
				break;
			}
			if (soonest == NULL ||
					g->expire_tsc < soonest->expire_tsc)
				soonest = g;
		}
		if (f == NULL) {
			f = soonest;
			*evicted = true;
		}
	}
	if (f->flags & DP_MC_FLOW_USED)
		dp_mc_flow_drop(t, f);
	f->key = key;
	f->expire_tsc = expire_tsc;
	f->flags = DP_MC_FLOW_USED;
	t->count++;
	return f;
}

void
dp_mc_flow_remove(struct dp_mc_flow_table *t, struct dp_mc_flow *f)
{
	if (!(f->flags & DP_MC_FLOW_USED))
		return;
	memset(f, 0, sizeof(*f));
	t->count--;
}

uint32_t
dp_mc_flow_reap(struct dp_mc_flow_table *t, uint64_t now, uint32_t budget)
{
	uint32_t n = 0;

	if (budget > t->mask + 1)
		budget = t->mask + 1;	/* one lap is everything */
	while (budget-- > 0) {
		struct dp_mc_flow *f = &t->slots[t->cursor];

		t->cursor = (t->cursor + 1) & t->mask;
		if ((f->flags & DP_MC_FLOW_USED) && now >= f->expire_tsc) {
			dp_mc_flow_drop(t, f);
			n++;
		}
	}
	return n;
}

uint32_t
dp_mc_flow_count(const struct dp_mc_flow_table *t)
{
	return t->count;
}
