/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The packet loops. One is chosen at start-up by mode (dp_worker_loop), so
 * no loop branches on configuration per frame:
 *
 *   switch: poll every port for a burst, switch each frame, flush the
 *           transmit buffers, repeat until asked to quit;
 *   bare:   hand every burst from port i to port i+1 without looking at it
 *           (the baseline of `torswitch bench dataplane`).
 *
 * Inside a loop: no allocation, locks, logging or system calls, except the
 * idle back-off: after DP_IDLE_SPIN_POLLS empty rounds the worker sleeps,
 * doubling the sleep up to DP_IDLE_MAX_SLEEP_US, so an idle switch does
 * not eat a shared core. Whether frames must be classified for steering
 * and whether a memcached pool exists are settled once per round; each
 * burst then runs a variant of dp_switch_burst compiled with both as
 * constants, so a switch without pools pays nothing for MemSwitch, and
 * one whose steering is off, with no steered flow left, nothing for
 * steering.
 *
 *   rx burst -> dp_switch_one: runt?        -> drop, count
 *                              bad src MAC? -> drop, count
 *                              learn src
 *                              memcached?   -> dp_mc_frame (dp_mc.c): done
 *                                              (answered, held, dropped),
 *                                              or switched by its new
 *                                              destination MAC (no steering)
 *                              steered flow? (dp_flow.h: decided on its
 *                                 SYN)      -> rewrite dst MAC -> tap port
 *                              dst known?   -> that port (or drop: hairpin)
 *                              else         -> flood to every other port
 *
 * After the ports of a round: flush, then dp_mc_round (request-table
 * reaping and the round count that lets the control thread free old
 * pools).
 */
#include <unistd.h>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_tcp.h>

#include "dp.h"

struct dp_idle {
	unsigned int polls;
	unsigned int sleep_us;
};

static inline void
dp_idle_round(struct dp_core *dc, struct dp_idle *st, uint16_t nb_round)
{
	if (nb_round != 0 || dc->opt.no_backoff) {
		st->polls = 0;
		st->sleep_us = 1;
		return;
	}
	if (++st->polls < DP_IDLE_SPIN_POLLS) {
		rte_pause();
		return;
	}
	dc->stats.idle_sleeps++;
	usleep(st->sleep_us);
	if (st->sleep_us < DP_IDLE_MAX_SLEEP_US)
		st->sleep_us = RTE_MIN(st->sleep_us * 2, DP_IDLE_MAX_SLEEP_US);
}

static inline uint64_t
dp_stop_tsc(const struct dp_core *dc, uint64_t start)
{
	if (dc->opt.run_ms == 0)
		return UINT64_MAX;
	return start + rte_get_tsc_hz() / 1000 * dc->opt.run_ms;
}

static inline bool
dp_steered_port(const struct dp_core *dc, uint16_t dport)
{
	uint64_t w = __atomic_load_n(&dc->steer_map[dport / 64],
			__ATOMIC_ACQUIRE);

	return (w >> (dport % 64)) & 1;
}

/*
 * True when the frame is IPv4 TCP to one of the steered ports and belongs
 * to a flow steered to the tap: decided on the flow's SYN by steer_on,
 * followed by every later segment (dp_flow.h). Header checks follow
 * RFC 791 (version 4, IHL >= 5, total length covering the header) and
 * RFC 1812 section 5.2.2; a frame failing them is counted and switched
 * normally (fail open), never steered.
 */
static inline bool
dp_steer_decide(struct dp_core *dc, struct dp_port *in,
		const struct rte_mbuf *m, const struct rte_ether_hdr *eth,
		uint64_t now, bool steer_on)
{
	struct dp_flow_key key;
	const struct rte_ipv4_hdr *ip;
	const struct rte_tcp_hdr *tcp;
	/* Headers must sit in the first segment; lengths count all of them. */
	uint32_t seg = rte_pktmbuf_data_len(m) - sizeof(*eth);
	uint32_t len = rte_pktmbuf_pkt_len(m) - sizeof(*eth);
	uint32_t ihl, tot;

	if (eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
		return false;
	ip = (const struct rte_ipv4_hdr *)(eth + 1);
	if (unlikely(len < sizeof(*ip)))
		goto malformed;
	if (unlikely(seg < sizeof(*ip)))
		return false;
	ihl = (uint32_t)(ip->version_ihl & 0x0f) * 4;
	tot = rte_be_to_cpu_16(ip->total_length);
	if (unlikely((ip->version_ihl >> 4) != 4 || ihl < sizeof(*ip) ||
			tot < ihl || tot > len))
		goto malformed;
	if (ip->next_proto_id != IPPROTO_TCP)
		return false;
	/* Only first fragments carry the TCP header. */
	if (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_OFFSET_MASK))
		return false;
	if (tot - ihl < sizeof(*tcp) || seg < ihl + sizeof(*tcp))
		return false;
	tcp = (const struct rte_tcp_hdr *)((const uint8_t *)ip + ihl);
	if (!dp_steered_port(dc, rte_be_to_cpu_16(tcp->dst_port)))
		return false;
	key.saddr = ip->src_addr;
	key.daddr = ip->dst_addr;
	key.sport = tcp->src_port;
	key.dport = tcp->dst_port;
	return dp_flow_steer(&dc->flow, &key, tcp->tcp_flags, tcp->sent_seq,
			steer_on, now, &dc->stats);

malformed:
	in->stats.rx_l3_malformed++;
	return false;
}

