/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Short-lived per-request state of the memcached path: a fixed-size,
 * open-addressed table of entries keyed by a 64-bit word, each with an
 * expiry time. No DPDK dependency, no allocation after creation, one
 * owner (the worker lcore), no locks.
 *
 * dp_mc.c keeps two of them:
 *   - requests, keyed by dp_mc_ticket(client ip, client port, request id):
 *     where the datagrams of a multi-datagram request go (all to one
 *     server), which coherence stripe a write holds until its reply
 *     passes, and the gather state of a split multi-key get or flush_all;
 *   - fragments, keyed by dp_mc_frag_key(source ip, IP id): where the
 *     later IP fragments of a large request datagram go, the first one
 *     having named the key.
 *
 * A full neighbourhood evicts its entry closest to expiry; evicted and
 * expired entries are handed to the owner's release callback (a split
 * holds packet buffers that must be freed), never dropped silently.
 */
#ifndef DP_MC_FLOW_H
#define DP_MC_FLOW_H

#include <stdbool.h>
#include <stdint.h>

#define DP_MC_FLOW_PROBE 8		/* slots looked at per key */

enum dp_mc_flow_flags {
	DP_MC_FLOW_USED = 1u << 0,	/* slot holds an entry */
	DP_MC_FLOW_SERVER = 1u << 1,	/* server_* name where to send */
	DP_MC_FLOW_WRITE = 1u << 2,	/* holds coherence stripe `stripe` */
	DP_MC_FLOW_SPLIT = 1u << 3,	/* gather state at split index `split` */
	DP_MC_FLOW_FILL = 1u << 4,	/* a get that may fill the cache */
};

/* One entry. 64 bytes: one cache line. */
struct dp_mc_flow {
	uint64_t key;
	uint64_t expire_tsc;
	uint32_t flags;		/* enum dp_mc_flow_flags */
	uint32_t stripe;	/* DP_MC_FLOW_WRITE */
	uint32_t split;		/* DP_MC_FLOW_SPLIT */
	uint32_t server_ip;	/* DP_MC_FLOW_SERVER: host order */
	uint16_t server_port;	/* host order */
	uint16_t server_id;	/* the pool's stable server id (counters) */
	uint16_t pool_id;
	uint8_t server_mac[6];
	uint8_t pad[20];
};

typedef void (*dp_mc_flow_release_fn)(struct dp_mc_flow *f, void *arg);

struct dp_mc_flow_table;

/* nentries is rounded up to a power of two (at least DP_MC_FLOW_PROBE).
 * release is called for every entry evicted, reaped or cleared; it may
 * be NULL. Returns 0, -EINVAL or -ENOMEM. */
int dp_mc_flow_create(uint32_t nentries, dp_mc_flow_release_fn release,
		void *release_arg, struct dp_mc_flow_table **out);
void dp_mc_flow_free(struct dp_mc_flow_table *t);	/* releases all */

/* The live entry for key, or NULL (absent, or expired at now). */
struct dp_mc_flow *dp_mc_flow_lookup(struct dp_mc_flow_table *t,
		uint64_t key, uint64_t now);

/* A slot for key with flags DP_MC_FLOW_USED and the given expiry, other
 * fields zero. An existing entry for the key (or, with no free slot in
 * the neighbourhood, the one closest to expiry) is released first; then
 * *evicted is set when that entry was another key's. Never fails. */
struct dp_mc_flow *dp_mc_flow_insert(struct dp_mc_flow_table *t,
		uint64_t key, uint64_t expire_tsc, bool *evicted);

/* Removes an entry returned by lookup or insert, without the release
 * callback (the owner has dealt with it). */
void dp_mc_flow_remove(struct dp_mc_flow_table *t, struct dp_mc_flow *f);

/* Looks at up to budget slots from where the last call stopped and
 * releases and removes the ones expired at now. Returns how many. */
uint32_t dp_mc_flow_reap(struct dp_mc_flow_table *t, uint64_t now,
		uint32_t budget);

/* Live (used) entries, for the stats. */
uint32_t dp_mc_flow_count(const struct dp_mc_flow_table *t);

static inline uint64_t
dp_mc_frag_key(uint32_t src_ip, uint16_t ip_id)
{
	return (uint64_t)src_ip << 32 | (uint64_t)ip_id << 8 | 0x11;
}

#endif /* DP_MC_FLOW_H */
