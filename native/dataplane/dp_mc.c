/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MemSwitch's data path: the worker's half of dp_mc.h (read its comment
 * first; this file follows it). dp_mc_ctl.c has start-up, control and
 * stats.
 *
 *   dp_mc_frame: ARP for a VIP           -> answered in place
 *                IPv4 UDP to VIP:PORT    -> dp_mc_request
 *                later fragment to a VIP -> dp_mc_fragment
 *                IPv4 UDP from VIP:PORT  -> dp_mc_reply
 *                anything else           -> PASS
 *
 *   dp_mc_request: frame header; seq > 0 follows its seq 0 (request
 *   table); seq 0 is parsed once, then answered from the switch (hit,
 *   refusal, no server), split over servers, or sent to the key's server
 *   by rewriting the destination MAC (DSR).
 *
 *   The common case has a path of its own, dp_mc_request_fast: one
 *   datagram "get KEY\r\n" (dp_mc_get1_len says what the parser would)
 *   goes straight to dp_mc_get1, which answers from the cache or rewrites
 *   the destination MAC, counting as the general path does; anything else
 *   takes the general path with nothing counted yet. The frame's fields
 *   (struct dp_mc_pkt) stay in registers on it: functions out of line get
 *   a copy, or the mbuf and dp_mc_locate to find them again.
 *
 *   dp_mc_reply: ends a write's coherence hold, gathers a split's parts,
 *   fills the cache; otherwise the reply goes on to its client unchanged.
 *
 * Frames the switch answers in place are "turned": Ethernet, IPv4 (a
 * fresh 20-byte header) and UDP addressed from the pool back to the
 * client, the payload rebuilt after the frame header, lengths and both
 * checksums computed in software, out of the ingress port. Everything
 * here runs on worker 0 (dp.h), transmitting through its buffers
 * (dp_mc_txport), also for frames other workers handed over: no locks,
 * no allocation except split sub-requests from the packet pool, no
 * system calls. dp_mc_claims is the exception: the other workers'
 * classification, reading only the published pools.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_memcpy.h>
#include <rte_udp.h>

#include "tsw/tsw_route.h"

#include "dp.h"

#define DP_MC_ETH_LEN ((uint32_t)sizeof(struct rte_ether_hdr))
#define DP_MC_IP_LEN ((uint32_t)sizeof(struct rte_ipv4_hdr))
#define DP_MC_UDP_LEN ((uint32_t)sizeof(struct rte_udp_hdr))
/* Ethernet, IPv4 without options, UDP, frame header: where a turned
 * frame's ASCII starts. */
#define DP_MC_TURNED_LEN \
	(DP_MC_ETH_LEN + DP_MC_IP_LEN + DP_MC_UDP_LEN + DP_MC_UDP_HDR_LEN)

#define DP_MC_END "END\r\n"
#define DP_MC_END_LEN 5
#define DP_MC_OK_LINE "OK\r\n"
#define DP_MC_OK_LINE_LEN 4

/* How a part's answer ended. */
enum dp_mc_part_end {
	DP_MC_PART_OPEN = 0,	/* still coming */
	DP_MC_PART_END,		/* "END": the values are complete */
	DP_MC_PART_OK,		/* "OK" (flush_all) */
	DP_MC_PART_OTHER,	/* an error or anything else: sent alone */
};

/* One server's share of a split request, and where the reading of its
 * answer stands. The answer is read as a byte stream over its datagrams
 * in arrival order: memcached 1.6 frames every response object (each
 * VALUE, the END) as a message of its own numbered from sequence 0, so
 * only the text says when it is complete. */
struct dp_mc_part {
	struct rte_ether_addr mac;	/* its replies come from this MAC */
	uint16_t sid;
	uint16_t msg_total;	/* datagrams of the message being read */
	uint16_t msg_next;	/* its next sequence number; 0: between */
	uint32_t skip;		/* value bytes (and "\r\n") still to pass */
	int16_t line_at;	/* held index where an unfinished line
				 * starts, -1: none */
	uint16_t line_off;	/* its offset in that datagram's ASCII */
	uint8_t end;		/* enum dp_mc_part_end */
};

/* A split request waiting for its parts (request-table entry with
 * DP_MC_FLOW_SPLIT names it). Only the worker touches it. */
struct dp_mc_split {
	uint16_t pool_id;
	uint16_t req_id;
	uint8_t nparts;
	uint8_t ndone;		/* parts with every datagram in */
	bool flush;		/* flush_all: combine into one OK */
	bool aborted;		/* answered already: drop what still comes */
	uint16_t nheld;
	struct dp_mc_part parts[DP_MC_MAX_SERVERS];
	struct rte_mbuf *held[DP_MC_SPLIT_MAX_DGRAMS];	/* arrival order */
	uint8_t held_part[DP_MC_SPLIT_MAX_DGRAMS];
};

/* A frame of the memcached path, parsed once by dp_mc_frame. */
struct dp_mc_pkt {
	struct rte_mbuf *m;
	struct rte_ether_hdr *eth;
	struct rte_ipv4_hdr *ip;
	struct rte_udp_hdr *udp;
	uint8_t *pl;		/* UDP payload: frame header, then ASCII */
	uint32_t plen;		/* payload bytes in this frame */
	uint32_t ihl;
	bool first_frag;	/* more fragments follow (offset 0, MF set) */
	uint16_t in_idx;
};

/* Answers to requests the parser refused (memcached's own wording where
 * it has one). A datagram shorter than the frame header has no request
 * id to answer with: it is dropped. */
static const char *const dp_mc_refusal[DP_MC_RESULT_COUNT] = {
	[DP_MC_NO_LINE] = "CLIENT_ERROR line not terminated\r\n",
	[DP_MC_UNKNOWN_OP] = "CLIENT_ERROR unknown command\r\n",
	[DP_MC_BAD_KEY] = "CLIENT_ERROR bad key\r\n",
	[DP_MC_TOO_MANY_KEYS] = "CLIENT_ERROR too many keys\r\n",
	[DP_MC_BAD_ARGS] = "CLIENT_ERROR bad command line format\r\n",
	[DP_MC_BAD_DATA] = "CLIENT_ERROR bad data chunk\r\n",
};

#define DP_MC_NO_SERVER "SERVER_ERROR no live server in pool\r\n"
#define DP_MC_SPLIT_BUSY "SERVER_ERROR out of split state\r\n"
#define DP_MC_SPLIT_TOO_LARGE "SERVER_ERROR split reply too large\r\n"
#define DP_MC_SPLIT_BAD "SERVER_ERROR split reply out of order\r\n"
#define DP_MC_MAX_REPLY_LINE 512	/* longest reply line a part may send */

static inline struct dp_mc_pool *
dp_mc_pool_at(const struct dp_mc_state *mc, unsigned int i)
{
	return __atomic_load_n(&mc->pools[i], __ATOMIC_ACQUIRE);
}

static inline uint32_t
dp_mc_digits(uint32_t v)
{
	uint32_t n = 1;

	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

/* Bytes dp_mc_build_value_reply writes for one item. */
static inline uint32_t
dp_mc_value_reply_len(uint32_t key_len, uint32_t flags, uint32_t data_len)
{
	return 6 + key_len + 1 + dp_mc_digits(flags) + 1 +
		dp_mc_digits(data_len) + 2 + data_len + 2 + DP_MC_END_LEN;
}

/* Room for a turned frame's ASCII in m. */
static inline uint32_t
dp_mc_turn_room(const struct rte_mbuf *m)
{
	uint32_t room = (uint32_t)m->buf_len - m->data_off;

	if (room < DP_MC_TURNED_LEN)
		return 0;
	return RTE_MIN(room - DP_MC_TURNED_LEN, (uint32_t)
			DP_MC_MAX_UDP_PAYLOAD - DP_MC_UDP_HDR_LEN);
}

/*
 * Sets the lengths of a frame whose UDP payload now has plen bytes, and
 * both checksums: the IPv4 header's, and the UDP checksum from
 * payload_sum, the unfolded dp_mc_sum of the payload's bytes from
 * payload_from on (the caller's, when it knows it without a pass over the
 * bytes), to which the bytes before payload_from are added here. The
 * results are rte_ipv4_cksum's and rte_ipv4_udptcp_cksum's (dp_mc_proto.h
 * on the sums), with the checksum arithmetic eight bytes at a time.
 */
static inline void
dp_mc_fix_sum(struct rte_mbuf *m, struct rte_ipv4_hdr *ip, uint32_t ihl,
		uint32_t plen, uint32_t payload_from, uint64_t payload_sum)
{
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)((uint8_t *)ip + ihl);
	uint16_t ulen = rte_cpu_to_be_16((uint16_t)(DP_MC_UDP_LEN + plen));
	uint64_t acc;
	uint16_t ck;

	ip->total_length = rte_cpu_to_be_16((uint16_t)(ihl + DP_MC_UDP_LEN + plen));
	ip->hdr_checksum = 0;
	ip->hdr_checksum = (uint16_t)~dp_mc_sum_fold(dp_mc_sum(ip, ihl, 0));
	udp->dgram_len = ulen;
	udp->dgram_cksum = 0;
	/* Pseudo-header (addresses, protocol, UDP length), then the UDP
	 * header (ports, length, zero checksum) and the payload. */
	acc = dp_mc_sum(&ip->src_addr, 8, payload_sum);
	acc = dp_mc_sum_add(acc, (uint64_t)rte_cpu_to_be_16(ip->next_proto_id) +
			ulen + ulen);
	acc = dp_mc_sum(udp, 4, acc);
	acc = dp_mc_sum(udp + 1, payload_from, acc);
	ck = (uint16_t)~dp_mc_sum_fold(acc);
	udp->dgram_cksum = ck == 0 ? 0xffff : ck;	/* RFC 768 */
	m->data_len = (uint16_t)(DP_MC_ETH_LEN + ihl + DP_MC_UDP_LEN + plen);
	m->pkt_len = m->data_len;
}

