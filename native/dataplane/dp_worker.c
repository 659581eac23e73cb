/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The packet loops. One is chosen at start-up by mode (dp_worker_loop) and
 * run by every worker lcore over its own (port, rx queue) pairs (dp.h), so
 * no loop branches on configuration per frame:
 *
 *   switch: poll each of the worker's rx queues for a burst, switch each
 *           frame, flush the worker's transmit buffers, repeat until asked
 *           to quit;
 *   bare:   hand every burst from port i to port i+1 without looking at it
 *           (the baseline of `torswitch bench dataplane`).
 *
 * Inside a loop: no allocation, logging or system calls, and no locks but
 * a shared tx queue's (dp.h) and the MAC table's on learning (dp_mac.h),
 * except the idle back-off: after DP_IDLE_SPIN_POLLS empty rounds a
 * worker sleeps, doubling the sleep up to DP_IDLE_MAX_SLEEP_US, so an
 * idle switch does not eat a shared core. Whether frames must be
 * classified for steering and whether a memcached pool exists are
 * settled once per round; each burst then runs a variant of
 * dp_switch_burst compiled with both (and the worker's part in MemSwitch)
 * as constants, so a switch without pools pays nothing for MemSwitch,
 * and one whose steering is off, with no steered flow left, nothing for
 * steering.
 *
 *   rx burst -> dp_switch_one: runt?        -> drop, count
 *                              bad src MAC? -> drop, count
 *                              learn src
 *                              memcached?   worker 0: dp_mc_frame
 *                                              (dp_mc.c): done (answered,
 *                                              held, dropped), or switched
 *                                              by its new destination MAC
 *                                              (no steering);
 *                                           others: dp_mc_claims ->
 *                                              handed to worker 0 (ring)
 *                              steered flow? (dp_flow.h: decided on its
 *                                 SYN)      -> rewrite dst MAC -> tap port
 *                              dst known?   -> that port (or drop: hairpin)
 *                              else         -> flood to every other port
 *
 * Worker 0 starts each round with the frames the others handed over
 * (dp_handoff_drain: dp_mc_frame as if from their input port, then the
 * destination-MAC part of switching). After the queues of a round: flush,
 * then on worker 0 dp_mc_round (request-table reaping and the round count
 * that lets the control thread free old pools; counted only once every
 * other worker finished a round since the last count, dp.h), on the
 * others their own round count.
 */
#include <unistd.h>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_ring.h>
#include <rte_tcp.h>

#include "dp.h"

/* What a worker does with the memcached path in a burst (a constant in
 * each variant of dp_switch_burst). */
enum dp_mcw {
	DP_MCW_NONE = 0,	/* no pool: nothing */
	DP_MCW_OWNER,		/* worker 0: dp_mc_frame */
	DP_MCW_HANDOFF,		/* others: claimed frames go to worker 0 */
};

#define DP_HANDOFF_BURSTS 4	/* bursts worker 0 takes from the ring per round */

struct dp_idle {
	unsigned int polls;
	unsigned int sleep_us;
};

static inline void
dp_idle_round(const struct dp_core *dc, struct dp_worker *w,
		struct dp_idle *st, uint16_t nb_round)
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
	w->stats.idle_sleeps++;
	usleep(st->sleep_us);
	if (st->sleep_us < DP_IDLE_MAX_SLEEP_US)
		st->sleep_us = RTE_MIN(st->sleep_us * 2, DP_IDLE_MAX_SLEEP_US);
}

