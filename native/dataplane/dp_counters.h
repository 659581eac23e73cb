/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one table of data-plane counters. Each X-macro row is
 * (member, help text); it generates the counter struct members, their
 * names in the stats dump and the HELP lines that torswitch.dataplane
 * reads, so no list of counters is written twice.
 *
 * Every worker lcore has its own copy of the port and global counters
 * (struct dp_worker) and is their only writer; the stats thread reads
 * them without locks (aligned 64-bit loads) and prints the sums, so the
 * dump reads as one switch's. The worker counters are printed per worker
 * (label worker="N"), with the worker's received and transmitted frames
 * summed over its ports.
 */
#ifndef DP_COUNTERS_H
#define DP_COUNTERS_H

#include <stdint.h>

#define DP_PORT_COUNTERS(X) \
	X(rx_packets, "frames received on the port") \
	X(rx_bytes, "bytes received on the port") \
	X(tx_packets, "frames the port accepted for transmit") \
	X(tx_bytes, "bytes the port accepted for transmit") \
	X(tx_dropped, "frames the port refused to transmit (freed)") \
	X(rx_runt, "received frames shorter than an Ethernet header") \
	X(rx_bad_src_mac, "received frames with a multicast or zero source MAC") \
	X(rx_l3_malformed, "IPv4 frames with a bad header, seen while " \
		"classifying (switched anyway)") \
	X(rx_hairpin, "frames whose destination was learned on the ingress port") \
	X(flooded, "frames flooded (broadcast, multicast, unknown unicast)") \
	X(steered, "frames steered to the exception (tap) port")

#define DP_GLOBAL_COUNTERS(X) \
	X(mac_learned, "MAC addresses learned into a free slot") \
	X(mac_moved, "learned MAC addresses seen on another port") \
	X(mac_evicted, "MAC entries replaced because their buckets were full") \
	X(mac_learn_full, "source MACs not learned: buckets full of static " \
		"entries") \
	X(flows_steered, "rack TCP connections to a steered port whose SYN " \
		"was steered to the tap (the whole flow follows)") \
	X(flows_direct, "rack TCP connections to a steered port whose SYN " \
		"was switched directly, steering being off (the whole flow " \
		"follows)") \
	X(flow_evicted, "flow entries replaced while live because their " \
		"buckets were full") \
	X(flow_unknown, "segments to a steered port of connections not in " \
		"the flow table (switched directly)") \
	X(idle_sleeps, "times a worker slept because no frames arrived") \
	X(worker_us, "microseconds the worker loop has run (filled in by " \
		"the stats writer from the workers' start and stop times)")

#define DP_WORKER_COUNTERS(X) \
	X(mc_handoff, "frames this worker handed to worker 0's memcached " \
		"path") \
	X(mc_handoff_dropped, "frames for the memcached path dropped because " \
		"the hand-off ring to worker 0 was full") \
	X(mc_handoff_taken, "frames worker 0 took from the hand-off ring " \
		"(worker 0 only)")

#define DP_COUNTER_MEMBER(name, help) uint64_t name;

struct dp_port_counters {
	DP_PORT_COUNTERS(DP_COUNTER_MEMBER)
};

struct dp_global_counters {
	DP_GLOBAL_COUNTERS(DP_COUNTER_MEMBER)
};

struct dp_worker_counters {
	DP_WORKER_COUNTERS(DP_COUNTER_MEMBER)
};

#endif /* DP_COUNTERS_H */
