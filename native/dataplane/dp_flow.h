/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The steering flow table: for each rack TCP connection to a steered port,
 * whether it goes to the tap (the block engine) or straight to its server.
 * It has no DPDK dependency, so native/dataplane/tests can test it with a
 * plain C compiler.
 *
 * Why per flow: steering follows the engine's health and so flips at run
 * time. Deciding per segment would move an established connection between
 * the engine and the DataNode mid-stream, where the side that never saw its
 * SYN answers with a reset. So the decision is taken once, on the
 * connection's first segment (SYN without ACK), and every later segment of
 * the flow follows it, whatever steering says by then:
 *
 *   SYN, flow unknown (or closing, dead, or a new ISN on its tuple)
 *       -> record it: steered if steering is on now, else direct
 *   SYN with the recorded ISN (a retransmission)  -> the recorded decision
 *   other segment, flow recorded and live         -> the recorded decision
 *   other segment, flow unknown                   -> direct (flow_unknown)
 *
 * Unknown flows go direct because the engine only ever owns connections
 * whose SYN it received: after a data-plane restart or an eviction, the
 * segments of a connection that was steered can only reach a dead socket
 * (the tap and its kernel state went with the old process) or the
 * DataNode, and the DataNode is the one that may know it. For the same
 * reason the worker does not classify at all while steering is off and no
 * steered flow can be live (dp_flow_any_steered): direct flows opened then
 * are not recorded, and go direct as unknown flows. (Only a SYN of such a
 * flow retransmitted after steering came back on would be steered; its
 * handshake then fails and the client retries.)
 *
 * Key: the client->server direction only (client address and port, server
 * address and port, all in network order as in the headers; the protocol
 * is always TCP). The return direction is never looked up: the engine
 * answers through the tap with the DataNode's address as source, and a
 * direct flow's answers are plain switching.
 *
 * Lifetime: a flow lives while its client sends; it is dead after
 * idle_tsc without a segment from the client. A FIN or RST from the client
 * marks it closing, after which it lives only closing_tsc past its last
 * segment, long enough for the last ACKs to follow it. The server's FIN is
 * not looked for (that would mean inspecting the return direction, which
 * carries the bulk of a read). Dead entries are reused in place.
 *
 * Layout: DP_FLOW_BUCKETS buckets of four 32-byte slots (two cache lines);
 * a flow lives in its home bucket or the next, so a lookup reads at most
 * four cache lines and never allocates. The bucket comes from a hash keyed
 * with a per-process seed, so a rack host cannot plan collisions. When both
 * buckets are full of live flows, a new SYN evicts the least valuable:
 * closing flows first, then flows that never got past their SYN, then
 * direct ones (harmless: an unknown flow goes direct anyway), then steered
 * ones; the oldest within a class. Each eviction is counted.
 *
 * Ownership: the worker lcore is the only reader and writer after
 * dp_flow_init; no locks, no atomics.
 */
#ifndef DP_FLOW_H
#define DP_FLOW_H

#include <stdbool.h>
#include <stdint.h>

#include "dp_counters.h"

#define DP_FLOW_BUCKETS 16384			/* power of two */
#define DP_FLOW_BUCKET_SLOTS 4
#define DP_FLOW_ENTRIES (DP_FLOW_BUCKETS * DP_FLOW_BUCKET_SLOTS)
#define DP_FLOW_PROBE_BUCKETS 2

#define DP_FLOW_IDLE_S_DEFAULT 300
#define DP_FLOW_CLOSING_S 10

/* dp_flow_entry.state bits; 0 is an empty slot. */
#define DP_FLOW_VALID 0x1u
#define DP_FLOW_STEERED 0x2u
#define DP_FLOW_CLOSING 0x4u	/* the client sent FIN or RST */
#define DP_FLOW_PAST_SYN 0x8u	/* a segment other than the SYN was seen */

/* The flags byte of the TCP header (RFC 9293, section 3.1). */
#define DP_TCP_FIN 0x01
#define DP_TCP_SYN 0x02
#define DP_TCP_RST 0x04
#define DP_TCP_ACK 0x10

struct dp_flow_key {
	uint32_t saddr;		/* client */
	uint32_t daddr;		/* server */
	uint16_t sport;
	uint16_t dport;
};

struct dp_flow_entry {
	struct dp_flow_key key;
	uint32_t isn;		/* sequence number of the deciding SYN */
	uint64_t seen_tsc;	/* last segment from the client */
	uint32_t state;		/* DP_FLOW_* bits */
	uint32_t pad;
};

struct dp_flow_bucket {
	struct dp_flow_entry slots[DP_FLOW_BUCKET_SLOTS];
} __attribute__((aligned(64)));