static void
dp_mc_fix(struct rte_mbuf *m, struct rte_ipv4_hdr *ip, uint32_t ihl,
		uint32_t plen)
{
	dp_mc_fix_sum(m, ip, ihl, plen, plen, 0);
}

/*
 * Sets a frame's destination MAC with one 8-byte store over it and the
 * first two bytes of the source MAC (rewritten as they were): the switch
 * reads the destination next with one 8-byte load, which a store of the
 * same 8 bytes forwards to at once, while two smaller stores would hold
 * it until they reach the cache.
 */
static inline void
dp_mc_set_dst(struct rte_ether_hdr *eth, const uint8_t *mac)
{
	uint64_t w, m;
	uint32_t lo;
	uint16_t hi;

	memcpy(&w, eth, 8);
	memcpy(&lo, mac, 4);
	memcpy(&hi, mac + 4, 2);
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	m = (uint64_t)lo | (uint64_t)hi << 32;
	w = (w & UINT64_C(0xffff000000000000)) | m;
#else
	m = (uint64_t)lo << 32 | (uint64_t)hi << 16;
	w = (w & UINT64_C(0xffff)) | m;
#endif
	memcpy(eth, &w, 8);
}

/* Readdresses a request frame as the pool's answer to its client and
 * returns where the frame header goes. Read anything needed from the
 * request's payload first: the new headers may cover IP options. */
static __rte_always_inline uint8_t *
dp_mc_turn(const struct dp_mc_pool *pool, struct dp_mc_pkt *k)
{
	struct rte_mbuf *m = k->m;
	struct rte_ipv4_hdr *ip = k->ip;
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);
	rte_be32_t client = ip->src_addr;
	rte_be16_t client_port = k->udp->src_port;

	if (unlikely(m->next != NULL)) {
		rte_pktmbuf_free(m->next);
		m->next = NULL;
		m->nb_segs = 1;
	}
	rte_ether_addr_copy(&k->eth->src_addr, &k->eth->dst_addr);
	rte_ether_addr_copy(&pool->vmac, &k->eth->src_addr);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->fragment_offset = 0;
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = pool->vip_be;
	ip->dst_addr = client;
	udp->src_port = pool->vport_be;
	udp->dst_port = client_port;
	k->udp = udp;
	k->ihl = DP_MC_IP_LEN;
	return (uint8_t *)(udp + 1);
}

/* Answers a request with one line, in place, out of the ingress port. */
static enum dp_mc_verdict
dp_mc_answer(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt *k, uint16_t req_id, const char *line)
{
	struct dp_mc_udp_hdr h = { .req_id = req_id, .seq = 0, .total = 1 };
	uint32_t room = dp_mc_turn_room(k->m), n;
	uint8_t *pl;

	if (unlikely(room < strlen(line))) {
		rte_pktmbuf_free(k->m);
		return DP_MC_DONE;
	}
	pl = dp_mc_turn(pool, k);
	dp_mc_write_hdr(pl, &h);
	n = dp_mc_build_line(pl + DP_MC_UDP_HDR_LEN, room, line);
	dp_mc_fix(k->m, k->ip, DP_MC_IP_LEN, DP_MC_UDP_HDR_LEN + n);
	dp_tx_enqueue(dp_mc_txport(dc, k->in_idx), k->m);
	return DP_MC_DONE;
}

/*
 * Serves a cache hit in place: the slot's text is the whole reply, with
 * its checksum sum. False (frame untouched) when the reply would not
 * fit.
 *
 * The frame becomes what dp_mc_turn and dp_mc_fix_sum make of it, but
 * built in registers: the headers are put together as words (the few
 * bytes of the request they keep are read first), their checksums added
 * from those words and from the text's sum, and each word stored once,
 * so nothing just written is read back.
 */
static __rte_always_inline bool
dp_mc_serve_hit(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt *k, uint16_t req_id, const struct dp_mc_hit *hit)
{
	struct rte_mbuf *m = k->m;
	uint32_t room = dp_mc_turn_room(m);
	uint32_t plen = DP_MC_UDP_HDR_LEN + hit->text_len;
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	uint8_t *f = (uint8_t *)k->eth;
	uint8_t *ip = f + DP_MC_ETH_LEN;
	uint8_t *udp = ip + DP_MC_IP_LEN;
	uint16_t ulen = rte_cpu_to_be_16((uint16_t)(DP_MC_UDP_LEN + plen));
	uint16_t tot = rte_cpu_to_be_16((uint16_t)(DP_MC_IP_LEN +
				DP_MC_UDP_LEN + plen));
	uint64_t client_mac, vmac, w0, w1, fh, acc;
	uint32_t client, ports, w2;
	uint16_t id, ck, vlo;
	uint32_t vhi;
#endif

	if (unlikely(hit->text_len > room))
		return false;
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	if (unlikely(m->next != NULL)) {
		rte_pktmbuf_free(m->next);
		m->next = NULL;
		m->nb_segs = 1;
	}
	/* What the answer keeps of the request. */
	memcpy(&client_mac, f + RTE_ETHER_ADDR_LEN, 8);	/* + type */
	memcpy(&client, &k->ip->src_addr, 4);
	memcpy(&id, &k->ip->packet_id, 2);
	ports = (uint32_t)pool->vport_be | (uint32_t)k->udp->src_port << 16;
	/* Ethernet: to the client, from the pool's MAC. */
	memcpy(&vlo, pool->vmac.addr_bytes, 2);
	memcpy(&vhi, pool->vmac.addr_bytes + 2, 4);
	vmac = (client_mac & UINT64_C(0xffffffffffff)) | (uint64_t)vlo << 48;
	memcpy(f, &vmac, 8);
	memcpy(f + 8, &vhi, 4);
	/* IPv4: version 4, 20 bytes, TOS 0, the request's id, no
	 * fragment, TTL 64, UDP, from the VIP to the client. */
	w0 = (uint64_t)RTE_IPV4_VHL_DEF | (uint64_t)tot << 16 |
		(uint64_t)id << 32;
	w1 = 64 | (uint64_t)IPPROTO_UDP << 8 | (uint64_t)pool->vip_be << 32;
	w2 = client;
	acc = dp_mc_sum_add(dp_mc_sum_add(w0, w1), w2);
	w1 |= (uint64_t)(uint16_t)~dp_mc_sum_fold(acc) << 16;
	memcpy(ip, &w0, 8);
	memcpy(ip + 8, &w1, 8);
	memcpy(ip + 16, &w2, 4);
	/* The frame header: the request id, datagram 0 of 1. */
	fh = (uint64_t)rte_cpu_to_be_16(req_id) |
		(uint64_t)rte_cpu_to_be_16(1) << 32;
	memcpy(udp + DP_MC_UDP_LEN, &fh, 8);
	rte_memcpy(udp + DP_MC_UDP_LEN + DP_MC_UDP_HDR_LEN, hit->text,
			hit->text_len);
	/* UDP: pseudo-header, header, frame header, text. */
	acc = dp_mc_sum_add((uint64_t)pool->vip_be | (uint64_t)client << 32,
			(uint64_t)rte_cpu_to_be_16(IPPROTO_UDP) + ulen + ulen +
			ports + hit->text_sum);
	acc = dp_mc_sum_add(acc, fh);
	ck = (uint16_t)~dp_mc_sum_fold(acc);
	ck = ck == 0 ? 0xffff : ck;	/* RFC 768 */
	memcpy(udp, &ports, 4);
	w2 = (uint32_t)ulen | (uint32_t)ck << 16;
	memcpy(udp + 4, &w2, 4);
	m->data_len = (uint16_t)(DP_MC_ETH_LEN + DP_MC_IP_LEN + DP_MC_UDP_LEN +
			plen);
	m->pkt_len = m->data_len;
	k->ip = (struct rte_ipv4_hdr *)ip;
	k->udp = (struct rte_udp_hdr *)udp;
	k->ihl = DP_MC_IP_LEN;
#else
	{
		struct dp_mc_udp_hdr h = { .req_id = req_id, .seq = 0,
			.total = 1 };
		uint8_t *pl = dp_mc_turn(pool, k);

		dp_mc_write_hdr(pl, &h);
		rte_memcpy(pl + DP_MC_UDP_HDR_LEN, hit->text, hit->text_len);
		/* The text starts at an even offset of the UDP payload. */
		dp_mc_fix_sum(m, k->ip, DP_MC_IP_LEN, plen, DP_MC_UDP_HDR_LEN,
				hit->text_sum);
	}
#endif
	dp_tx_enqueue(dp_mc_txport(dc, k->in_idx), m);
	return true;
}