static inline void
dp_flood(struct dp_core *dc, uint16_t in_idx, struct rte_mbuf *m)
{
	uint16_t i, n = in_idx < dc->nb_ports ? dc->nb_ports - 1 : dc->nb_ports;

	if (n == 0) {
		rte_pktmbuf_free(m);
		return;
	}
	/* Every output port gets a reference to the same buffer; transmit
	 * copies or frames it without writing, and each free drops one. */
	if (n > 1)
		rte_mbuf_refcnt_update(m, (int16_t)(n - 1));
	if (in_idx < dc->nb_ports)
		dc->ports[in_idx].stats.flooded++;
	for (i = 0; i < dc->nb_ports; i++)
		if (i != in_idx)
			dp_tx_enqueue(&dc->ports[i], m);
}

/* The destination-MAC part of switching: known unicast to its port (or
 * dropped when that is the ingress port), anything else flooded. */
static __rte_always_inline void
dp_l2_out(struct dp_core *dc, uint16_t in_idx, struct rte_mbuf *m,
		struct rte_ether_hdr *eth, uint64_t now)
{
	int out;

	if (likely(rte_is_unicast_ether_addr(&eth->dst_addr))) {
		out = dp_mac_lookup(&dc->mac, dp_mac_key(&eth->dst_addr), now);
		if (unlikely(out == in_idx)) {
			dc->ports[in_idx].stats.rx_hairpin++;
			rte_pktmbuf_free(m);
			return;
		}
		if (likely(out >= 0)) {
			dp_tx_enqueue(&dc->ports[out], m);
			return;
		}
	}
	dp_flood(dc, in_idx, m);
}

void
dp_forward(struct dp_core *dc, uint16_t in_idx, struct rte_mbuf *m,
		uint64_t now)
{
	dp_l2_out(dc, in_idx, m, rte_pktmbuf_mtod(m, struct rte_ether_hdr *),
			now);
}

/* classify (a constant): look up frames of this port for steering;
 * steer_on: whether new flows are steered now. */
static __rte_always_inline void
dp_switch_one(struct dp_core *dc, uint16_t in_idx, struct rte_mbuf *m,
		uint64_t now, bool steer_on, const bool classify, const bool mc)
{
	struct dp_port *in = &dc->ports[in_idx];
	struct rte_ether_hdr *eth;
	uint64_t src;

	if (unlikely(rte_pktmbuf_data_len(m) < sizeof(*eth))) {
		in->stats.rx_runt++;
		rte_pktmbuf_free(m);
		return;
	}
	eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	src = dp_mac_key(&eth->src_addr);
	if (unlikely(src == 0 || !rte_is_unicast_ether_addr(&eth->src_addr))) {
		in->stats.rx_bad_src_mac++;
		rte_pktmbuf_free(m);
		return;
	}
	dp_mac_learn(&dc->mac, src, in_idx, now, &dc->stats);

	if (mc) {
		enum dp_mc_verdict v = dp_mc_frame(dc, in_idx, m, now);

		if (v == DP_MC_DONE)
			return;
		if (v == DP_MC_SWITCH) {
			dp_l2_out(dc, in_idx, m, eth, now);
			return;
		}
	}
	if (classify && dp_steer_decide(dc, in, m, eth, now, steer_on)) {
		struct dp_port *tap = &dc->ports[dc->tap_idx];

		rte_ether_addr_copy(&tap->mac, &eth->dst_addr);
		in->stats.steered++;
		dp_tx_enqueue(tap, m);
		return;
	}
	dp_l2_out(dc, in_idx, m, eth, now);
}

static __rte_always_inline void
dp_switch_burst(struct dp_core *dc, uint16_t in_idx, struct rte_mbuf **pkts,
		uint16_t nb, uint64_t now, bool steer_on, const bool classify,
		const bool mc)
{
	uint64_t bytes = 0;
	uint16_t j;

	for (j = 0; j < nb && j < DP_PREFETCH_AHEAD; j++)
		rte_prefetch0(rte_pktmbuf_mtod(pkts[j], void *));
	for (j = 0; j < nb; j++) {
		if (j + DP_PREFETCH_AHEAD < nb)
			rte_prefetch0(rte_pktmbuf_mtod(
				pkts[j + DP_PREFETCH_AHEAD], void *));
		/* Counted before switching: the frame may be freed. */
		bytes += rte_pktmbuf_pkt_len(pkts[j]);
		dp_switch_one(dc, in_idx, pkts[j], now, steer_on, classify, mc);
	}
	dc->ports[in_idx].stats.rx_bytes += bytes;
}

