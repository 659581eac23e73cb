/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The steering flow table (dp_flow.c) without DPDK: a flow keeps the
 * decision taken on its SYN whatever steering says later, unknown flows go
 * direct, retransmitted SYNs meet the same peer, idle and closing flows
 * die, and full buckets evict the least valuable flow. Times are plain
 * numbers standing in for TSC values.
 */
#include <stdlib.h>
#include <string.h>

#include "dp_flow.h"
#include "tsw_test.h"

#define IDLE 1000
#define CLOSING 100
#define T0 1000000
#define SEED UINT64_C(0x1234567887654321)

#define SYN DP_TCP_SYN
#define ACK DP_TCP_ACK
#define FIN (DP_TCP_FIN | DP_TCP_ACK)
#define RST DP_TCP_RST

static struct dp_flow_table table;
static struct dp_global_counters c;

static void
reset(void)
{
	dp_flow_init(&table, IDLE, CLOSING, SEED);
	memset(&c, 0, sizeof(c));
}

/* Client 10.0.0.1:sport to 10.0.1.1:9866, as the header holds them. */
static struct dp_flow_key
key(uint16_t sport)
{
	struct dp_flow_key k = {
		.saddr = 0x0a000001, .daddr = 0x0a000101,
		.sport = sport, .dport = 9866,
	};

	return k;
}

static bool
seg(struct dp_flow_key k, uint8_t flags, uint32_t seq, bool on, uint64_t now)
{
	return dp_flow_steer(&table, &k, flags, seq, on, now, &c);
}

static void
test_decision_sticks_to_the_flow(void)
{
	reset();
	/* Steered on its SYN: stays steered with steering off. */
	CHECK(seg(key(1000), SYN, 7, true, T0), "SYN while on steered");
	CHECK(seg(key(1000), ACK, 8, false, T0 + 1), "ACK follows: steered");
	CHECK(seg(key(1000), ACK | 0x08, 8, false, T0 + 2), "data follows");
	/* Direct on its SYN: stays direct with steering on. */
	CHECK(!seg(key(1001), SYN, 9, false, T0), "SYN while off direct");
	CHECK(!seg(key(1001), ACK, 10, true, T0 + 1), "ACK follows: direct");
	CHECK(c.flows_steered == 1 && c.flows_direct == 1,
			"steered %lu direct %lu", (unsigned long)c.flows_steered,
			(unsigned long)c.flows_direct);
	/* A SYN+ACK is not a first segment: looked up like any other. */
	CHECK(!seg(key(1002), SYN | ACK, 1, true, T0), "SYN+ACK unknown");
	CHECK(c.flow_unknown == 1, "unknown %lu", (unsigned long)c.flow_unknown);
	CHECK(dp_flow_count(&table, T0 + 2, NULL) == 2, "two flows");
}

static void
test_unknown_flows_go_direct(void)
{
	struct dp_flow_key back = key(1000);

	reset();
	CHECK(!seg(key(2000), ACK, 1, true, T0), "mid-stream segment direct");
	CHECK(!seg(key(2000), FIN, 1, true, T0), "FIN direct");
	CHECK(c.flow_unknown == 2 && c.flows_steered == 0, "counted unknown");
	CHECK(dp_flow_count(&table, T0, NULL) == 0, "nothing recorded");
	/* The key is directional: the same ports the other way round are
	 * another flow. */
	CHECK(seg(key(1000), SYN, 5, true, T0), "steered");
	back.saddr = key(1000).daddr;
	back.daddr = key(1000).saddr;
	CHECK(!seg(back, ACK, 1, true, T0), "reverse direction unknown");
	back = key(1000);
	back.dport = 9867;
	CHECK(!seg(back, ACK, 1, true, T0), "other server port unknown");
}

static void
test_syn_retransmission_and_reuse(void)
{
	unsigned int steered;

	reset();
	CHECK(seg(key(3000), SYN, 100, true, T0), "first SYN steered");
	/* Retransmitted after steering went off: same peer as the first. */
	CHECK(seg(key(3000), SYN, 100, false, T0 + 50), "retransmission steered");
	CHECK(c.flows_steered == 1 && c.flows_direct == 0, "one decision");
	/* A SYN with another ISN is a new connection on the same tuple. */
	CHECK(!seg(key(3000), SYN, 999, false, T0 + 60), "new ISN decides anew");
	CHECK(c.flows_direct == 1, "counted direct");
	CHECK(!seg(key(3000), ACK, 1000, true, T0 + 61), "new flow direct");
	CHECK(dp_flow_count(&table, T0 + 61, &steered) == 1 && steered == 0,
			"replaced in place");
	CHECK(c.flow_evicted == 0, "reuse is no eviction");
	/* Direct first, retransmitted with steering on: still direct. */
	CHECK(!seg(key(3001), SYN, 5, false, T0), "direct SYN");
	CHECK(!seg(key(3001), SYN, 5, true, T0 + 1), "retransmission direct");
}

