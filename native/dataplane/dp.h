/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared state of the torswitch data plane: options, ports, workers, the
 * MAC table, the steering state and the per-worker loop state.
 *
 * Workers. The switch loop runs on every EAL lcore (-l 0-1 etc.): worker
 * 0 on the main lcore, the others launched by main.c. Each port has
 * min(workers, what its PMD offers) rx and tx queues; the (port, rx
 * queue) pairs are dealt to the workers round-robin (queue q of port i to
 * worker (i + q) mod workers, so a port's queues are on different
 * workers), each worker polling only its own (main.c). A worker
 * transmits on tx queue (its index mod the port's tx queues): its own
 * queue where the port has one per worker, else a queue shared with
 * other workers under that queue's spinlock (dp_core.tx_lock; net_null
 * and net_pcap have one queue). With one lcore there is one worker, one
 * queue per port, no lock and no hand-off: the data plane of before,
 * whose loop (dp_worker.c, "solo") is compiled apart from the others.
 *
 * Flows and queues. A port with several rx queues spreads frames by a
 * hash of the flow: RSS where the PMD offers it (main.c asks for IP,
 * TCP and UDP hashing), the kernel's symmetric flow hash of the
 * PACKET_FANOUT group for net_af_packet (vdev qpairs=N) and of the
 * multi-queue tun device for net_tap. The steering flow table is per
 * worker on the assumption that every segment of a TCP connection from
 * a rack port arrives on the same queue. Caveat: DPDK's af_packet joins
 * its fanout group with PACKET_FANOUT_FLAG_ROLLOVER, so a queue whose
 * kernel ring is full spills frames onto another queue; a steered flow's
 * segment spilled that way finds no entry there and goes direct
 * (flow_unknown). That needs an overloaded queue; a real NIC's RSS
 * never spills.
 *
 * MemSwitch. Its state (dp_mc.h: cache, request tables, splits) must
 * stay on one lcore for cache coherence: worker 0 owns it. The other
 * workers classify each frame with dp_mc_claims and hand those the
 * memcached path would take (ARP for a VIP, UDP to or from a VIP:PORT,
 * later IP fragments to a VIP) to worker 0 through dp_core.handoff (an
 * rte_ring, multi-producer, single-consumer), the input port index in
 * the mbuf's port field. Worker 0 drains the ring at the start of each
 * round and runs them through dp_mc_frame as if received on that port. A
 * full ring drops the frame (counted: mc_handoff_dropped). The frames of
 * one UDP flow all take the same way, so they stay in order. Pools are
 * freed by the control thread once worker 0 counted two rounds
 * (dp_mc.h); with several workers, worker 0 counts a round only once
 * every other worker finished a round (dp_worker.rounds) since its last
 * count, so no worker can still be classifying with a freed pool.
 *
 * Ownership: everything here is written by main.c during start-up,
 * before the workers are launched, and is read-only afterwards, except
 *   - struct dp_worker: its owner's alone (rx queues, transmit buffers,
 *     counters, flow table, rounds); the stats and control threads read
 *     its counters racily (aligned 64-bit loads) and sum them over the
 *     workers; worker 0 reads the others' rounds;
 *   - dp_core.mac: shared by the workers (see dp_mac.h);
 *   - the worker_*_tsc times: worker_start_tsc written by main before the
 *     workers start, worker_stop_tsc by main after all of them stopped,
 *     read by the stats and control threads;
 *   - dp_core.steer_on and dp_core.steer_map: written only by the control
 *     thread (dp_ctl.c) with atomic stores, read by the workers with
 *     atomic loads: steer_on once per round, one steer_map word per
 *     classified frame. Each TCP port's bit flips on its own, so a frame
 *     sees either the old or the new membership of its destination port.
 *     steer_on only decides new connections (each worker's flow table
 *     keeps each connection's decision); the steer_map is looked at for
 *     every frame, so a port taken out of it stops being steered at once,
 *     established flows included;
 *   - dp_core.steer_ports / nb_steer: the control thread's own record of
 *     the map, for status replies; nobody else reads them after start-up;
 *   - dp_core.mc: the memcached state, with its own ownership notes in
 *     dp_mc.h (pools published by the control thread, everything else
 *     worker 0's);
 *   - dp_core.tx_lock: taken by the workers sharing a tx queue;
 *   - dp_force_quit: set by the signal handler or main, read by every
 *     thread.
 */
#ifndef DP_H
#define DP_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <rte_byteorder.h>
#include <rte_common.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_spinlock.h>

#include "dp_counters.h"
#include "dp_flow.h"
#include "dp_mac.h"
#include "dp_mc.h"

#define DP_MAX_PORTS 16
#define DP_BURST 32
#define DP_TX_BUF 64			/* frames buffered per port before a flush */
#define DP_MAX_STEER_PORTS 8
#define DP_MAX_WORKERS 16		/* lcores running the switch loop */
#define DP_MAX_QUEUES DP_MAX_WORKERS	/* rx and tx queues per port */
#define DP_MAX_WORKER_RXQ (DP_MAX_PORTS * DP_MAX_QUEUES)
#define DP_HANDOFF_RING 4096		/* frames on their way to worker 0 */

#define DP_MAC_AGE_S_DEFAULT 300
#define DP_MAX_STATIC_MACS 64
#define DP_PREFETCH_AHEAD 3		/* frames whose headers are prefetched */

#define DP_IDLE_SPIN_POLLS 256		/* empty polls spent in rte_pause */
#define DP_IDLE_MAX_SLEEP_US 1000u	/* cap of the progressive sleep */

#define DP_STATS_INTERVAL_MS_DEFAULT 500

enum dp_port_role {
	DP_ROLE_RACK = 0,	/* host-facing: its HDFS traffic may be steered */
	DP_ROLE_UPLINK,		/* switched only */
	DP_ROLE_TAP,		/* exception path into the ToR's kernel stack */
};

/* One port as the data plane set it up; the same for every worker. */
struct dp_port {
	uint16_t port_id;
	enum dp_port_role role;
	struct rte_ether_addr mac;
	char name[64];
	bool steer_capable;	/* a rack port, and there is a tap port */
	bool rss;		/* RSS asked for (the PMD offers it) */
	uint16_t nb_rxq;
	uint16_t nb_txq;
} __rte_cache_aligned;

/* One port as one worker uses it: its counters and the frames waiting
 * for one rte_eth_tx_burst on its tx queue. Aligned to a power of two
 * (its size, about 620 bytes, rounded up) so that indexing by port is a
 * shift, not a multiply, in the per-frame path. */
struct dp_wport {
	struct dp_port_counters stats;
	uint16_t port_id;
	uint16_t txq;		/* tx queue this worker sends on */
	uint16_t nb_tx;
	rte_spinlock_t *tx_lock;	/* NULL: the queue is this worker's */
	struct rte_mbuf *tx[DP_TX_BUF];
} __attribute__((aligned(1024)));

/* One (port, rx queue) pair a worker polls. */
struct dp_rxq {
	uint16_t port_idx;	/* index into dp_core.ports */
	uint16_t port_id;
	uint16_t queue_id;
	bool steer_capable;	/* the port's */
};

struct dp_core;

/* One lcore running the switch loop (or the bare one). */
struct dp_worker {
	struct dp_core *dc;
	uint16_t idx;		/* 0: the main lcore, owner of MemSwitch */
	unsigned int lcore_id;
	uint16_t nb_rxq;
	/* Written by this worker at the end of each round (sequentially
	 * consistent), read by worker 0; UINT64_MAX once it stopped. */
	uint64_t rounds __rte_cache_aligned;
	struct dp_global_counters stats __rte_cache_aligned;
	struct dp_worker_counters wstats;
	/* Steering flows seen on its queues: worker 0's is dp_core.flow0. */
	struct dp_flow_table *flow;
	uint16_t nb_ho;			/* frames in ho[] */
	struct rte_mbuf *ho[DP_BURST];	/* claimed by MemSwitch, for worker 0 */
	struct dp_rxq rxq[DP_MAX_WORKER_RXQ];
	struct dp_wport port[DP_MAX_PORTS];
} __rte_cache_aligned;

/* How frames are forwarded; chosen once at start-up (--mode). */
enum dp_mode {
	DP_MODE_SWITCH = 0,	/* L2 learning switch with HDFS steering */
	DP_MODE_BARE,		/* port i to port i+1 without looking (baseline) */
};

struct dp_static_mac {
	uint64_t mac;
	uint16_t port_id;
};

struct dp_options {
	enum dp_mode mode;
	bool no_backoff;
	bool steering;		/* initial state of dp_core.steer_on */
	unsigned int run_ms;	/* stop after this long; 0: until a signal */
	const char *control_path;	/* unix datagram socket, NULL: none */
	unsigned int age_s;
	unsigned int flow_idle_s;	/* steering flow idle timeout */
	unsigned int stats_interval_ms;
	const char *stats_file;
	int uplink_port_id;	/* -1: none */
	int tap_port_id;	/* -1: none */
	uint16_t nb_steer;
	uint16_t steer_tcp_ports[DP_MAX_STEER_PORTS];	/* host order */
	uint16_t nb_static_macs;
	struct dp_static_mac static_macs[DP_MAX_STATIC_MACS];
};

#define DP_STEER_MAP_WORDS (65536 / 64)

struct dp_core {
	struct dp_options opt;
	uint16_t nb_ports;
	int tap_idx;		/* index of the tap port in ports[], -1: none */
	struct dp_port ports[DP_MAX_PORTS];
	uint16_t nb_workers;
	struct rte_ring *handoff;	/* to worker 0; NULL with one worker */
	uint64_t worker_start_tsc;	/* 0 until the workers start */
	uint64_t worker_stop_tsc;	/* 0 while any runs */
	uint8_t steer_on;
	uint16_t nb_steer;
	uint16_t steer_ports[DP_MAX_STEER_PORTS];
	/* Bit p set: rack TCP to port p is steered (while steer_on). */
	uint64_t steer_map[DP_STEER_MAP_WORDS] __rte_cache_aligned;
	struct dp_mac_table mac;
	/* Worker 0's flow table, in place (at a constant offset, as in the
	 * one-worker data plane); the others' are allocated. */
	struct dp_flow_table flow0;
	struct dp_mc_state mc;
	rte_spinlock_t tx_lock[DP_MAX_PORTS][DP_MAX_QUEUES];
	struct dp_worker workers[DP_MAX_WORKERS];
} __rte_cache_aligned;

extern volatile bool dp_force_quit;

/* dp_worker.c: the loop of the mode, run by every worker; returns when
 * asked to quit or when opt.run_ms has passed since worker_start_tsc. */
typedef int (*dp_loop_fn)(struct dp_worker *w);
dp_loop_fn dp_worker_loop(enum dp_mode mode);
const char *dp_mode_name(enum dp_mode mode);

/* in_idx of a frame the switch made itself (dp_forward): no hairpin check,
 * a flood reaches every port. */
#define DP_FROM_SWITCH UINT16_MAX

/* dp_worker.c, worker 0 only: switch a frame by its destination MAC
 * (known unicast: that port; else flood), as the switch path does after
 * steering. For frames built or rewritten by dp_mc.c. */
void dp_forward(struct dp_core *dc, uint16_t in_idx, struct rte_mbuf *m,
		uint64_t now);

/* dp_steer.c: the steering state (control thread, and main at start-up) */
int dp_steer_set_ports(struct dp_core *dc, const uint16_t *ports,
		uint16_t nb);
int dp_steer_enable(struct dp_core *dc, bool on);

/* dp_stats.c */
void dp_stats_print(const struct dp_core *dc, FILE *f);
int dp_stats_write(const struct dp_core *dc, const char *path);
int dp_stats_start(struct dp_core *dc);
void dp_stats_stop(void);

/* dp_ctl.c: the control channel */
int dp_ctl_start(struct dp_core *dc, const char *path);
void dp_ctl_stop(void);

static inline const char *
dp_role_name(enum dp_port_role role)
{
	switch (role) {
	case DP_ROLE_UPLINK:
		return "uplink";
	case DP_ROLE_TAP:
		return "tap";
	default:
		return "rack";
	}
}

/* The MAC of an Ethernet header as a table key: first octet in bits
 * 40..47. One unaligned 8-byte load and a byte swap, so only for the
 * addresses of a received header, where the two bytes read past the
 * address are still the header's. */
static inline uint64_t
dp_mac_key(const struct rte_ether_addr *a)
{
	uint64_t v;

	memcpy(&v, a->addr_bytes, sizeof(v));
	return rte_be_to_cpu_64(v) >> 16;
}

/* The same key for an address anywhere (control paths). */
static inline uint64_t
dp_mac_key_of(const struct rte_ether_addr *a)
{
	uint64_t k = 0;
	unsigned int i;

	for (i = 0; i < RTE_ETHER_ADDR_LEN; i++)
		k = k << 8 | a->addr_bytes[i];
	return k;
}

/* Transmit buffering, a worker's own: frames wait in the worker's buffer
 * for the port until the end of the round (or until it is full). What the
 * port refuses is freed and counted. A tx queue shared with other workers
 * is taken under its lock for the burst; shared (a constant) false: the
 * queue cannot be (one worker). */
static __rte_always_inline void
dp_tx_flush_as(struct dp_wport *p, const bool shared)
{
	uint16_t sent, i;

	if (p->nb_tx == 0)
		return;
	if (shared && unlikely(p->tx_lock != NULL)) {
		rte_spinlock_lock(p->tx_lock);
		sent = rte_eth_tx_burst(p->port_id, p->txq, p->tx, p->nb_tx);
		rte_spinlock_unlock(p->tx_lock);
	} else {
		sent = rte_eth_tx_burst(p->port_id, p->txq, p->tx, p->nb_tx);
	}
	p->stats.tx_packets += sent;
	for (i = 0; i < sent; i++)
		p->stats.tx_bytes += rte_pktmbuf_pkt_len(p->tx[i]);
	for (i = sent; i < p->nb_tx; i++)
		rte_pktmbuf_free(p->tx[i]);
	p->stats.tx_dropped += p->nb_tx - sent;
	p->nb_tx = 0;
}

static __rte_always_inline void
dp_tx_flush(struct dp_wport *p)
{
	dp_tx_flush_as(p, true);
}

static __rte_always_inline void
dp_tx_enqueue(struct dp_wport *p, struct rte_mbuf *m)
{
	if (unlikely(p->nb_tx == DP_TX_BUF))
		dp_tx_flush(p);
	p->tx[p->nb_tx++] = m;
}

/* Where the memcached path (worker 0) sends a frame out of port idx. */
static inline struct dp_wport *
dp_mc_txport(struct dp_core *dc, uint16_t idx)
{
	return &dc->workers[0].port[idx];
}

#endif /* DP_H */