/* A first fragment sent to s: records where its later fragments go. */
static __rte_noinline void
dp_mc_send_frag(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt k, const struct dp_mc_server *s, uint64_t now)
{
	struct dp_mc_state *mc = &dc->mc;
	struct dp_mc_flow *f;
	bool evicted;

	f = dp_mc_flow_insert(mc->frags, dp_mc_frag_key(
			rte_be_to_cpu_32(k.ip->src_addr),
			rte_be_to_cpu_16(k.ip->packet_id)),
			now + mc->req_timeout_tsc, &evicted);
	f->flags |= DP_MC_FLOW_SERVER;
	memcpy(f->server_mac, s->mac.addr_bytes, RTE_ETHER_ADDR_LEN);
	f->server_ip = s->ip;
	f->server_port = s->port;
	f->server_id = s->id;
	f->pool_id = pool->id;
}

/* Sends a request frame to a server: destination MAC only (DSR). A first
 * fragment also records where its later fragments go. */
static inline enum dp_mc_verdict
dp_mc_send(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt *k, const struct dp_mc_server *s, uint64_t now)
{
	dp_mc_set_dst(k->eth, s->mac.addr_bytes);
	dc->mc.server_stats[s->id].requests++;
	if (unlikely(k->first_frag))
		dp_mc_send_frag(dc, pool, *k, s, now);
	return DP_MC_SWITCH;
}

/* ---- splits ------------------------------------------------------------ */

static inline uint16_t
dp_mc_split_index(const struct dp_mc_state *mc, const struct dp_mc_split *s)
{
	return (uint16_t)(s - mc->splits);
}

/* Frees the datagrams a split holds. */
static void
dp_mc_split_drop(struct dp_mc_state *mc, struct dp_mc_split *s)
{
	uint16_t i;

	for (i = 0; i < s->nheld; i++)
		rte_pktmbuf_free(s->held[i]);
	mc->held -= s->nheld;
	s->nheld = 0;
}

/* ... and returns it to the free stack. */
static void
dp_mc_split_put(struct dp_mc_state *mc, struct dp_mc_split *s)
{
	dp_mc_split_drop(mc, s);
	mc->split_free[mc->nsplit_free++] = dp_mc_split_index(mc, s);
}

void
dp_mc_req_release(struct dp_mc_flow *f, void *arg)
{
	struct dp_core *dc = arg;
	struct dp_mc_split *s;

	if (!(f->flags & DP_MC_FLOW_SPLIT))
		return;
	s = &dc->mc.splits[f->split];
	if (!s->aborted)
		dc->mc.pool_stats[s->pool_id].split_timeouts++;
	dp_mc_split_put(&dc->mc, s);
}

/* The UDP payload of a frame the path has validated (held replies). */
static inline uint8_t *
dp_mc_payload(struct rte_mbuf *m, struct rte_ipv4_hdr **ip, uint32_t *ihl,
		uint32_t *plen)
{
	struct rte_udp_hdr *udp;

	*ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, DP_MC_ETH_LEN);
	*ihl = rte_ipv4_hdr_len(*ip);
	udp = (struct rte_udp_hdr *)((uint8_t *)*ip + *ihl);
	*plen = rte_be_to_cpu_16(udp->dgram_len) - DP_MC_UDP_LEN;
	return (uint8_t *)(udp + 1);
}

/*
 * Sends a split request: one sub-request per part (part 0 reuses the
 * frame, the others are new buffers with the same headers), all with the
 * client's address and request id. mask[p] picks part p's keys; NULL
 * (flush_all) copies the request whole. With gather, the answers are
 * collected under the request's ticket.
 */
static enum dp_mc_verdict
dp_mc_split_send(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt *k, const struct dp_mc_req *req,
		const struct dp_mc_udp_hdr *h, uint64_t ticket, uint8_t nparts,
		const uint8_t *part_srv, const uint32_t *mask, bool gather,
		uint64_t now)
{
	struct dp_mc_state *mc = &dc->mc;
	struct dp_mc_pool_counters *pc = &mc->pool_stats[pool->id];
	struct rte_mbuf *subs[DP_MC_MAX_SERVERS];
	uint32_t hdr_len = DP_MC_ETH_LEN + k->ihl + DP_MC_UDP_LEN +
		DP_MC_UDP_HDR_LEN;
	uint8_t *ascii = k->pl + DP_MC_UDP_HDR_LEN;
	uint8_t line[DP_MC_MAX_LINE + 2];
	uint32_t n, p;

	if (gather && mc->nsplit_free == 0)
		goto refuse;
	if (rte_pktmbuf_alloc_bulk(mc->pktpool, subs + 1, nparts - 1) != 0)
		goto refuse;
	for (p = 1; p < nparts; p++) {
		struct rte_mbuf *sm = subs[p];
		uint8_t *d = rte_pktmbuf_mtod(sm, uint8_t *);
		uint32_t room = rte_pktmbuf_tailroom(sm);

		if (mask == NULL) {
			n = k->plen - DP_MC_UDP_HDR_LEN;
			if (hdr_len + n > room)
				n = 0;
			else
				memcpy(d, k->eth, hdr_len + n);
		} else {
			n = 0;
			if (room > hdr_len) {
				memcpy(d, k->eth, hdr_len);
				n = dp_mc_build_subget(d + hdr_len,
						room - hdr_len, ascii, req,
						mask[p]);
			}
		}
		if (n == 0) {
			rte_pktmbuf_free_bulk(subs + 1, nparts - 1);
			goto refuse;
		}
		rte_ether_addr_copy(&pool->servers[part_srv[p]].mac,
				&((struct rte_ether_hdr *)d)->dst_addr);
		dp_mc_fix(sm, (struct rte_ipv4_hdr *)(d + DP_MC_ETH_LEN), k->ihl,
				DP_MC_UDP_HDR_LEN + n);
	}
	if (mask != NULL) {
		/* Last: the other parts were built from this line. */
		n = dp_mc_build_subget(line, sizeof(line), ascii, req, mask[0]);
		memcpy(ascii, line, n);
		dp_mc_fix(k->m, k->ip, k->ihl, DP_MC_UDP_HDR_LEN + n);
	}
	if (gather) {
		struct dp_mc_split *s =
			&mc->splits[mc->split_free[--mc->nsplit_free]];
		struct dp_mc_flow *f;
		bool evicted;

		s->pool_id = pool->id;
		s->req_id = h->req_id;
		s->nparts = nparts;
		s->ndone = 0;
		s->flush = mask == NULL;
		s->aborted = false;
		s->nheld = 0;
		for (p = 0; p < nparts; p++) {
			const struct dp_mc_server *sv = &pool->servers[part_srv[p]];

			memset(&s->parts[p], 0, sizeof(s->parts[p]));
			s->parts[p].mac = sv->mac;
			s->parts[p].sid = sv->id;
			s->parts[p].line_at = -1;
		}
		f = dp_mc_flow_insert(mc->reqs, ticket,
				now + mc->req_timeout_tsc, &evicted);
		f->flags |= DP_MC_FLOW_SPLIT;
		f->split = dp_mc_split_index(mc, s);
		f->pool_id = pool->id;
		pc->splits++;
	}
	for (p = 1; p < nparts; p++) {
		mc->server_stats[pool->servers[part_srv[p]].id].requests++;
		dp_forward(dc, k->in_idx, subs[p], now);
	}
	return dp_mc_send(dc, pool, k, &pool->servers[part_srv[0]], now);

refuse:
	pc->split_refused++;
	return dp_mc_answer(dc, pool, k, h->req_id, DP_MC_SPLIT_BUSY);
}