static inline uint64_t
dp_stop_tsc(const struct dp_core *dc)
{
	if (dc->opt.run_ms == 0)
		return UINT64_MAX;
	return __atomic_load_n(&dc->worker_start_tsc, __ATOMIC_ACQUIRE) +
		rte_get_tsc_hz() / 1000 * dc->opt.run_ms;
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
 * followed by every later segment (dp_flow.h; the worker's own table).
 * Header checks follow RFC 791 (version 4, IHL >= 5, total length
 * covering the header) and RFC 1812 section 5.2.2; a frame failing them
 * is counted and switched normally (fail open), never steered.
 */
static inline bool
dp_steer_decide(struct dp_core *dc, struct dp_worker *w,
		struct dp_flow_table *flow, struct dp_wport *in,
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
	return dp_flow_steer(flow, &key, tcp->tcp_flags, tcp->sent_seq,
			steer_on, now, &w->stats);

malformed:
	in->stats.rx_l3_malformed++;
	return false;
}

static inline void
dp_flood(struct dp_core *dc, struct dp_worker *w, uint16_t in_idx,
		struct rte_mbuf *m)
{
	uint16_t nb_ports = dc->nb_ports;
	uint16_t i, n = in_idx < nb_ports ? nb_ports - 1 : nb_ports;

	if (n == 0) {
		rte_pktmbuf_free(m);
		return;
	}
	/* Every output port gets a reference to the same buffer; transmit
	 * copies or frames it without writing, and each free drops one. */
	if (n > 1)
		rte_mbuf_refcnt_update(m, (int16_t)(n - 1));
	if (in_idx < nb_ports)
		w->port[in_idx].stats.flooded++;
	for (i = 0; i < nb_ports; i++)
		if (i != in_idx)
			dp_tx_enqueue(&w->port[i], m);
}

/* The destination-MAC part of switching: known unicast to its port (or
 * dropped when that is the ingress port), anything else flooded. */
static __rte_always_inline void
dp_l2_out(struct dp_core *dc, struct dp_worker *w, uint16_t in_idx,
		struct rte_mbuf *m, struct rte_ether_hdr *eth, uint64_t now)
{
	int out;

	if (likely(rte_is_unicast_ether_addr(&eth->dst_addr))) {
		out = dp_mac_lookup(&dc->mac, dp_mac_key(&eth->dst_addr), now);
		if (unlikely(out == in_idx)) {
			w->port[in_idx].stats.rx_hairpin++;
			rte_pktmbuf_free(m);
			return;
		}
		if (likely(out >= 0)) {
			dp_tx_enqueue(&w->port[out], m);
			return;
		}
	}
	dp_flood(dc, w, in_idx, m);
}

void
dp_forward(struct dp_core *dc, uint16_t in_idx, struct rte_mbuf *m,
		uint64_t now)
{
	dp_l2_out(dc, &dc->workers[0], in_idx, m,
			rte_pktmbuf_mtod(m, struct rte_ether_hdr *), now);
}

/* The frames claimed in a burst go to worker 0, the input port index in
 * the mbuf's port field; a full ring drops them. */
static inline void
dp_handoff_flush(struct dp_worker *w)
{
	unsigned int sent;
	uint16_t i;

	if (w->nb_ho == 0)
		return;
	sent = rte_ring_mp_enqueue_burst(w->dc->handoff, (void **)w->ho,
			w->nb_ho, NULL);
	w->wstats.mc_handoff += sent;
	for (i = sent; i < w->nb_ho; i++)
		rte_pktmbuf_free(w->ho[i]);
	w->wstats.mc_handoff_dropped += w->nb_ho - sent;
	w->nb_ho = 0;
}

/* classify (a constant): look up frames of this port for steering;
 * steer_on: whether new flows are steered now; mc (a constant): the
 * worker's part in the memcached path; solo (a constant): the only
 * worker, sole writer of the MAC table. */
static __rte_always_inline void
dp_switch_one(struct dp_core *dc, struct dp_worker *w,
		struct dp_flow_table *flow, uint16_t in_idx, struct rte_mbuf *m,
		uint64_t now, bool steer_on, const bool classify,
		const enum dp_mcw mc, const bool solo)
{
	struct dp_wport *in = &w->port[in_idx];
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
	dp_mac_learn_as(&dc->mac, src, in_idx, now, &w->stats, solo);

	if (mc == DP_MCW_OWNER) {
		enum dp_mc_verdict v = dp_mc_frame(dc, in_idx, m, now);

		if (v == DP_MC_DONE)
			return;
		if (v == DP_MC_SWITCH) {
			dp_l2_out(dc, w, in_idx, m, eth, now);
			return;
		}
	} else if (mc == DP_MCW_HANDOFF && dp_mc_claims(dc, m)) {
		m->port = in_idx;
		w->ho[w->nb_ho++] = m;
		return;
	}
	if (classify &&
			dp_steer_decide(dc, w, flow, in, m, eth, now, steer_on)) {
		struct dp_wport *tap = &w->port[dc->tap_idx];

		rte_ether_addr_copy(&dc->ports[dc->tap_idx].mac, &eth->dst_addr);
		in->stats.steered++;
		dp_tx_enqueue(tap, m);
		return;
	}
	dp_l2_out(dc, w, in_idx, m, eth, now);
}

/* dc is w->dc, passed along so that it stays in a register rather than
 * being loaded again from w for every frame. */
static __rte_always_inline void
dp_switch_burst(struct dp_core *dc, struct dp_worker *w,
		struct dp_flow_table *flow, uint16_t in_idx,
		struct rte_mbuf **pkts, uint16_t nb, uint64_t now, bool steer_on,
		const bool classify, const enum dp_mcw mc, const bool solo)
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
		dp_switch_one(dc, w, flow, in_idx, pkts[j], now, steer_on,
				classify, mc, solo);
	}
	w->port[in_idx].stats.rx_bytes += bytes;
	if (mc == DP_MCW_HANDOFF)
		dp_handoff_flush(w);
}

