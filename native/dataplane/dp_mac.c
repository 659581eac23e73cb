/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The slow paths of the MAC table (dp_mac.h): inserting, moving, static
 * entries, each under the locks of the buckets it may write. Free of DPDK;
 * the inline fast paths are in the header.
 */
#include <errno.h>
#include <string.h>

#include "dp_mac.h"

void
dp_mac_init(struct dp_mac_table *t, uint64_t age_tsc)
{
	memset(t->buckets, 0, sizeof(t->buckets));
	memset(t->locks, 0, sizeof(t->locks));
	t->age_tsc = age_tsc;
	t->refresh_tsc = age_tsc / DP_MAC_REFRESH_DIV;
}

static inline void
dp_mac_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

/* Test and test-and-set: spin on a plain load, so waiters do not pull
 * the line away from the holder. */
static void
dp_mac_spin_lock(uint32_t *l)
{
	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE) != 0)
		while (__atomic_load_n(l, __ATOMIC_RELAXED) != 0)
			dp_mac_cpu_relax();
}

static void
dp_mac_spin_unlock(uint32_t *l)
{
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

/* The locks of both buckets of mac, lower index first (the pair of the
 * last bucket wraps to bucket 0). */
static void
dp_mac_lock_pair(struct dp_mac_table *t, uint64_t mac)
{
	uint32_t a = dp_mac_bucket_of(mac), b = (a + 1) & (DP_MAC_BUCKETS - 1);

	dp_mac_spin_lock(&t->locks[a < b ? a : b]);
	dp_mac_spin_lock(&t->locks[a < b ? b : a]);
}

static void
dp_mac_unlock_pair(struct dp_mac_table *t, uint64_t mac)
{
	uint32_t a = dp_mac_bucket_of(mac), b = (a + 1) & (DP_MAC_BUCKETS - 1);

	dp_mac_spin_unlock(&t->locks[b]);
	dp_mac_spin_unlock(&t->locks[a]);
}

/* A slot's new contents, under its bucket's lock: the time first, so a
 * reader that sees the new word sees its time (dp_mac.h). */
static inline void
dp_mac_set(struct dp_mac_entry *e, uint64_t word, uint64_t seen)
{
	__atomic_store_n(&e->seen_tsc, seen, __ATOMIC_RELAXED);
	__atomic_store_n(&e->word, word, __ATOMIC_RELEASE);
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
 * when all of them are static. Under the buckets' locks.
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
			uint64_t word = dp_mac_word_of(e);

			if (!(word & DP_MAC_VALID) ||
					!dp_mac_word_live(t, e, word, now))
				return e;
			if (word & DP_MAC_STATIC)
				continue;
			if (oldest == NULL ||
					dp_mac_seen_of(e) < dp_mac_seen_of(oldest))
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
	struct dp_mac_entry *e;
	uint64_t word;
	bool evicting;

	dp_mac_lock_pair(t, mac);
	/* Looked for again under the locks: another worker may have just
	 * learned it. */
	e = dp_mac_find(t, mac, &word);
	if (e != NULL) {
		/* Static: configured, not learned; frames cannot move it. */
		if (word & DP_MAC_STATIC)
			goto out;
		if (dp_mac_word_port(word) == port_idx &&
				dp_mac_word_live(t, e, word, now)) {
			/* Another worker learned it in the meantime. */
			__atomic_store_n(&e->seen_tsc, now, __ATOMIC_RELAXED);
			goto out;
		}
		/* A live entry on another port is a move; an aged-out entry
		 * coming back is learned afresh. */
		if (dp_mac_word_live(t, e, word, now))
			c->mac_moved++;
		else
			c->mac_learned++;
		dp_mac_set(e, dp_mac_word(mac, port_idx, false), now);
		goto out;
	}
	e = dp_mac_victim(t, mac, now, &evicting);
	if (e == NULL) {
		c->mac_learn_full++;
		goto out;
	}
	if (evicting)
		c->mac_evicted++;
	else
		c->mac_learned++;
	dp_mac_set(e, dp_mac_word(mac, port_idx, false), now);
out:
	dp_mac_unlock_pair(t, mac);
}

int
dp_mac_add_static(struct dp_mac_table *t, uint64_t mac, uint16_t port_idx,
		uint64_t now)
{
	struct dp_mac_entry *e;
	uint64_t word;
	bool evicting;
	int rc = 0;

	/* The group bit is the least significant bit of the first octet. */
	if (mac == 0 || (mac & DP_MAC_ADDR_MASK) != mac ||
			(mac >> 40) & 1 || port_idx > DP_MAC_MAX_PORT_IDX)
		return -EINVAL;
	dp_mac_lock_pair(t, mac);
	e = dp_mac_find(t, mac, &word);
	if (e != NULL && (word & DP_MAC_STATIC)) {
		rc = -EEXIST;
		goto out;
	}
	if (e == NULL) {
		e = dp_mac_victim(t, mac, now, &evicting);
		if (e == NULL) {
			rc = -ENOSPC;
			goto out;
		}
	}
	dp_mac_set(e, dp_mac_word(mac, port_idx, true), 0);
out:
	dp_mac_unlock_pair(t, mac);
	return rc;
}

unsigned int
dp_mac_count(const struct dp_mac_table *t, uint64_t now)
{
	unsigned int i, j, n = 0;

	for (i = 0; i < DP_MAC_BUCKETS; i++)
		for (j = 0; j < DP_MAC_BUCKET_SLOTS; j++) {
			const struct dp_mac_entry *e = &t->buckets[i].slots[j];
			uint64_t word = dp_mac_word_of(e);

			if ((word & DP_MAC_VALID) &&
					dp_mac_word_live(t, e, word, now))
				n++;
		}
	return n;
}