/* The held datagrams of part p, in arrival order. Returns how many. */
static uint32_t
dp_mc_part_frames(const struct dp_mc_split *s, uint8_t p,
		struct rte_mbuf **out)
{
	uint32_t n = 0, i;

	for (i = 0; i < s->nheld; i++)
		if (s->held_part[i] == p)
			out[n++] = s->held[i];
	return n;
}

/* The ASCII of a held datagram (after its frame header). */
static inline const uint8_t *
dp_mc_held_ascii(struct rte_mbuf *m, uint32_t *len)
{
	struct rte_ipv4_hdr *ip;
	uint32_t ihl, plen;
	const uint8_t *pl = dp_mc_payload(m, &ip, &ihl, &plen);

	*len = plen - DP_MC_UDP_HDR_LEN;
	return pl + DP_MC_UDP_HDR_LEN;
}

/* One whole line of a part's answer (with its "\r\n"). */
static void
dp_mc_part_line(struct dp_mc_part *pt, const uint8_t *l, uint32_t n)
{
	uint32_t i = 6, w, bytes = 0;

	if (n < 2 || l[n - 2] != '\r') {
		pt->end = DP_MC_PART_OTHER;
	} else if (n == 5 && memcmp(l, "END", 3) == 0) {
		pt->end = DP_MC_PART_END;
	} else if (n == 4 && memcmp(l, "OK", 2) == 0) {
		pt->end = DP_MC_PART_OK;
	} else if (n > 6 && memcmp(l, "VALUE ", 6) == 0) {
		/* VALUE <key> <flags> <bytes> [<cas>]: skip the data. */
		for (w = 0; w < 2; w++) {
			while (i < n && l[i] != ' ')
				i++;
			while (i < n && l[i] == ' ')
				i++;
		}
		if (i >= n || l[i] < '0' || l[i] > '9') {
			pt->end = DP_MC_PART_OTHER;
			return;
		}
		while (i < n && l[i] >= '0' && l[i] <= '9' && bytes < (1u << 24))
			bytes = bytes * 10 + (uint32_t)(l[i++] - '0');
		pt->skip = bytes + 2;
	} else {
		pt->end = DP_MC_PART_OTHER;
	}
}

/* Reads the new datagram (held index hi) of part pt: values skipped by
 * their declared length, lines looked at. False when a line is too long
 * to be a reply line. */
static bool
dp_mc_part_scan(struct dp_mc_split *s, struct dp_mc_part *pt, uint16_t hi)
{
	uint8_t buf[DP_MC_MAX_REPLY_LINE];
	const uint8_t *a, *nl, *prev;
	uint32_t n, pos = 0, take, plen, head;

	a = dp_mc_held_ascii(s->held[hi], &n);
	while (pos < n && pt->end == DP_MC_PART_OPEN) {
		if (pt->skip != 0) {
			take = RTE_MIN(pt->skip, n - pos);
			pt->skip -= take;
			pos += take;
			continue;
		}
		nl = memchr(a + pos, '\n', n - pos);
		if (pt->line_at >= 0) {
			/* The line began in an earlier datagram. */
			prev = dp_mc_held_ascii(s->held[pt->line_at], &plen);
			head = plen - pt->line_off;
			take = nl != NULL ? (uint32_t)(nl - a) + 1 : n;
			/* Reply lines span at most two datagrams. */
			if (nl == NULL || head + take > sizeof(buf))
				return false;
			memcpy(buf, prev + pt->line_off, head);
			memcpy(buf + head, a, take);
			pt->line_at = -1;
			dp_mc_part_line(pt, buf, head + take);
			pos = take;
			continue;
		}
		if (nl == NULL) {
			if (n - pos > sizeof(buf))
				return false;
			pt->line_at = (int16_t)hi;
			pt->line_off = (uint16_t)pos;
			return true;
		}
		take = (uint32_t)(nl - (a + pos)) + 1;
		dp_mc_part_line(pt, a + pos, take);
		pos += take;
	}
	return true;
}

/* Cuts the "END\r\n" that ends a part's datagrams (it may straddle two),
 * when they end with one. */
static void
dp_mc_cut_end(struct rte_mbuf **d, uint32_t n)
{
	uint8_t tail[DP_MC_END_LEN];
	struct rte_ipv4_hdr *ip;
	uint32_t need = DP_MC_END_LEN, i, ihl, plen, take;
	uint8_t *pl;

	for (i = n; i-- > 0 && need > 0;) {
		pl = dp_mc_payload(d[i], &ip, &ihl, &plen);
		take = RTE_MIN(plen - DP_MC_UDP_HDR_LEN, need);
		memcpy(tail + need - take, pl + plen - take, take);
		need -= take;
	}
	if (need != 0 || memcmp(tail, DP_MC_END, DP_MC_END_LEN) != 0)
		return;
	need = DP_MC_END_LEN;
	for (i = n; i-- > 0 && need > 0;) {
		pl = dp_mc_payload(d[i], &ip, &ihl, &plen);
		take = RTE_MIN(plen - DP_MC_UDP_HDR_LEN, need);
		dp_mc_fix(d[i], ip, ihl, plen - take);
		need -= take;
	}
}

/* Sends datagrams as one message: renumbered 0..n-1 of n, the switch's
 * own frames (no hairpin check). Datagrams left without text (a cut END)
 * are dropped first. */
static void
dp_mc_send_message(struct dp_core *dc, uint16_t req_id,
		struct rte_mbuf **d, uint32_t n, uint64_t now)
{
	struct dp_mc_udp_hdr h = { .req_id = req_id };
	struct rte_ipv4_hdr *ip;
	uint32_t i, k = 0, ihl, plen;
	uint8_t *pl;

	for (i = 0; i < n; i++) {
		dp_mc_payload(d[i], &ip, &ihl, &plen);
		if (plen == DP_MC_UDP_HDR_LEN && n > 1)
			rte_pktmbuf_free(d[i]);
		else
			d[k++] = d[i];
	}
	h.total = (uint16_t)k;
	for (i = 0; i < k; i++) {
		h.seq = (uint16_t)i;
		pl = dp_mc_payload(d[i], &ip, &ihl, &plen);
		dp_mc_write_hdr(pl, &h);
		dp_mc_fix(d[i], ip, ihl, plen);
		dp_forward(dc, DP_FROM_SWITCH, d[i], now);
	}
}

/* Every part has answered: the combined reply goes to the client. Every
 * part at END: their values, one END. flush_all, every part OK: one OK.
 * Otherwise the first part that said something else, alone. */
static void
dp_mc_split_emit(struct dp_core *dc, struct dp_mc_split *s, uint64_t now)
{
	struct rte_mbuf *out[DP_MC_SPLIT_MAX_DGRAMS];
	uint8_t want = s->flush ? DP_MC_PART_OK : DP_MC_PART_END, p, pick;
	uint32_t n = 0, first, i, j;

	for (pick = 0; pick < s->nparts; pick++)
		if (s->parts[pick].end != want)
			break;
	if (pick == s->nparts && !s->flush) {
		for (p = 0; p < s->nparts; p++) {
			first = n;
			n += dp_mc_part_frames(s, p, out + n);
			if (p + 1 < s->nparts)
				dp_mc_cut_end(out + first, n - first);
		}
	} else {
		n = dp_mc_part_frames(s, pick == s->nparts ? 0 : pick, out);
	}
	for (i = 0; i < s->nheld; i++) {
		bool sent = false;

		for (j = 0; j < n; j++)
			sent |= s->held[i] == out[j];
		if (!sent)
			rte_pktmbuf_free(s->held[i]);
	}
	dc->mc.held -= s->nheld;
	s->nheld = 0;
	dp_mc_send_message(dc, s->req_id, out, n, now);
}

/* Answers a split in the reply datagram m (addressed to the client
 * already) and drops the rest of its answers as they come. */
static enum dp_mc_verdict
dp_mc_split_abort(struct dp_core *dc, struct dp_mc_split *s,
		struct dp_mc_pkt *k, const char *line, uint64_t now)
{
	struct dp_mc_udp_hdr h = { .req_id = s->req_id, .seq = 0, .total = 1 };
	uint32_t n;