/* Worker 0: the frames the others handed over, as if received on their
 * input port (already counted, checked and learned there). Steering
 * never applies: only UDP and ARP are claimed. Returns how many. */
static uint16_t
dp_handoff_drain(struct dp_core *dc, struct dp_worker *w,
		struct rte_mbuf **pkts, uint64_t now, bool mc_on)
{
	uint16_t total = 0;
	unsigned int b, n, j;

	for (b = 0; b < DP_HANDOFF_BURSTS; b++) {
		n = rte_ring_sc_dequeue_burst(dc->handoff, (void **)pkts,
				DP_BURST, NULL);
		for (j = 0; j < n; j++) {
			struct rte_mbuf *m = pkts[j];
			uint16_t in_idx = m->port;

			if (mc_on) {
				enum dp_mc_verdict v =
					dp_mc_frame(dc, in_idx, m, now);

				if (v == DP_MC_DONE)
					continue;
			}
			dp_l2_out(dc, w, in_idx, m,
					rte_pktmbuf_mtod(m, struct rte_ether_hdr *),
					now);
		}
		total += n;
		if (n < DP_BURST)
			break;
	}
	w->wstats.mc_handoff_taken += total;
	return total;
}

/* Worker 0: whether every other worker finished a round since seen[]
 * (a stopped one always counts as having finished). */
static bool
dp_others_advanced(const struct dp_core *dc, const uint64_t *seen)
{
	uint16_t i;

	for (i = 1; i < dc->nb_workers; i++) {
		uint64_t r = __atomic_load_n(&dc->workers[i].rounds,
				__ATOMIC_SEQ_CST);

		if (r != UINT64_MAX && r == seen[i])
			return false;
	}
	return true;
}

static void
dp_others_snapshot(const struct dp_core *dc, uint64_t *seen)
{
	uint16_t i;

	for (i = 1; i < dc->nb_workers; i++)
		seen[i] = __atomic_load_n(&dc->workers[i].rounds,
				__ATOMIC_SEQ_CST);
}

/* The end of a round: worker 0 counts it for MemSwitch (dp_mc_round) once
 * every other worker finished a round since its last count, and takes a
 * new snapshot after counting; the others count their own. See dp.h. */
static __rte_always_inline void
dp_round_end(struct dp_core *dc, struct dp_worker *w, uint64_t *seen,
		uint64_t now, const bool owner, const bool solo)
{
	if (solo) {
		dp_mc_round(dc, now, true);
	} else if (owner) {
		bool count = dp_others_advanced(dc, seen);

		dp_mc_round(dc, now, count);
		if (count)
			dp_others_snapshot(dc, seen);
	} else {
		__atomic_store_n(&w->rounds, w->rounds + 1, __ATOMIC_SEQ_CST);
	}
}

/* The loop of one worker; owner (a constant): worker 0, whose w is then
 * &dc->workers[0], so that after inlining its ports and counters sit at
 * constant offsets from dc and one register serves for both; solo (a
 * constant): worker 0 and no other. */
