/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MemSwitch: memcached over UDP in the data plane.
 *
 * Deployment (direct server return). A pool has a virtual address
 * VIP:PORT and a virtual MAC. Clients send requests to VIP:PORT; the data
 * plane answers ARP for the VIP with the virtual MAC. Every server of the
 * pool holds the VIP on its loopback (with arp_ignore=1, arp_announce=2,
 * so it never answers ARP for it) and memcached listening on PORT on it,
 * so a request needs only its destination MAC rewritten to the chosen
 * server's; the server answers from VIP:PORT straight to the client, and
 * the answer passes back through this switch, which is where the cache is
 * filled and write completions are seen. Nothing in an IP or UDP header
 * changes on the way to a server, so no checksum is touched.
 *
 * Per request datagram (UDP to a pool's VIP:PORT, from any port):
 *   - seq 0: parse (dp_mc_proto), then by kind:
 *       READ, one key, pool cached: count it; a live slot answers from the
 *         switch (the request buffer becomes the reply, out of the ingress
 *         port); else forward to the key's server, recording a pending
 *         fill for a hot key;
 *       READ or gat/gats with keys on several servers: split into one
 *         sub-request per server (same client address and request id) and
 *         gather the answers into one reply (see "split" below);
 *       WRITE: invalidate the key before forwarding, hold its coherence
 *         stripe until the reply passes (dp_mc_cache.h);
 *       FLUSH: empty the cache, send to every server, gather the answers
 *         into one (OK only when every server said OK);
 *       NOKEY (version, mn): to the first live server;
 *       refused by the parser: answered "CLIENT_ERROR <reason>" from the
 *         switch and counted, never forwarded (a VIP has no host that
 *         could take it); shorter than the frame header: dropped and
 *         counted (no request id to answer with);
 *     a request of several datagrams (total > 1) records its server, and
 *     its later datagrams (seq > 0) follow; one of several IP fragments
 *     records its server by (source, IP id) for the later fragments.
 *   - no live server: "SERVER_ERROR no live server in pool" and a count.
 * Per reply datagram (UDP from a pool's VIP:PORT): fill the cache from a
 * one-datagram VALUE reply, end a write's stripe hold, or gather into a
 * split; then switch it on to the client unchanged (except gathered
 * parts, which are renumbered). An empty datagram numbered "0 of 0",
 * which memcached 1.6 sends for some misses, is dropped.
 *
 * Servers must answer from VIP:PORT (memcached listening on the VIP, not
 * only on 0.0.0.0, whose UDP replies carry the host's own address): the
 * reply path recognises replies by that source.
 *
 * Split. The sub-answers are held (up to DP_MC_SPLIT_MAX_DGRAMS
 * datagrams) until every part has answered, then sent as one reply: the
 * parts' datagrams in part order, renumbered 0..n-1 with total n, every
 * "END\r\n" but the last one cut. A client reassembling by sequence
 * number sees exactly what one server holding all keys would have sent.
 * A part has answered when its text, read over its datagrams in arrival
 * order, reaches its END line: memcached 1.6 sends every response object
 * (each VALUE, the END) as a message of its own numbered from 0, so the
 * frame headers cannot say it (a datagram out of sequence within a
 * message aborts the split with SERVER_ERROR). A part that answers
 * something else (an error) is sent alone instead; flush_all's parts
 * combine into one OK when all said OK. Parts that never answer time out
 * (the client retries; counted).
 *
 * Pools are published by the control thread (dp_mc_ctl.c) as immutable
 * structures behind atomic pointers; the worker reads the pointers once
 * per frame; an old pool is freed after the worker has gone through two
 * rounds (its `rounds` counter), so no frame ever sees a freed pool and
 * no request is dropped by a reconfiguration. "The worker" is worker 0
 * of the data plane (dp.h); the other workers only read the pools, in
 * dp_mc_claims, and hand claimed frames to worker 0, which counts a round
 * only once each of them finished one. Server ids are global
 * (per-server counters are indexed by them): a pool may not use another
 * pool's ids, nor its VIP:PORT.
 *
 * Files: dp_mc.c is the worker's path (this comment), dp_mc_ctl.c
 * start-up, control verbs and counters; dp_mc_proto.c, dp_mc_cache.c and
 * dp_mc_flow.c are DPDK-free and unit-tested in tests/.
 */
#ifndef DP_MC_H
#define DP_MC_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <rte_ether.h>
#include <rte_mbuf.h>

#include "dp_mc_cache.h"
#include "dp_mc_flow.h"
#include "dp_mc_proto.h"

struct dp_core;
struct tsw_ring;

#define DP_MC_MAX_POOLS 8
#define DP_MC_MAX_SERVERS 32		/* per pool; a split has one part each */
#define DP_MC_MAX_SERVER_IDS 256	/* stable ids, for per-server counters */
#define DP_MC_SPLIT_MAX_DGRAMS 64	/* datagrams one gathered reply holds */
#define DP_MC_MAX_SPLITS 1024		/* splits in flight */
#define DP_MC_MAX_UDP_PAYLOAD 1472	/* one datagram within a 1500 MTU */

#define DP_MC_MAX_HELD 2048		/* reply datagrams all splits hold at once */

#define DP_MC_REQ_TIMEOUT_MS 1000	/* request-table entries live this long */
#define DP_MC_REAP_BUDGET 64		/* request-table slots reaped per round */
#define DP_MC_REQ_ENTRIES 65536		/* request table (dp_mc_flow.h) */
#define DP_MC_FRAG_ENTRIES 16384	/* fragment table */

/*
 * Cache sizing (dp_mc_init) from --mc-cache-slots N: sketch width the
 * power of two >= 4 N (at least 1024), halved every 16 x width counts;
 * coherence stripes the power of two >= N (at least 1024), so false
 * sharing stays rare; a pending fill waits DP_MC_REQ_TIMEOUT_MS.
 */

/* Per-pool counters (X-macro: member, help). */
#define DP_MC_POOL_COUNTERS(X) \
	X(requests, "request datagrams to the pool's address") \
	X(get_keys, "keys asked for by get and gets") \
	X(hits, "gets answered from the switch's cache") \
	X(misses, "single-key gets forwarded to a server") \
	X(fills, "values cached from server replies") \
	X(fill_rejected, "single-value replies not cached, other than for want " \
		"of a pending fill (see the fill results)") \
	X(invalidations, "cached or pending entries dropped by a write") \
	X(writes, "write requests forwarded") \
	X(flushes, "flush_all requests (cache emptied, sent to every server)") \
	X(splits, "requests split over several servers") \
	X(split_timeouts, "split requests whose parts did not all answer") \
	X(split_too_large, "split replies over DP_MC_SPLIT_MAX_DGRAMS (answered " \
		"with SERVER_ERROR)") \
	X(split_refused, "split requests refused for want of split state or " \
		"buffers (answered SERVER_ERROR)") \
	X(split_bad_reply, "split parts whose answer came out of order or with " \
		"an overlong line (answered SERVER_ERROR)") \
	X(multi_datagram, "later datagrams of multi-datagram requests forwarded") \
	X(fragments, "later IP fragments of request datagrams forwarded") \
	X(orphans, "later datagrams or fragments whose first was not seen " \
		"(dropped)") \
	X(malformed, "requests refused by the parser (answered CLIENT_ERROR)") \
	X(no_server, "requests with no live server (answered SERVER_ERROR)") \
	X(replies, "reply datagrams from the pool's servers") \
	X(arp_replies, "ARP requests for the pool's address answered")

/* Per-server counters, indexed by the stable server id. */
#define DP_MC_SERVER_COUNTERS(X) \
	X(requests, "request datagrams sent to the server") \
	X(hits, "gets for keys of the server answered from the cache") \
	X(misses, "single-key gets forwarded to the server") \
	X(invalidations, "cache entries of the server's keys dropped by writes")

#define DP_MC_COUNTER_MEMBER(name, help) uint64_t name;

struct dp_mc_pool_counters {
	DP_MC_POOL_COUNTERS(DP_MC_COUNTER_MEMBER)
} __rte_cache_aligned;

struct dp_mc_server_counters {
	DP_MC_SERVER_COUNTERS(DP_MC_COUNTER_MEMBER)
};

struct dp_mc_server {
	uint32_t ip;		/* host order; for status and checks */
	uint16_t port;
	uint16_t id;		/* stable id < DP_MC_MAX_SERVER_IDS */
	struct rte_ether_addr mac;
	uint32_t weight;
	bool live;		/* false: ejected, takes no keys */
	char name[96];		/* the ring identity, for status and labels */
};

/* One pool, immutable once published. */
struct dp_mc_pool {
	uint32_t vip_be;	/* wire order: what a frame is compared with */
	uint16_t vport_be;
	uint16_t id;		/* slot in dp_mc_state.pools */
	char name[64];
	uint32_t vip;		/* host order */
	uint16_t vport;
	struct rte_ether_addr vmac;
	bool cache;		/* serve and fill the hot-key cache */
	int16_t first_live;	/* index of the first live server, -1: none */
	struct tsw_ring *ring;	/* lookups return indexes into servers[] */
	int hash;		/* enum tsw_hash_kind, for status */
	int dist;		/* enum tsw_dist_kind */
	char tag[3];		/* hash tag, "" for none */
	uint16_t nservers;
	struct dp_mc_server servers[DP_MC_MAX_SERVERS];
};

/* Cache options from the command line (main.c). */
struct dp_mc_options {
	uint32_t cache_slots;		/* 0: no cache at all */
	uint32_t max_value;
	uint32_t hot_threshold;
	uint32_t ttl_ms;
	uint32_t write_timeout_ms;
	const char *pool_file;		/* control lines applied at start-up */
};

#define DP_MC_MAX_VALUE_LIMIT 1400	/* --mc-max-value at most */
#define DP_MC_CACHE_SLOTS_DEFAULT 16384
#define DP_MC_MAX_VALUE_DEFAULT 1024
#define DP_MC_HOT_THRESHOLD_DEFAULT 3
#define DP_MC_TTL_MS_DEFAULT 10000
#define DP_MC_WRITE_TIMEOUT_MS_DEFAULT 1000

struct dp_mc_split;	/* dp_mc.c */

struct dp_mc_state {
	struct dp_mc_options opt;
	/* Written by the control thread (atomic store), read by the worker
	 * (atomic load); the control thread also holds dp_mc_ctl.c's lock
	 * while it publishes or frees, which the stats writer takes too. */
	struct dp_mc_pool *pools[DP_MC_MAX_POOLS];
	uint8_t any_pool;	/* some pool is published: look at UDP/ARP */
	uint8_t pool_hi;	/* pools[] slots at and above are all NULL */
	/* Written by the worker (dp_mc_round), read by the control thread. */
	uint64_t rounds;	/* worker loop rounds, for freeing old pools */
	/* The worker's own (set up by dp_mc_init before it starts). */
	struct rte_mempool *pktpool;	/* for split sub-requests */
	struct dp_mc_cache *cache;	/* NULL: no cache */
	struct dp_mc_flow_table *reqs;
	struct dp_mc_flow_table *frags;
	struct dp_mc_split *splits;	/* DP_MC_MAX_SPLITS */
	uint32_t *split_free;		/* stack of free split indexes */
	uint32_t nsplit_free;
	uint32_t held;			/* reply datagrams held by splits */
	uint64_t req_timeout_tsc;	/* DP_MC_REQ_TIMEOUT_MS in TSC ticks */
	/* Counters: written by the worker, read racily by stats. */
	struct dp_mc_pool_counters pool_stats[DP_MC_MAX_POOLS];
	struct dp_mc_server_counters server_stats[DP_MC_MAX_SERVER_IDS];
	uint64_t parse_results[DP_MC_RESULT_COUNT];
	uint64_t fill_results[DP_MC_FILL_RESULT_COUNT];
};

/* Start-up (main.c, before the worker): allocates the cache and tables,
 * applies opt.pool_file. Returns 0 or a negative errno, with a message
 * on stderr. */
int dp_mc_init(struct dp_core *dc, struct rte_mempool *pool);
void dp_mc_free(struct dp_core *dc);

/* What dp_mc_frame did with a frame. */
enum dp_mc_verdict {
	DP_MC_PASS = 0,	/* not ours: switch it as usual */
	DP_MC_SWITCH,	/* ours, destination MAC set: switch it by that */
	DP_MC_DONE,	/* ours, and transmitted, held or freed */
};

/* Worker 0's hook, called for every frame from a port when
 * dp_mc_state.any_pool is set, after MAC learning, and for every frame
 * the other workers handed over (in_idx: the port it came in on). */
enum dp_mc_verdict dp_mc_frame(struct dp_core *dc, uint16_t in_idx,
		struct rte_mbuf *m, uint64_t now);

/* Once per round of worker 0: reaps expired request state; marks progress
 * (the round count) when count is set: with several workers, only once
 * every other worker finished a round since the last count (dp.h). */
void dp_mc_round(struct dp_core *dc, uint64_t now, bool count);

/* The other workers' test (dp.h): whether dp_mc_frame would take the
 * frame (ARP for a VIP, UDP to or from a VIP:PORT, a later IP fragment
 * to a VIP), so it must go to worker 0. Reads the published pools. */
bool dp_mc_claims(const struct dp_core *dc, struct rte_mbuf *m);

/* Control (dp_ctl.c hands these verbs over): returns NULL or an error
 * message; writes a reply body to f.
 *   mc-pool ID NAME VIP:PORT VMAC HASH DIST TAG CACHE SERVER...
 *       defines or replaces pool ID (0..DP_MC_MAX_POOLS-1). HASH and DIST
 *       are tsw names (fnv1a_64, ketama, ...); TAG is two characters or
 *       "-"; CACHE is on or off; each SERVER is
 *       SID,IP,PORT,MAC,WEIGHT,LIVE,IDENTITY_HEX (LIVE 1 or 0; the ring
 *       is built over the servers in the order given, which must be
 *       nutcracker's order).
 *   mc-pool-del ID
 *   mc-flush           empty the cache
 *   mc-status          key=value lines per pool and server
 */
const char *dp_mc_ctl(struct dp_core *dc, char **w, int nw, FILE *f);

/* Appends the memcached counters (Prometheus text) to a stats dump. */
void dp_mc_stats_print(const struct dp_core *dc, FILE *f);

/* Between dp_mc.c (data path) and dp_mc_ctl.c (start-up, control, stats):
 * the split state's allocation and the request table's release callback
 * (frees what an expired or evicted split holds). */
int dp_mc_splits_create(struct dp_core *dc);
void dp_mc_splits_free(struct dp_core *dc);
void dp_mc_req_release(struct dp_mc_flow *f, void *arg);

#endif /* DP_MC_H */
