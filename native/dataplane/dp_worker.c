/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The packet loop: poll every port for a burst, switch each frame, flush
 * the transmit buffers, repeat until asked to quit. No allocation, locks,
 * logging or system calls, except the idle back-off: after
 * DP_IDLE_SPIN_POLLS empty rounds the worker sleeps, doubling the sleep up
 * to DP_IDLE_MAX_SLEEP_US, so an idle switch does not eat a shared core.
 *
 *   rx burst -> dp_switch_one: runt?        -> drop, count
 *                              bad src MAC? -> drop, count
 *                              learn src
 *                              steer?       -> rewrite dst MAC -> tap port
 *                              dst known?   -> that port (or drop: hairpin)
 *                              else         -> flood to every other port
 */
#include <unistd.h>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_pause.h>
#include <rte_tcp.h>

#include "dp.h"

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

/*
 * True when the frame is IPv4 TCP to one of the steered ports. Header
 * checks follow RFC 791 (version 4, IHL >= 5, total length covering the
 * header) and RFC 1812 section 5.2.2; a frame failing them is counted and
 * switched normally (fail open), never steered.
 */
static inline bool
dp_classify_steer(const struct dp_core *dc, struct dp_port *in,
		const struct rte_mbuf *m, const struct rte_ether_hdr *eth)
{
	const struct rte_ipv4_hdr *ip;
	const struct rte_tcp_hdr *tcp;
	/* Headers must sit in the first segment; lengths count all of them. */
	uint32_t seg = rte_pktmbuf_data_len(m) - sizeof(*eth);
	uint32_t len = rte_pktmbuf_pkt_len(m) - sizeof(*eth);
	uint32_t ihl, tot;
	uint16_t dport, i;

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
	if (in->role != DP_ROLE_RACK || dc->tap_idx < 0 ||
			ip->next_proto_id != IPPROTO_TCP)
		return false;
	/* Only first fragments carry the TCP header. */
	if (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_OFFSET_MASK))
		return false;
	if (tot - ihl < sizeof(*tcp) || seg < ihl + sizeof(*tcp))
		return false;
	tcp = (const struct rte_tcp_hdr *)((const uint8_t *)ip + ihl);
	dport = rte_be_to_cpu_16(tcp->dst_port);
	for (i = 0; i < dc->opt.nb_steer; i++)
		if (dport == dc->opt.steer_tcp_ports[i])
			return true;
	return false;

malformed:
	in->stats.rx_l3_malformed++;
	return false;
}

static inline void
dp_flood(struct dp_core *dc, uint16_t in_idx, struct rte_mbuf *m)
{
	uint16_t i, n = dc->nb_ports - 1;

	if (n == 0) {
		rte_pktmbuf_free(m);
		return;
	}
	/* Every output port gets a reference to the same buffer; transmit
	 * copies or frames it without writing, and each free drops one. */
	if (n > 1)
		rte_mbuf_refcnt_update(m, (int16_t)(n - 1));
	dc->ports[in_idx].stats.flooded++;
	for (i = 0; i < dc->nb_ports; i++)
		if (i != in_idx)
			dp_tx_enqueue(&dc->ports[i], m);
}

static inline void
dp_switch_one(struct dp_core *dc, uint16_t in_idx, struct rte_mbuf *m,
		uint64_t now)
{
	struct dp_port *in = &dc->ports[in_idx];
	struct rte_ether_hdr *eth;
	uint64_t src;
	int out;

	in->stats.rx_bytes += rte_pktmbuf_pkt_len(m);
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
	dp_mac_learn(dc, src, in_idx, now);

	if (dp_classify_steer(dc, in, m, eth)) {
		struct dp_port *tap = &dc->ports[dc->tap_idx];

		rte_ether_addr_copy(&tap->mac, &eth->dst_addr);
		in->stats.steered++;
		dp_tx_enqueue(tap, m);
		return;
	}
	if (rte_is_unicast_ether_addr(&eth->dst_addr)) {
		out = dp_mac_lookup(&dc->mac, dp_mac_key(&eth->dst_addr), now);
		if (out == in_idx) {
			in->stats.rx_hairpin++;
			rte_pktmbuf_free(m);
			return;
		}
		if (out >= 0) {
			dp_tx_enqueue(&dc->ports[out], m);
			return;
		}
	}
	dp_flood(dc, in_idx, m);
}

int
dp_worker_main(void *arg)
{
	struct dp_core *dc = arg;
	struct rte_mbuf *pkts[DP_BURST];
	unsigned int idle = 0, sleep_us = 1;
	uint16_t i, j, nb_rx, nb_round;
	uint64_t now;

	while (!dp_force_quit) {
		nb_round = 0;
		now = rte_rdtsc();
		for (i = 0; i < dc->nb_ports; i++) {
			struct dp_port *p = &dc->ports[i];

			nb_rx = rte_eth_rx_burst(p->port_id, 0, pkts, DP_BURST);
			if (nb_rx == 0)
				continue;
			p->stats.rx_packets += nb_rx;
			nb_round += nb_rx;
			for (j = 0; j < nb_rx; j++)
				dp_switch_one(dc, i, pkts[j], now);
		}
		for (i = 0; i < dc->nb_ports; i++)
			dp_tx_flush(&dc->ports[i]);

		if (nb_round != 0 || dc->opt.no_backoff) {
			idle = 0;
			sleep_us = 1;
			continue;
		}
		if (++idle < DP_IDLE_SPIN_POLLS) {
			rte_pause();
			continue;
		}
		dc->stats.idle_sleeps++;
		usleep(sleep_us);
		if (sleep_us < DP_IDLE_MAX_SLEEP_US)
			sleep_us = RTE_MIN(sleep_us * 2, (unsigned int)DP_IDLE_MAX_SLEEP_US);
	}
	for (i = 0; i < dc->nb_ports; i++)
		dp_tx_flush(&dc->ports[i]);
	return 0;
}