static int
dp_switch_loop(struct dp_core *dc)
{
	struct rte_mbuf *pkts[DP_BURST];
	struct dp_idle idle = { 0, 1 };
	uint16_t i, nb_rx, nb_round;
	uint64_t now, stop;
	bool steer_on, flows_on, mc_on;

	now = rte_rdtsc();
	stop = dp_stop_tsc(dc, now);
	__atomic_store_n(&dc->worker_start_tsc, now, __ATOMIC_RELEASE);
	/* Pairs with the control thread's fence in dp_mc.c: it frees a
	 * replaced pool at once only while this store is not visible, so no
	 * pool load may be ordered before it. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	while (!dp_force_quit) {
		nb_round = 0;
		now = rte_rdtsc();
		if (unlikely(now >= stop))
			break;
		steer_on = __atomic_load_n(&dc->steer_on, __ATOMIC_ACQUIRE);
		/* With steering off, frames still need classifying while a
		 * steered flow may be live: it keeps going to the tap. */
		flows_on = steer_on || dp_flow_any_steered(&dc->flow, now);
		mc_on = __atomic_load_n(&dc->mc.any_pool, __ATOMIC_ACQUIRE);
		for (i = 0; i < dc->nb_ports; i++) {
			struct dp_port *p = &dc->ports[i];
			bool classify = flows_on && p->steer_capable;

			nb_rx = rte_eth_rx_burst(p->port_id, 0, pkts, DP_BURST);
			if (nb_rx == 0)
				continue;
			p->stats.rx_packets += nb_rx;
			nb_round += nb_rx;
			if (mc_on) {
				if (classify)
					dp_switch_burst(dc, i, pkts, nb_rx, now,
							steer_on, true, true);
				else
					dp_switch_burst(dc, i, pkts, nb_rx, now,
							false, false, true);
			} else if (classify) {
				dp_switch_burst(dc, i, pkts, nb_rx, now,
						steer_on, true, false);
			} else {
				dp_switch_burst(dc, i, pkts, nb_rx, now, false,
						false, false);
			}
		}
		for (i = 0; i < dc->nb_ports; i++)
			dp_tx_flush(&dc->ports[i]);
		dp_mc_round(dc, now);
		dp_idle_round(dc, &idle, nb_round);
	}
	for (i = 0; i < dc->nb_ports; i++)
		dp_tx_flush(&dc->ports[i]);
	__atomic_store_n(&dc->worker_stop_tsc, rte_rdtsc(), __ATOMIC_RELEASE);
	return 0;
}

/* Bare forwarding counts packets only: byte counts would mean looking. */
static int
dp_bare_loop(struct dp_core *dc)
{
	struct rte_mbuf *pkts[DP_BURST];
	struct dp_idle idle = { 0, 1 };
	uint16_t i, k, nb_rx, nb_tx, nb_round;
	uint64_t now, stop;

	now = rte_rdtsc();
	stop = dp_stop_tsc(dc, now);
	__atomic_store_n(&dc->worker_start_tsc, now, __ATOMIC_RELEASE);
	while (!dp_force_quit) {
		nb_round = 0;
		if (unlikely(rte_rdtsc() >= stop))
			break;
		for (i = 0; i < dc->nb_ports; i++) {
			struct dp_port *in = &dc->ports[i];
			struct dp_port *out =
				&dc->ports[i + 1 == dc->nb_ports ? 0 : i + 1];

			nb_rx = rte_eth_rx_burst(in->port_id, 0, pkts, DP_BURST);
			if (nb_rx == 0)
				continue;
			in->stats.rx_packets += nb_rx;
			nb_round += nb_rx;
			nb_tx = rte_eth_tx_burst(out->port_id, 0, pkts, nb_rx);
			out->stats.tx_packets += nb_tx;
			if (unlikely(nb_tx < nb_rx)) {
				out->stats.tx_dropped += nb_rx - nb_tx;
				for (k = nb_tx; k < nb_rx; k++)
					rte_pktmbuf_free(pkts[k]);
			}
		}
		dp_idle_round(dc, &idle, nb_round);
	}
	__atomic_store_n(&dc->worker_stop_tsc, rte_rdtsc(), __ATOMIC_RELEASE);
	return 0;
}

dp_loop_fn
dp_worker_loop(enum dp_mode mode)
{
	return mode == DP_MODE_BARE ? dp_bare_loop : dp_switch_loop;
}

const char *
dp_mode_name(enum dp_mode mode)
{
	return mode == DP_MODE_BARE ? "bare" : "switch";
}