	dp_mc_split_drop(&dc->mc, s);	/* the entry still names it */
	s->aborted = true;
	dp_mc_write_hdr(k->pl, &h);
	n = dp_mc_build_line(k->pl + DP_MC_UDP_HDR_LEN,
			k->plen - DP_MC_UDP_HDR_LEN, line);
	if (n == 0) {
		rte_pktmbuf_free(k->m);
		return DP_MC_DONE;
	}
	k->ip->fragment_offset = 0;
	dp_mc_fix(k->m, k->ip, k->ihl, DP_MC_UDP_HDR_LEN + n);
	dp_forward(dc, DP_FROM_SWITCH, k->m, now);
	return DP_MC_DONE;
}

/* A reply datagram of a split part. */
static enum dp_mc_verdict
dp_mc_gather(struct dp_core *dc, struct dp_mc_pkt *k, struct dp_mc_flow *f,
		const struct dp_mc_udp_hdr *h, uint64_t now)
{
	struct dp_mc_state *mc = &dc->mc;
	struct dp_mc_split *s = &mc->splits[f->split];
	struct dp_mc_pool_counters *pc = &mc->pool_stats[s->pool_id];
	struct dp_mc_part *pt = NULL;
	uint8_t p;

	if (s->aborted) {
		rte_pktmbuf_free(k->m);
		return DP_MC_DONE;
	}
	for (p = 0; p < s->nparts; p++)
		if (rte_is_same_ether_addr(&s->parts[p].mac, &k->eth->src_addr)) {
			pt = &s->parts[p];
			break;
		}
	if (pt == NULL || pt->end != DP_MC_PART_OPEN) {
		/* Not from a part's server, or after its answer ended. */
		pc->orphans++;
		rte_pktmbuf_free(k->m);
		return DP_MC_DONE;
	}
	if (h->total == 0 || h->seq != pt->msg_next ||
			(pt->msg_next != 0 && h->total != pt->msg_total) ||
			k->first_frag) {
		pc->split_bad_reply++;
		return dp_mc_split_abort(dc, s, k, DP_MC_SPLIT_BAD, now);
	}
	if (s->nheld == DP_MC_SPLIT_MAX_DGRAMS || mc->held >= DP_MC_MAX_HELD) {
		pc->split_too_large++;
		return dp_mc_split_abort(dc, s, k, DP_MC_SPLIT_TOO_LARGE, now);
	}
	pt->msg_total = h->total;
	pt->msg_next = h->seq + 1 == h->total ? 0 : h->seq + 1;
	s->held[s->nheld] = k->m;
	s->held_part[s->nheld] = p;
	s->nheld++;
	mc->held++;
	if (!dp_mc_part_scan(s, pt, s->nheld - 1)) {
		/* A line longer than any reply line: the datagram carries
		 * the answer instead of being held. */
		s->nheld--;
		mc->held--;
		pc->split_bad_reply++;
		return dp_mc_split_abort(dc, s, k, DP_MC_SPLIT_BAD, now);
	}
	if (pt->end == DP_MC_PART_OPEN || pt->msg_next != 0)
		return DP_MC_DONE;
	if (++s->ndone == s->nparts) {
		dp_mc_split_emit(dc, s, now);
		dp_mc_flow_remove(mc->reqs, f);
		dp_mc_split_put(mc, s);
	}
	return DP_MC_DONE;
}

/* ---- requests ---------------------------------------------------------- */

/* A later datagram (seq > 0) of a multi-datagram request: to the server
 * its first went to. */
static enum dp_mc_verdict
dp_mc_follower(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt *k, uint64_t ticket, uint64_t now)
{
	struct dp_mc_state *mc = &dc->mc;
	struct dp_mc_flow *f = dp_mc_flow_lookup(mc->reqs, ticket, now);
	const struct dp_mc_server *s = NULL;
	uint16_t i;

	if (f != NULL && (f->flags & DP_MC_FLOW_SERVER) &&
			f->pool_id == pool->id)
		for (i = 0; i < pool->nservers; i++)
			if (pool->servers[i].id == f->server_id) {
				s = &pool->servers[i];
				break;
			}
	if (s == NULL) {
		/* No first datagram seen, or its server left the pool. */
		mc->pool_stats[pool->id].orphans++;
		rte_pktmbuf_free(k->m);
		return DP_MC_DONE;
	}
	mc->pool_stats[pool->id].multi_datagram++;
	return dp_mc_send(dc, pool, k, s, now);
}

/* A key's server index, or -1 when no server is live. */
static inline int
dp_mc_route(const struct dp_mc_pool *pool, const uint8_t *ascii,
		const struct dp_mc_key *key)
{
	uint32_t i = tsw_ring_lookup(pool->ring, ascii + key->off, key->len);

	return i < pool->nservers ? (int)i : -1;
}

/* flush_all: the cache is emptied here; the request goes to every live
 * server, and their answers are combined (unless noreply). */
static enum dp_mc_verdict
dp_mc_flush(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt *k, const struct dp_mc_req *req,
		const struct dp_mc_udp_hdr *h, uint64_t ticket, uint64_t now)
{
	uint8_t srv[DP_MC_MAX_SERVERS], n = 0;
	uint16_t i;

	dc->mc.pool_stats[pool->id].flushes++;
	if (dc->mc.cache != NULL)
		dp_mc_cache_flush(dc->mc.cache);
	for (i = 0; i < pool->nservers; i++)
		if (pool->servers[i].live)
			srv[n++] = (uint8_t)i;
	if (n == 1 || k->first_frag || h->total != 1)
		return dp_mc_send(dc, pool, k, &pool->servers[srv[0]], now);
	return dp_mc_split_send(dc, pool, k, req, h, ticket, n, srv, NULL,
			!req->noreply, now);
}

static __rte_always_inline int
dp_mc_locate(struct rte_mbuf *m, uint16_t in_idx, struct dp_mc_pkt *k);

/* The frame k was made from (dp_mc_locate), made again: the common path
 * keeps only m alive across its calls, and the rare one rebuilds k. */
static __rte_noinline enum dp_mc_verdict
dp_mc_answer_m(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct rte_mbuf *m, uint16_t in_idx, uint16_t req_id,
		const char *line)
{
	struct dp_mc_pkt k = { .m = m };

	(void)dp_mc_locate(m, in_idx, &k);
	return dp_mc_answer(dc, pool, &k, req_id, line);
}

static __rte_noinline void
dp_mc_send_frag_m(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct rte_mbuf *m, uint16_t in_idx,
		const struct dp_mc_server *s, uint64_t now)
{
	struct dp_mc_pkt k = { .m = m };

	(void)dp_mc_locate(m, in_idx, &k);
	dp_mc_send_frag(dc, pool, k, s, now);
}

/*
 * A get of one key, parsed, to a pool with a live server: served from
 * the cache, or sent to the key's server.
 *
 * A live server exists (first_live), so the ring has one for every key
 * (the pool's ring has no overrides), and the key's server is only
 * looked up when the cache does not answer. A hit counts for the server
 * the slot's fill was asked of, its tag: a pool change flushes the cache
 * (dp_mc_ctl.c), so that is the key's server under the pool the hit is
 * served in.
 *
 * k is never handed out of line (out-of-line calls get m and rebuild k),
 * so the compiler keeps it in registers, and after the ring lookup only
 * what the common path needs is alive.
 */
static __rte_always_inline enum dp_mc_verdict
dp_mc_get1(struct dp_core *dc, const struct dp_mc_pool *pool,
		const struct dp_mc_pkt *k, uint16_t req_id, uint16_t total,
		const uint8_t *key, uint8_t len, uint64_t now)
{
	struct dp_mc_state *mc = &dc->mc;
	struct rte_ether_hdr *eth = k->eth;
	struct rte_mbuf *m = k->m;
	const struct dp_mc_server *s;
	bool first_frag = k->first_frag;
	uint16_t in_idx = k->in_idx;
	uint64_t hash, ticket;
	uint32_t est, srv;

	if (!pool->cache || mc->cache == NULL || first_frag || total != 1) {
		/* Not for the cache: the key's server, and nothing else
		 * alive across the lookup. */
		srv = tsw_ring_lookup(pool->ring, key, len);
		if (unlikely(srv >= pool->nservers)) {
			mc->pool_stats[pool->id].no_server++;
			return dp_mc_answer_m(dc, pool, m, in_idx, req_id,
					DP_MC_NO_SERVER);
		}
		s = &pool->servers[srv];
		mc->pool_stats[pool->id].get_keys++;
		mc->pool_stats[pool->id].misses++;
		mc->server_stats[s->id].misses++;
		dp_mc_set_dst(eth, s->mac.addr_bytes);
		mc->server_stats[s->id].requests++;
		if (unlikely(first_frag))
			dp_mc_send_frag_m(dc, pool, m, in_idx, s, now);
		return DP_MC_SWITCH;
	}
	{
		struct dp_mc_pkt c = *k;
		struct dp_mc_hit hit;

		hash = dp_mc_cache_hash(pool->id, key, len);
		est = dp_mc_cache_count(mc->cache, hash);
		if (dp_mc_cache_lookup(mc->cache, hash, key, len, now, &hit) &&
				likely(dp_mc_serve_hit(dc, pool, &c, req_id,
						&hit))) {
			mc->pool_stats[pool->id].get_keys++;
			mc->pool_stats[pool->id].hits++;
			mc->server_stats[hit.tag].hits++;
			return DP_MC_DONE;
		}
		ticket = dp_mc_ticket(rte_be_to_cpu_32(k->ip->src_addr),
				rte_be_to_cpu_16(k->udp->src_port), req_id);
	}
	srv = tsw_ring_lookup(pool->ring, key, len);
	if (unlikely(srv >= pool->nservers)) {
		mc->pool_stats[pool->id].no_server++;
		return dp_mc_answer_m(dc, pool, m, in_idx, req_id,
				DP_MC_NO_SERVER);
	}
	s = &pool->servers[srv];
	mc->pool_stats[pool->id].get_keys++;
	dp_mc_cache_read_miss_tag(mc->cache, hash, key, len, est, ticket, now,
			s->id);
	mc->pool_stats[pool->id].misses++;
	mc->server_stats[s->id].misses++;
	dp_mc_set_dst(eth, s->mac.addr_bytes);
	mc->server_stats[s->id].requests++;
	return DP_MC_SWITCH;
}

