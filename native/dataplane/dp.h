/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared state of the torswitch data plane: options, ports, the MAC table,
 * the steering state, the steering flow table and the per-core loop state.
 *
 * Ownership: everything here is written by main.c during start-up, before
 * the worker is launched, and is read-only afterwards, except
 *   - struct dp_port.stats, dp_core.mac, dp_core.stats and the
 *     worker_*_tsc times: written only by the worker lcore, read racily
 *     (aligned 64-bit loads) by the stats and control threads;
 *   - dp_core.steer_on and dp_core.steer_map: written only by the control
 *     thread (dp_ctl.c) with atomic stores, read by the worker with atomic
 *     loads: steer_on once per round, one steer_map word per classified
 *     frame. Each TCP port's bit flips on its own, so a frame sees either
 *     the old or the new membership of its destination port. steer_on
 *     only decides new connections (dp_core.flow keeps each connection's
 *     decision); the steer_map is looked at for every frame, so a port
 *     taken out of it stops being steered at once, established flows
 *     included;
 *   - dp_core.flow: the steering flow table (dp_flow.h), the worker's
 *     alone after main.c initialises it;
 *   - dp_core.steer_ports / nb_steer: the control thread's own record of
 *     the map, for status replies; nobody else reads them after start-up;
 *   - dp_core.mc: the memcached state, with its own ownership notes in
 *     dp_mc.h (pools published by the control thread, everything else the
 *     worker's);
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

#include "dp_counters.h"
#include "dp_flow.h"
#include "dp_mac.h"
#include "dp_mc.h"

#define DP_MAX_PORTS 16
#define DP_BURST 32
#define DP_TX_BUF 64			/* frames buffered per port before a flush */
#define DP_MAX_STEER_PORTS 8

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

/* Frames waiting for one rte_eth_tx_burst on one port. */
struct dp_tx_buf {
	uint16_t nb;
	struct rte_mbuf *pkts[DP_TX_BUF];
};

struct dp_port {
	uint16_t port_id;
	enum dp_port_role role;
	struct rte_ether_addr mac;
	char name[64];
	bool steer_capable;	/* a rack port, and there is a tap port */
	struct dp_tx_buf tx;
	struct dp_port_counters stats;
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
	struct dp_global_counters stats;
	uint64_t worker_start_tsc;	/* 0 until the worker starts */
	uint64_t worker_stop_tsc;	/* 0 while it runs */
	uint8_t steer_on;
	uint16_t nb_steer;
	uint16_t steer_ports[DP_MAX_STEER_PORTS];
	/* Bit p set: rack TCP to port p is steered (while steer_on). */
	uint64_t steer_map[DP_STEER_MAP_WORDS] __rte_cache_aligned;
	struct dp_mac_table mac;
	struct dp_flow_table flow;
	struct dp_mc_state mc;
} __rte_cache_aligned;

extern volatile bool dp_force_quit;

/* dp_worker.c: the loop of the mode, returns when asked to quit or when
 * opt.run_ms has passed. */
typedef int (*dp_loop_fn)(struct dp_core *dc);
dp_loop_fn dp_worker_loop(enum dp_mode mode);
const char *dp_mode_name(enum dp_mode mode);

/* in_idx of a frame the switch made itself (dp_forward): no hairpin check,
 * a flood reaches every port. */
#define DP_FROM_SWITCH UINT16_MAX

/* dp_worker.c, worker only: switch a frame by its destination MAC (known
 * unicast: that port; else flood), as the switch path does after steering.
 * For frames built or rewritten by dp_mc.c. */
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

/* Transmit buffering, worker only: frames wait in the port's buffer until
 * the end of the round (or until it is full). What the port refuses is
 * freed and counted. */
static inline void
dp_tx_flush(struct dp_port *p)
{
	uint16_t sent, i;

	if (p->tx.nb == 0)
		return;
	sent = rte_eth_tx_burst(p->port_id, 0, p->tx.pkts, p->tx.nb);
	p->stats.tx_packets += sent;
	for (i = 0; i < sent; i++)
		p->stats.tx_bytes += rte_pktmbuf_pkt_len(p->tx.pkts[i]);
	for (i = sent; i < p->tx.nb; i++)
		rte_pktmbuf_free(p->tx.pkts[i]);
	p->stats.tx_dropped += p->tx.nb - sent;
	p->tx.nb = 0;
}

static inline void
dp_tx_enqueue(struct dp_port *p, struct rte_mbuf *m)
{
	if (unlikely(p->tx.nb == DP_TX_BUF))
		dp_tx_flush(p);
	p->tx.pkts[p->tx.nb++] = m;
}

#endif /* DP_H */