static void
test_idle_timeout(void)
{
	reset();
	CHECK(seg(key(4000), SYN, 1, true, T0), "steered");
	CHECK(seg(key(4000), ACK, 2, false, T0 + IDLE - 1), "alive at IDLE-1");
	/* Refreshed: lives IDLE past its last segment. */
	CHECK(seg(key(4000), ACK, 2, false, T0 + 2 * IDLE - 2), "refreshed");
	CHECK(!seg(key(4000), ACK, 2, false, T0 + 3 * IDLE - 2), "dead: direct");
	CHECK(c.flow_unknown == 1, "dead flow counted unknown");
	/* A dead flow's SYN retransmission is a new decision. */
	CHECK(!seg(key(4000), SYN, 1, false, T0 + 4 * IDLE), "new decision");
	CHECK(dp_flow_count(&table, T0 + 4 * IDLE, NULL) == 1, "one flow");
	CHECK(dp_flow_count(&table, T0 + 5 * IDLE, NULL) == 0, "aged out");
}

static void
test_fin_and_rst_close(void)
{
	reset();
	CHECK(seg(key(5000), SYN, 1, true, T0), "steered");
	CHECK(seg(key(5000), ACK, 2, true, T0 + 1), "established");
	CHECK(seg(key(5000), FIN, 2, false, T0 + 2), "FIN steered");
	/* The last ACKs follow the flow while it is closing ... */
	CHECK(seg(key(5000), ACK, 3, false, T0 + 2 + CLOSING - 1), "last ACK");
	/* ... and each one extends it by CLOSING only. */
	CHECK(seg(key(5000), ACK, 3, false, T0 + CLOSING * 2), "ACK again");
	CHECK(!seg(key(5000), ACK, 3, false, T0 + CLOSING * 3 + 1),
			"closed: direct");
	/* An RST closes too; a SYN with the same ISN then decides anew. */
	CHECK(!seg(key(5001), SYN, 9, false, T0), "direct");
	CHECK(!seg(key(5001), RST, 10, true, T0 + 1), "RST direct");
	CHECK(seg(key(5001), SYN, 9, true, T0 + 2), "SYN after RST steered");
	CHECK(c.flows_steered == 2 && c.flows_direct == 1, "decisions");
	/* The closing time is capped at the idle time. */
	dp_flow_init(&table, 10, 100, SEED);
	CHECK(table.closing_tsc == 10, "closing capped %lu",
			(unsigned long)table.closing_tsc);
}

/* n distinct keys whose home bucket is the same (the first one's). */
static void
colliding(struct dp_flow_key *out, unsigned int n)
{
	struct dp_flow_key k = key(1);
	uint32_t want = dp_flow_bucket_of(&table, &k);
	unsigned int i = 1, got = 0;

	while (got < n) {
		k = key((uint16_t)i);
		k.saddr += i >> 16;
		if (dp_flow_bucket_of(&table, &k) == want)
			out[got++] = k;
		i++;
	}
}