static __rte_noinline enum dp_mc_verdict
dp_mc_request(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt *k, uint64_t now);

/* The general request path with a copy of k (see dp_mc_get1). */
static __rte_noinline enum dp_mc_verdict
dp_mc_request_v(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt k, uint64_t now)
{
	return dp_mc_request(dc, pool, &k, now);
}

/*
 * The common request, without the general parser: one datagram (seq 0)
 * whose line is "get KEY\r\n" (dp_mc_get1_len: what dp_mc_parse_req
 * makes of it), to a pool with a live server; it is counted as
 * dp_mc_request would. Anything else goes to dp_mc_request, with nothing
 * counted yet.
 */
static __rte_always_inline enum dp_mc_verdict
dp_mc_request_fast(struct dp_core *dc, const struct dp_mc_pool *pool,
		const struct dp_mc_pkt *k, uint64_t now)
{
	struct dp_mc_state *mc = &dc->mc;
	struct dp_mc_udp_hdr h;
	uint32_t n;

	if (likely(dp_mc_read_hdr(k->pl, k->plen, &h) && h.seq == 0 &&
			pool->first_live >= 0)) {
		const uint8_t *ascii = k->pl + DP_MC_UDP_HDR_LEN;

		/* Reading on to the end of the buffer is allowed. */
		n = dp_mc_get1_len_room(ascii, k->plen - DP_MC_UDP_HDR_LEN,
				(uint32_t)((const uint8_t *)k->m->buf_addr +
					k->m->buf_len - ascii));
		if (likely(n != 0)) {
			mc->pool_stats[pool->id].requests++;
			mc->parse_results[DP_MC_OK]++;
			return dp_mc_get1(dc, pool, k, h.req_id, h.total,
					k->pl + DP_MC_UDP_HDR_LEN + 4,
					(uint8_t)n, now);
		}
	}
	return dp_mc_request_v(dc, pool, *k, now);
}

static __rte_noinline enum dp_mc_verdict
dp_mc_request(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt *k, uint64_t now)
{
	struct dp_mc_state *mc = &dc->mc;
	struct dp_mc_pool_counters *pc = &mc->pool_stats[pool->id];
	const struct dp_mc_server *s;
	struct dp_mc_udp_hdr h;
	struct dp_mc_req req;
	enum dp_mc_result r;
	const uint8_t *ascii;
	uint64_t ticket;
	uint32_t stripe = 0;
	int srv0;
	bool cached;
	uint8_t i;

	pc->requests++;
	if (unlikely(!dp_mc_read_hdr(k->pl, k->plen, &h))) {
		/* No request id to answer with. */
		mc->parse_results[DP_MC_SHORT]++;
		pc->malformed++;
		rte_pktmbuf_free(k->m);
		return DP_MC_DONE;
	}
	ascii = k->pl + DP_MC_UDP_HDR_LEN;
	ticket = dp_mc_ticket(rte_be_to_cpu_32(k->ip->src_addr),
			rte_be_to_cpu_16(k->udp->src_port), h.req_id);
	if (h.seq != 0)
		return dp_mc_follower(dc, pool, k, ticket, now);

	r = dp_mc_parse_req(ascii, k->plen - DP_MC_UDP_HDR_LEN, &req);
	mc->parse_results[r]++;
	if (unlikely(r != DP_MC_OK && r != DP_MC_PARTIAL)) {
		pc->malformed++;
		return dp_mc_answer(dc, pool, k, h.req_id, dp_mc_refusal[r] ?
				dp_mc_refusal[r] : "CLIENT_ERROR\r\n");
	}
	if (unlikely(pool->first_live < 0)) {
		pc->no_server++;
		return dp_mc_answer(dc, pool, k, h.req_id, DP_MC_NO_SERVER);
	}
	if (unlikely(req.kind == DP_MC_KIND_FLUSH))
		return dp_mc_flush(dc, pool, k, &req, &h, ticket, now);
	if (unlikely(req.kind == DP_MC_KIND_NOKEY || req.nkeys == 0))
		return dp_mc_send(dc, pool, k, &pool->servers[pool->first_live],
				now);
	cached = pool->cache && mc->cache != NULL;

	if (likely(req.op == DP_MC_OP_GET && req.nkeys == 1))
		return dp_mc_get1(dc, pool, k, h.req_id, h.total,
				ascii + req.keys[0].off, req.keys[0].len, now);

	srv0 = dp_mc_route(pool, ascii, &req.keys[0]);
	if (unlikely(srv0 < 0)) {
		pc->no_server++;
		return dp_mc_answer(dc, pool, k, h.req_id, DP_MC_NO_SERVER);
	}
	s = &pool->servers[srv0];

	if (req.nkeys > 1) {
		/* get, gets, gat, gats with several keys: split when they
		 * live on several servers. */
		uint8_t part_of[DP_MC_MAX_SERVERS], srv[DP_MC_MAX_SERVERS];
		uint8_t idx[DP_MC_MAX_KEYS], nparts = 0;
		uint32_t mask[DP_MC_MAX_SERVERS];

		memset(part_of, 0xff, sizeof(part_of));
		for (i = 0; i < req.nkeys; i++) {
			int si = i == 0 ? srv0 : dp_mc_route(pool, ascii,
					&req.keys[i]);

			if (unlikely(si < 0)) {
				pc->no_server++;
				return dp_mc_answer(dc, pool, k, h.req_id,
						DP_MC_NO_SERVER);
			}
			idx[i] = (uint8_t)si;
			if (part_of[si] == 0xff) {
				part_of[si] = nparts;
				srv[nparts] = (uint8_t)si;
				mask[nparts++] = 0;
			}
			mask[part_of[si]] |= UINT32_C(1) << i;
		}
		if (req.kind == DP_MC_KIND_READ) {
			if (req.op == DP_MC_OP_GET || req.op == DP_MC_OP_GETS)
				pc->get_keys += req.nkeys;
			if (cached && req.op == DP_MC_OP_GET)
				for (i = 0; i < req.nkeys; i++)
					dp_mc_cache_count(mc->cache,
						dp_mc_cache_hash(pool->id,
							ascii + req.keys[i].off,
							req.keys[i].len));
		} else {
			/* gat/gats change expiry: writes for the cache, held
			 * until the write timeout (no stripe is recorded). */
			pc->writes++;
			for (i = 0; cached && i < req.nkeys; i++) {
				bool inv = false;

				dp_mc_cache_write_begin(mc->cache,
					dp_mc_cache_hash(pool->id,
						ascii + req.keys[i].off,
						req.keys[i].len), now, &inv);
				if (inv) {
					pc->invalidations++;
					mc->server_stats[pool->servers[idx[i]]
						.id].invalidations++;
				}
			}
		}
		if (nparts > 1 && !k->first_frag && h.total == 1)
			return dp_mc_split_send(dc, pool, k, &req, &h, ticket,
					nparts, srv, mask, !req.noreply, now);
		return dp_mc_send(dc, pool, k, s, now);
	}

	/* One key: a write, or a read the cache does not serve (gets, mg). */
	if (req.kind == DP_MC_KIND_WRITE) {
		pc->writes++;
		if (cached) {
			bool inv = false;

			stripe = dp_mc_cache_write_begin(mc->cache,
					dp_mc_cache_hash(pool->id,
						ascii + req.keys[0].off,
						req.keys[0].len), now, &inv);
			if (inv) {
				pc->invalidations++;
				mc->server_stats[s->id].invalidations++;
			}
		}
	} else if (req.op == DP_MC_OP_GETS) {
		pc->get_keys++;
	}
	cached = cached && req.kind == DP_MC_KIND_WRITE && !req.noreply;
	if (cached || h.total > 1) {
		struct dp_mc_flow *f;
		bool evicted;

		f = dp_mc_flow_insert(mc->reqs, ticket, now + mc->req_timeout_tsc,
				&evicted);
		if (cached) {
			f->flags |= DP_MC_FLOW_WRITE;
			f->stripe = stripe;
		}
		if (h.total > 1) {
			f->flags |= DP_MC_FLOW_SERVER;
			memcpy(f->server_mac, s->mac.addr_bytes,
					RTE_ETHER_ADDR_LEN);
			f->server_ip = s->ip;
			f->server_port = s->port;
			f->server_id = s->id;
		}
		f->pool_id = pool->id;
	}
	return dp_mc_send(dc, pool, k, s, now);
}

