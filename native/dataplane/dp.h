/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared state of the torswitch data plane: options, ports, the MAC table
 * and the per-core loop state.
 *
 * Ownership: everything here is written by main.c during start-up, before
 * the worker is launched, and is read-only afterwards, except
 *   - struct dp_port.stats, dp_core.mac and dp_core.stats: written only by
 *     the worker lcore, read racily (aligned 64-bit loads) by the stats
 *     thread;
 *   - dp_force_quit: set by the signal handler, read by every thread.
 */
#ifndef DP_H
#define DP_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>

#include <rte_common.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#include "dp_counters.h"

#define DP_MAX_PORTS 16
#define DP_BURST 32
#define DP_TX_BUF 64			/* frames buffered per port before a flush */
#define DP_MAX_STEER_PORTS 8

#define DP_MAC_ENTRIES 4096		/* power of two */
#define DP_MAC_PROBE 8			/* slots probed per lookup or learn */
#define DP_MAC_AGE_S_DEFAULT 300

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
	struct dp_tx_buf tx;
	struct dp_port_counters stats;
} __rte_cache_aligned;

/* One slot of the MAC table; key 0 marks an empty slot (the zero MAC is
 * never learned). */
struct dp_mac_entry {
	uint64_t key;		/* MAC address in the low 48 bits */
	uint64_t seen_tsc;
	uint16_t port_idx;	/* index into dp_core.ports, not a port_id */
};

/* Fixed-size, lossy MAC table: open addressing over DP_MAC_PROBE slots;
 * when they are all live the oldest is replaced. Lookups never allocate. */
struct dp_mac_table {
	uint64_t age_tsc;
	struct dp_mac_entry slots[DP_MAC_ENTRIES];
};

struct dp_options {
	bool no_backoff;
	unsigned int age_s;
	unsigned int stats_interval_ms;
	const char *stats_file;
	int uplink_port_id;	/* -1: none */
	int tap_port_id;	/* -1: none */
	uint16_t nb_steer;
	uint16_t steer_tcp_ports[DP_MAX_STEER_PORTS];	/* host order */
};

struct dp_core {
	struct dp_options opt;
	uint16_t nb_ports;
	int tap_idx;		/* index of the tap port in ports[], -1: none */
	struct dp_port ports[DP_MAX_PORTS];
	struct dp_global_counters stats;
	struct dp_mac_table mac;
} __rte_cache_aligned;

extern volatile bool dp_force_quit;

/* dp_l2.c */
void dp_mac_init(struct dp_mac_table *t, uint64_t age_tsc);
int dp_mac_lookup(const struct dp_mac_table *t, uint64_t key, uint64_t now);
void dp_mac_learn(struct dp_core *dc, uint64_t key, uint16_t port_idx,
		uint64_t now);

/* dp_worker.c */
int dp_worker_main(void *arg);

/* dp_stats.c */
int dp_stats_write(const struct dp_core *dc, const char *path);
int dp_stats_start(struct dp_core *dc);
void dp_stats_stop(void);

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

static inline uint64_t
dp_mac_key(const struct rte_ether_addr *a)
{
	const uint8_t *b = a->addr_bytes;

	return ((uint64_t)b[0] << 40) | ((uint64_t)b[1] << 32) |
		((uint64_t)b[2] << 24) | ((uint64_t)b[3] << 16) |
		((uint64_t)b[4] << 8) | (uint64_t)b[5];
}

#endif /* DP_H */