static __rte_always_inline int
dp_switch_run(struct dp_core *dc, struct dp_worker *w, const bool owner,
		const bool solo)
{
	struct rte_mbuf *pkts[DP_BURST];
	struct dp_idle idle = { 0, 1 };
	uint64_t seen[DP_MAX_WORKERS] = { 0 };
	struct dp_flow_table *flow = owner ? &dc->flow0 : w->flow;
	uint16_t i, nb_q, nb_rx, nb_round;
	uint64_t now, stop;
	bool steer_on, flows_on, mc_on;

	stop = dp_stop_tsc(dc);
	/* Pairs with the control thread's fence in dp_mc.c: it frees a
	 * replaced pool at once only while the start time is not visible,
	 * so no pool load may be ordered before it. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	/* Solo: queue 0 of every port, in port order (dp_workers_plan). */
	nb_q = solo ? dc->nb_ports : w->nb_rxq;
	while (!dp_force_quit) {
		nb_round = 0;
		now = rte_rdtsc();
		if (unlikely(now >= stop))
			break;
		steer_on = __atomic_load_n(&dc->steer_on, __ATOMIC_ACQUIRE);
		/* With steering off, frames still need classifying while a
		 * steered flow may be live: it keeps going to the tap. */
		flows_on = steer_on || dp_flow_any_steered(flow, now);
		mc_on = __atomic_load_n(&dc->mc.any_pool, __ATOMIC_ACQUIRE);
		if (owner && !solo && dc->handoff != NULL)
			nb_round += dp_handoff_drain(dc, w, pkts, now, mc_on);
		for (i = 0; i < nb_q; i++) {
			uint16_t in = solo ? i : w->rxq[i].port_idx;
			const enum dp_mcw mc =
				owner ? DP_MCW_OWNER : DP_MCW_HANDOFF;
			bool classify;

			if (solo) {
				classify = flows_on && dc->ports[i].steer_capable;
				nb_rx = rte_eth_rx_burst(dc->ports[i].port_id, 0,
						pkts, DP_BURST);
			} else {
				const struct dp_rxq *q = &w->rxq[i];

				classify = flows_on && q->steer_capable;
				nb_rx = rte_eth_rx_burst(q->port_id, q->queue_id,
						pkts, DP_BURST);
			}
			if (nb_rx == 0)
				continue;
			w->port[in].stats.rx_packets += nb_rx;
			nb_round += nb_rx;
			if (mc_on) {
				if (classify)
					dp_switch_burst(dc, w, flow, in, pkts,
							nb_rx, now, steer_on,
							true, mc, solo);
				else
					dp_switch_burst(dc, w, flow, in, pkts,
							nb_rx, now, false,
							false, mc, solo);
			} else if (classify) {
				dp_switch_burst(dc, w, flow, in, pkts, nb_rx,
						now, steer_on, true,
						DP_MCW_NONE, solo);
			} else {
				dp_switch_burst(dc, w, flow, in, pkts, nb_rx,
						now, false, false,
						DP_MCW_NONE, solo);
			}
		}
		for (i = 0; i < dc->nb_ports; i++)
			dp_tx_flush_as(&w->port[i], !solo);
		dp_round_end(dc, w, seen, now, owner, solo);
		dp_idle_round(dc, w, &idle, nb_round);
	}
	for (i = 0; i < dc->nb_ports; i++)
		dp_tx_flush(&w->port[i]);
	if (!owner)
		__atomic_store_n(&w->rounds, UINT64_MAX, __ATOMIC_SEQ_CST);
	return 0;
}

/* One function per part, so that each is compact. */
static __rte_noinline int
dp_switch_loop_solo(struct dp_core *dc)
{
	return dp_switch_run(dc, &dc->workers[0], true, true);
}

static __rte_noinline int
dp_switch_loop_owner(struct dp_core *dc)
{
	return dp_switch_run(dc, &dc->workers[0], true, false);
}

static __rte_noinline int
dp_switch_loop_helper(struct dp_core *dc, struct dp_worker *w)
{
	return dp_switch_run(dc, w, false, false);
}

static int
dp_switch_loop(struct dp_worker *w)
{
	struct dp_core *dc = w->dc;

	if (dc->nb_workers == 1)
		return dp_switch_loop_solo(dc);
	if (w->idx == 0)
		return dp_switch_loop_owner(dc);
	return dp_switch_loop_helper(dc, w);
}

/* Bare forwarding counts packets only: byte counts would mean looking. */
static int
dp_bare_loop(struct dp_worker *w)
{
	struct dp_core *dc = w->dc;
	struct rte_mbuf *pkts[DP_BURST];
	struct dp_idle idle = { 0, 1 };
	uint16_t i, k, nb_rx, nb_tx, nb_round;
	uint64_t stop = dp_stop_tsc(dc);

	while (!dp_force_quit) {
		nb_round = 0;
		if (unlikely(rte_rdtsc() >= stop))
			break;
		for (i = 0; i < w->nb_rxq; i++) {
			const struct dp_rxq *q = &w->rxq[i];
			uint16_t in = q->port_idx;
			struct dp_wport *out =
				&w->port[in + 1 == dc->nb_ports ? 0 : in + 1];

			nb_rx = rte_eth_rx_burst(q->port_id, q->queue_id, pkts,
					DP_BURST);
			if (nb_rx == 0)
				continue;
			w->port[in].stats.rx_packets += nb_rx;
			nb_round += nb_rx;
			if (unlikely(out->tx_lock != NULL)) {
				rte_spinlock_lock(out->tx_lock);
				nb_tx = rte_eth_tx_burst(out->port_id, out->txq,
						pkts, nb_rx);
				rte_spinlock_unlock(out->tx_lock);
			} else {
				nb_tx = rte_eth_tx_burst(out->port_id, out->txq,
						pkts, nb_rx);
			}
			out->stats.tx_packets += nb_tx;
			if (unlikely(nb_tx < nb_rx)) {
				out->stats.tx_dropped += nb_rx - nb_tx;
				for (k = nb_tx; k < nb_rx; k++)
					rte_pktmbuf_free(pkts[k]);
			}
		}
		dp_idle_round(dc, w, &idle, nb_round);
	}
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