/* A later IP fragment to a VIP: where its first fragment went. */
static __rte_noinline enum dp_mc_verdict
dp_mc_fragment(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt *k, uint64_t now)
{
	struct dp_mc_state *mc = &dc->mc;
	struct dp_mc_flow *f = dp_mc_flow_lookup(mc->frags, dp_mc_frag_key(
			rte_be_to_cpu_32(k->ip->src_addr),
			rte_be_to_cpu_16(k->ip->packet_id)), now);

	if (f == NULL) {
		mc->pool_stats[pool->id].orphans++;
		rte_pktmbuf_free(k->m);
		return DP_MC_DONE;
	}
	mc->pool_stats[f->pool_id].fragments++;
	dp_mc_set_dst(k->eth, f->server_mac);
	return DP_MC_SWITCH;
}

/* ---- replies ----------------------------------------------------------- */

/* Fills the cache from a one-datagram reply holding exactly one VALUE. */
static void
dp_mc_fill(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt *k, uint64_t ticket, uint64_t now)
{
	struct dp_mc_state *mc = &dc->mc;
	struct dp_mc_pool_counters *pc = &mc->pool_stats[pool->id];
	const uint8_t *p = k->pl + DP_MC_UDP_HDR_LEN;
	uint32_t len = k->plen - DP_MC_UDP_HDR_LEN, end;
	struct dp_mc_value v, next;
	enum dp_mc_fill_result res;

	/* memcached 1.6 may send the END as a message of its own. */
	if (dp_mc_reply_kind(p, len) != DP_MC_REPLY_VALUES ||
			dp_mc_parse_value(p, len, 0, &v, &end) != 1 ||
			(v.next_off != len &&
			 dp_mc_parse_value(p, len, v.next_off, &next, &end) != 0))
		return;
	/* Served later from a request's buffer: the reply must fit one. */
	if (dp_mc_value_reply_len(v.key_len, v.flags, v.data_len) >
			dp_mc_turn_room(k->m)) {
		res = DP_MC_FILL_TOO_BIG;
	} else {
		res = dp_mc_cache_fill(mc->cache,
				dp_mc_cache_hash(pool->id, p + v.key_off,
					v.key_len),
				p + v.key_off, v.key_len, ticket, v.flags,
				p + v.data_off, v.data_len, now);
	}
	mc->fill_results[res]++;
	if (res == DP_MC_FILL_FILLED)
		pc->fills++;
	else if (res != DP_MC_FILL_NOT_PENDING)
		pc->fill_rejected++;
}

static __rte_noinline enum dp_mc_verdict
dp_mc_reply(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt *k, uint64_t now)
{
	struct dp_mc_state *mc = &dc->mc;
	struct dp_mc_udp_hdr h;
	struct dp_mc_flow *f;
	uint64_t ticket;

	mc->pool_stats[pool->id].replies++;
	if (unlikely(!dp_mc_read_hdr(k->pl, k->plen, &h)))
		return DP_MC_SWITCH;
	if (unlikely(h.total == 0 && k->plen == DP_MC_UDP_HDR_LEN)) {
		/* memcached 1.6 sends an empty response object for some
		 * misses as a datagram of "0 of 0": it carries nothing, and
		 * clients (rightly) reject its header. */
		rte_pktmbuf_free(k->m);
		return DP_MC_DONE;
	}
	ticket = dp_mc_ticket(rte_be_to_cpu_32(k->ip->dst_addr),
			rte_be_to_cpu_16(k->udp->dst_port), h.req_id);
	f = dp_mc_flow_lookup(mc->reqs, ticket, now);
	if (f != NULL) {
		if (f->flags & DP_MC_FLOW_SPLIT)
			return dp_mc_gather(dc, k, f, &h, now);
		if (f->flags & DP_MC_FLOW_WRITE) {
			dp_mc_cache_write_end(mc->cache, f->stripe);
			f->flags &= ~DP_MC_FLOW_WRITE;
			/* A multi-datagram request keeps its server until it
			 * expires: its later datagrams may still come. */
			if (!(f->flags & DP_MC_FLOW_SERVER))
				dp_mc_flow_remove(mc->reqs, f);
		}
	}
	if (h.seq == 0 && h.total == 1 && pool->cache && mc->cache != NULL &&
			!k->first_frag)
		dp_mc_fill(dc, pool, k, ticket, now);
	return DP_MC_SWITCH;
}

/* ---- the hook ---------------------------------------------------------- */

/* An ARP request for a VIP becomes its reply, out of the ingress port. */
static __rte_noinline enum dp_mc_verdict
dp_mc_arp(struct dp_core *dc, uint16_t in_idx, struct rte_mbuf *m,
		struct rte_ether_hdr *eth)
{
	struct dp_mc_state *mc = &dc->mc;
	struct rte_arp_hdr *a = (struct rte_arp_hdr *)(eth + 1);
	const struct dp_mc_pool *pool;
	unsigned int i, hi;

	if (rte_pktmbuf_data_len(m) < DP_MC_ETH_LEN + sizeof(*a) ||
			a->arp_opcode != rte_cpu_to_be_16(RTE_ARP_OP_REQUEST) ||
			a->arp_hardware != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
			a->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
			a->arp_hlen != RTE_ETHER_ADDR_LEN || a->arp_plen != 4)
		return DP_MC_PASS;
	hi = __atomic_load_n(&mc->pool_hi, __ATOMIC_ACQUIRE);
	for (i = 0; i < hi; i++) {
		pool = dp_mc_pool_at(mc, i);
		if (pool != NULL && pool->vip_be == a->arp_data.arp_tip)
			break;
	}
	if (i == hi)
		return DP_MC_PASS;
	a->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
	a->arp_data.arp_tha = a->arp_data.arp_sha;
	a->arp_data.arp_tip = a->arp_data.arp_sip;
	a->arp_data.arp_sha = pool->vmac;
	a->arp_data.arp_sip = pool->vip_be;
	rte_ether_addr_copy(&eth->src_addr, &eth->dst_addr);
	rte_ether_addr_copy(&pool->vmac, &eth->src_addr);
	mc->pool_stats[pool->id].arp_replies++;
	dp_tx_enqueue(dp_mc_txport(dc, in_idx), m);
	return DP_MC_DONE;
}

/* The reply and fragment paths with a copy of k (see dp_mc_get1). */
static __rte_noinline enum dp_mc_verdict
dp_mc_reply_v(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt k, uint64_t now)
{
	return dp_mc_reply(dc, pool, &k, now);
}

static __rte_noinline enum dp_mc_verdict
dp_mc_fragment_v(struct dp_core *dc, const struct dp_mc_pool *pool,
		struct dp_mc_pkt k, uint64_t now)
{
	return dp_mc_fragment(dc, pool, &k, now);
}

/*
 * Where the path finds things in a frame that is not ARP: 0, not IPv4 UDP
 * as the path takes it (the switch's to switch or count); 1, an IPv4 UDP
 * datagram (k filled); 2, a later IP fragment (k's m, eth, ip, ihl and
 * in_idx filled: no UDP header). The same frame always reads the same.
 */