struct dp_flow_table {
	uint64_t idle_tsc;
	uint64_t closing_tsc;
	uint64_t seed;
	/* Last time a segment was steered; valid once any_steered is set.
	 * Lets the worker skip classifying while steering is off and no
	 * steered flow can still be live. */
	uint64_t steered_tsc;
	bool any_steered;
	struct dp_flow_bucket buckets[DP_FLOW_BUCKETS];
};

/* Empties the table. Times are in the caller's clock units (TSC cycles in
 * the data plane); closing_tsc is capped at idle_tsc. seed keys the bucket
 * hash. */
void dp_flow_init(struct dp_flow_table *t, uint64_t idle_tsc,
		uint64_t closing_tsc, uint64_t seed);

/* The SYN path of dp_flow_steer: a retransmission keeps its decision, a
 * new connection gets steer_on. */
bool dp_flow_syn(struct dp_flow_table *t, const struct dp_flow_key *k,
		uint32_t isn, bool steer_on, uint64_t now,
		struct dp_global_counters *c);

/* Number of live flows, and of those the steered ones in *steered (tests
 * and debugging only: scans the table). */
unsigned int dp_flow_count(const struct dp_flow_table *t, uint64_t now,
		unsigned int *steered);

static inline uint32_t
dp_flow_bucket_of(const struct dp_flow_table *t, const struct dp_flow_key *k)
{
	uint64_t x = ((uint64_t)k->saddr << 32 | k->daddr) ^ t->seed;

	/* A multiply-xorshift mix (the splitmix64 finaliser) of both words. */
	x ^= ((uint64_t)k->sport << 16 | k->dport) *
		UINT64_C(0x9E3779B97F4A7C15);
	x ^= x >> 30;
	x *= UINT64_C(0xBF58476D1CE4E5B9);
	x ^= x >> 27;
	x *= UINT64_C(0x94D049BB133111EB);
	x ^= x >> 31;
	return (uint32_t)x & (DP_FLOW_BUCKETS - 1);
}

static inline bool
dp_flow_key_eq(const struct dp_flow_key *a, const struct dp_flow_key *b)
{
	return a->saddr == b->saddr && a->daddr == b->daddr &&
		a->sport == b->sport && a->dport == b->dport;
}

static inline bool
dp_flow_entry_live(const struct dp_flow_table *t,
		const struct dp_flow_entry *e, uint64_t now)
{
	uint64_t ttl = (e->state & DP_FLOW_CLOSING) ? t->closing_tsc :
		t->idle_tsc;

	return (e->state & DP_FLOW_VALID) && now - e->seen_tsc < ttl;
}

/* The slot holding k (live or not), or NULL. */
static inline struct dp_flow_entry *
dp_flow_find(const struct dp_flow_table *t, const struct dp_flow_key *k)
{
	uint32_t b = dp_flow_bucket_of(t, k);
	unsigned int i, j;

	for (i = 0; i < DP_FLOW_PROBE_BUCKETS; i++) {
		const struct dp_flow_bucket *bk =
			&t->buckets[(b + i) & (DP_FLOW_BUCKETS - 1)];

		for (j = 0; j < DP_FLOW_BUCKET_SLOTS; j++)
			if ((bk->slots[j].state & DP_FLOW_VALID) &&
					dp_flow_key_eq(&bk->slots[j].key, k))
				return (struct dp_flow_entry *)&bk->slots[j];
	}
	return NULL;
}

/*
 * The decision for one client->server segment of a TCP connection to a
 * steered port: true to steer it to the tap, false to switch it directly.
 * flags is the TCP header's flags byte, seq its sequence number (any byte
 * order, compared only for equality), steer_on whether steering is on now
 * (it matters only for a SYN), now the current time.
 */
static inline bool
dp_flow_steer(struct dp_flow_table *t, const struct dp_flow_key *k,
		uint8_t flags, uint32_t seq, bool steer_on, uint64_t now,
		struct dp_global_counters *c)
{
	struct dp_flow_entry *e;

	if ((flags & (DP_TCP_SYN | DP_TCP_ACK)) == DP_TCP_SYN)
		return dp_flow_syn(t, k, seq, steer_on, now, c);
	e = dp_flow_find(t, k);
	if (e == NULL || !dp_flow_entry_live(t, e, now)) {
		c->flow_unknown++;
		return false;
	}
	e->seen_tsc = now;
	e->state |= DP_FLOW_PAST_SYN;
	if (flags & (DP_TCP_FIN | DP_TCP_RST))
		e->state |= DP_FLOW_CLOSING;
	if (!(e->state & DP_FLOW_STEERED))
		return false;
	t->steered_tsc = now;
	return true;
}

/* Whether a steered flow may still be live at now: if not, and steering
 * is off, no segment can be steered and the worker need not classify. */
static inline bool
dp_flow_any_steered(const struct dp_flow_table *t, uint64_t now)
{
	return t->any_steered && now - t->steered_tsc < t->idle_tsc;
}

#endif /* DP_FLOW_H */