static void
test_eviction_order(void)
{
	enum { N = DP_FLOW_PROBE_BUCKETS * DP_FLOW_BUCKET_SLOTS };
	struct dp_flow_key k[N + 4];
	unsigned int i;

	reset();
	colliding(k, N + 4);
	/* Fill both buckets: k[0] steered established (oldest), k[1] direct
	 * established, k[2] steered but never past its SYN, k[3] steered
	 * closing, the rest steered established. */
	for (i = 0; i < N; i++) {
		CHECK(dp_flow_steer(&table, &k[i], SYN, i, i != 1, T0 + i, &c) ==
				(i != 1), "SYN %u", i);
		if (i != 2)
			dp_flow_steer(&table, &k[i], i == 3 ? FIN : ACK, i, true,
					T0 + i, &c);
	}
	CHECK(c.flow_evicted == 0, "fits");
	CHECK(dp_flow_count(&table, T0 + N, NULL) == N, "all live");
	/* Evicted in order: closing, embryonic, direct, then the oldest
	 * steered. */
	static const unsigned int order[] = { 3, 2, 1, 0 };
	static const char *const what[] = {
		"closing first", "then embryonic", "then direct",
		"then the oldest steered",
	};

	for (i = 0; i < 4; i++) {
		dp_flow_steer(&table, &k[N + i], SYN, 1, true, T0 + 20 + i, &c);
		/* Past its SYN, or it would be the next one evicted. */
		dp_flow_steer(&table, &k[N + i], ACK, 2, true, T0 + 20 + i, &c);
		CHECK(dp_flow_find(&table, &k[order[i]]) == NULL, "%s", what[i]);
		CHECK(dp_flow_find(&table, &k[N + i]) != NULL, "new flow in");
	}
	CHECK(dp_flow_find(&table, &k[4]) != NULL, "younger steered kept");
	CHECK(c.flow_evicted == 4, "evicted %lu", (unsigned long)c.flow_evicted);
	/* An evicted flow's segments go direct. */
	CHECK(!dp_flow_steer(&table, &k[0], ACK, 3, true, T0 + 23, &c),
			"evicted flow direct");
	/* A dead slot is reused before anything live is evicted. */
	reset();
	for (i = 0; i < N; i++)
		dp_flow_steer(&table, &k[i], SYN, i, true, T0, &c);
	dp_flow_steer(&table, &k[5], ACK, 1, true, T0 + IDLE - 1, &c);
	dp_flow_steer(&table, &k[N], SYN, 1, true, T0 + IDLE + 1, &c);
	CHECK(c.flow_evicted == 0, "dead slot reused");
	CHECK(dp_flow_find(&table, &k[5]) != NULL, "refreshed flow kept");
}

static void
test_any_steered(void)
{
	reset();
	CHECK(!dp_flow_any_steered(&table, 0), "nothing steered at start");
	CHECK(!dp_flow_any_steered(&table, T0), "nothing steered at T0");
	seg(key(6000), SYN, 1, false, T0);
	CHECK(!dp_flow_any_steered(&table, T0), "direct flows do not count");
	seg(key(6001), SYN, 1, true, T0);
	CHECK(dp_flow_any_steered(&table, T0 + IDLE - 1), "steered live");
	seg(key(6001), ACK, 2, false, T0 + IDLE - 1);
	CHECK(dp_flow_any_steered(&table, T0 + 2 * IDLE - 2), "refreshed");
	CHECK(!dp_flow_any_steered(&table, T0 + 2 * IDLE), "all idle");
}

static void
test_many_flows(void)
{
	enum { N = 20000 };
	unsigned int i, found = 0, steered;

	reset();
	table.idle_tsc = 10 * N;	/* none dies while the table fills */
	srand(7);
	for (i = 0; i < N; i++) {
		struct dp_flow_key k = key((uint16_t)i);

		k.saddr = (uint32_t)rand();
		seg(k, SYN, i, i % 3 != 0, T0 + i);
		seg(k, ACK, i, true, T0 + i);
	}
	srand(7);
	for (i = 0; i < N; i++) {
		struct dp_flow_key k = key((uint16_t)i);
		const struct dp_flow_entry *e;

		k.saddr = (uint32_t)rand();
		e = dp_flow_find(&table, &k);
		if (e == NULL)
			continue;
		found++;
		CHECK(!!(e->state & DP_FLOW_STEERED) == (i % 3 != 0),
				"flow %u kept its decision", i);
	}
	CHECK(found + c.flow_evicted == N, "found %u evicted %lu", found,
			(unsigned long)c.flow_evicted);
	CHECK(c.flow_evicted < N / 100, "evicted %lu at 30%% load",
			(unsigned long)c.flow_evicted);
	CHECK(dp_flow_count(&table, T0 + N, &steered) == found, "count");
	CHECK(c.flows_steered + c.flows_direct == N, "every SYN counted");
}

int
main(void)
{
	test_decision_sticks_to_the_flow();
	test_unknown_flows_go_direct();
	test_syn_retransmission_and_reuse();
	test_idle_timeout();
	test_fin_and_rst_close();
	test_eviction_order();
	test_any_steered();
	test_many_flows();
	TEST_MAIN_END("test_flow");
}