static __rte_always_inline int
dp_mc_locate(struct rte_mbuf *m, uint16_t in_idx, struct dp_mc_pkt *k)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	/* Headers must sit in the first segment; lengths count all. */
	uint32_t seg = rte_pktmbuf_data_len(m) - DP_MC_ETH_LEN;
	uint32_t len = rte_pktmbuf_pkt_len(m) - DP_MC_ETH_LEN;
	uint32_t ihl, tot, ulen, plen;
	uint16_t frag;

	/* The common frame first: a 20-byte IPv4 header, UDP, not a
	 * fragment. The checks below come to exactly these for it. */
	if (likely(seg >= DP_MC_IP_LEN + DP_MC_UDP_LEN &&
			ip->version_ihl == RTE_IPV4_VHL_DEF &&
			ip->next_proto_id == IPPROTO_UDP &&
			(ip->fragment_offset & rte_cpu_to_be_16(
				RTE_IPV4_HDR_OFFSET_MASK | RTE_IPV4_HDR_MF_FLAG))
				== 0)) {
		struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(ip + 1);

		tot = rte_be_to_cpu_16(ip->total_length);
		ulen = rte_be_to_cpu_16(udp->dgram_len);
		if (unlikely(tot < DP_MC_IP_LEN + DP_MC_UDP_LEN || tot > len ||
				ulen < DP_MC_UDP_LEN ||
				ulen + DP_MC_IP_LEN > tot))
			return 0;
		k->m = m;
		k->eth = eth;
		k->ip = ip;
		k->ihl = DP_MC_IP_LEN;
		k->in_idx = in_idx;
		k->udp = udp;
		k->first_frag = false;
		k->pl = (uint8_t *)(udp + 1);
		k->plen = RTE_MIN(ulen - DP_MC_UDP_LEN,
				seg - DP_MC_IP_LEN - DP_MC_UDP_LEN);
		return 1;
	}
	/* The checks of dp_classify_steer (RFC 791, RFC 1812 5.2.2); a
	 * malformed frame is the switch's to count. */
	if (unlikely(seg < DP_MC_IP_LEN || len < DP_MC_IP_LEN))
		return 0;
	ihl = (uint32_t)(ip->version_ihl & 0x0f) * 4;
	tot = rte_be_to_cpu_16(ip->total_length);
	if (unlikely((ip->version_ihl >> 4) != 4 || ihl < DP_MC_IP_LEN ||
			tot < ihl || tot > len))
		return 0;
	if (ip->next_proto_id != IPPROTO_UDP)
		return 0;
	k->m = m;
	k->eth = eth;
	k->ip = ip;
	k->ihl = ihl;
	k->in_idx = in_idx;
	frag = rte_be_to_cpu_16(ip->fragment_offset);
	if (unlikely(frag & RTE_IPV4_HDR_OFFSET_MASK))
		return 2;	/* no UDP header to look at */
	if (unlikely(tot < ihl + DP_MC_UDP_LEN || seg < ihl + DP_MC_UDP_LEN))
		return 0;
	k->udp = (struct rte_udp_hdr *)((uint8_t *)ip + ihl);
	k->first_frag = (frag & RTE_IPV4_HDR_MF_FLAG) != 0;
	ulen = rte_be_to_cpu_16(k->udp->dgram_len);
	if (unlikely(ulen < DP_MC_UDP_LEN))
		return 0;
	plen = tot - ihl - DP_MC_UDP_LEN;	/* in this fragment */
	if (!k->first_frag) {
		if (unlikely(ulen - DP_MC_UDP_LEN > plen))
			return 0;
		plen = ulen - DP_MC_UDP_LEN;
	}
	k->pl = (uint8_t *)(k->udp + 1);
	k->plen = RTE_MIN(plen, seg - ihl - DP_MC_UDP_LEN);
	return 1;
}

enum dp_mc_verdict
dp_mc_frame(struct dp_core *dc, uint16_t in_idx, struct rte_mbuf *m,
		uint64_t now)
{
	struct dp_mc_state *mc = &dc->mc;
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct dp_mc_pool *pool;
	struct dp_mc_pkt k;
	unsigned int i, hi;
	int where;

	if (eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) {
		if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP))
			return dp_mc_arp(dc, in_idx, m, eth);
		return DP_MC_PASS;
	}
	where = dp_mc_locate(m, in_idx, &k);
	if (where == 0)
		return DP_MC_PASS;
	hi = __atomic_load_n(&mc->pool_hi, __ATOMIC_ACQUIRE);
	if (unlikely(where == 2)) {
		/* A later fragment: by its destination address alone. */
		for (i = 0; i < hi; i++) {
			pool = dp_mc_pool_at(mc, i);
			if (pool != NULL && k.ip->dst_addr == pool->vip_be)
				return dp_mc_fragment_v(dc, pool, k, now);
		}
		return DP_MC_PASS;
	}
	for (i = 0; i < hi; i++) {
		pool = dp_mc_pool_at(mc, i);
		if (pool == NULL)
			continue;
		if (k.ip->dst_addr == pool->vip_be &&
				k.udp->dst_port == pool->vport_be)
			return dp_mc_request_fast(dc, pool, &k, now);
		if (k.ip->src_addr == pool->vip_be &&
				k.udp->src_port == pool->vport_be)
			return dp_mc_reply_v(dc, pool, k, now);
	}
	return DP_MC_PASS;
}

/*
 * Whether dp_mc_frame would take the frame: ARP for a VIP, IPv4 UDP to or
 * from a VIP:PORT, a later IP fragment to a VIP (by the same reading of
 * the frame, dp_mc_locate). Called by workers other than worker 0, which
 * hand such frames over; reads the published pools only, which the
 * control thread frees after worker 0 counted two rounds, and worker 0
 * counts a round only after every other worker finished one (dp.h).
 */
bool
dp_mc_claims(const struct dp_core *dc, struct rte_mbuf *m)
{
	const struct dp_mc_state *mc = &dc->mc;
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	const struct dp_mc_pool *pool;
	struct dp_mc_pkt k;
	unsigned int i, hi;
	uint32_t tip;
	int where;

	hi = __atomic_load_n(&mc->pool_hi, __ATOMIC_ACQUIRE);
	if (eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) {
		const struct rte_arp_hdr *a = (const struct rte_arp_hdr *)(eth + 1);

		if (eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP) ||
				rte_pktmbuf_data_len(m) < DP_MC_ETH_LEN + sizeof(*a))
			return false;
		tip = a->arp_data.arp_tip;
		for (i = 0; i < hi; i++) {
			pool = dp_mc_pool_at(mc, i);
			if (pool != NULL && pool->vip_be == tip)
				return true;
		}
		return false;
	}
	where = dp_mc_locate(m, 0, &k);
	if (where == 0)
		return false;
	for (i = 0; i < hi; i++) {
		pool = dp_mc_pool_at(mc, i);
		if (pool == NULL)
			continue;
		if (where == 2) {
			if (k.ip->dst_addr == pool->vip_be)
				return true;
			continue;
		}
		if ((k.ip->dst_addr == pool->vip_be &&
				k.udp->dst_port == pool->vport_be) ||
				(k.ip->src_addr == pool->vip_be &&
				k.udp->src_port == pool->vport_be))
			return true;
	}
	return false;
}

void
dp_mc_round(struct dp_core *dc, uint64_t now, bool count)
{
	struct dp_mc_state *mc = &dc->mc;

	if (mc->reqs != NULL && dp_mc_flow_count(mc->reqs) != 0)
		dp_mc_flow_reap(mc->reqs, now, DP_MC_REAP_BUDGET);
	if (mc->frags != NULL && dp_mc_flow_count(mc->frags) != 0)
		dp_mc_flow_reap(mc->frags, now, DP_MC_REAP_BUDGET);
	if (!count)
		return;
	/* Sequentially consistent: the control thread frees a replaced pool
	 * two rounds after it published the new one, which needs every pool
	 * load of the later rounds ordered after this store (dp_mc_ctl.c). */
	__atomic_store_n(&mc->rounds, mc->rounds + 1, __ATOMIC_SEQ_CST);
}

/* ---- split state --------------------------------------------------------- */

int
dp_mc_splits_create(struct dp_core *dc)
{
	struct dp_mc_state *mc = &dc->mc;
	uint32_t i;

	mc->splits = calloc(DP_MC_MAX_SPLITS, sizeof(*mc->splits));
	mc->split_free = calloc(DP_MC_MAX_SPLITS, sizeof(*mc->split_free));
	if (mc->splits == NULL || mc->split_free == NULL) {
		dp_mc_splits_free(dc);
		return -ENOMEM;
	}
	for (i = 0; i < DP_MC_MAX_SPLITS; i++)
		mc->split_free[i] = DP_MC_MAX_SPLITS - 1 - i;
	mc->nsplit_free = DP_MC_MAX_SPLITS;
	return 0;
}

void
dp_mc_splits_free(struct dp_core *dc)
{
	free(dc->mc.splits);
	free(dc->mc.split_free);
	dc->mc.splits = NULL;
	dc->mc.split_free = NULL;
	dc->mc.nsplit_free = 0;
}
