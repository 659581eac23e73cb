/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counter dumps. The stats thread (a control thread, never a worker)
 * rewrites the stats file every stats_interval_ms in Prometheus text
 * format, atomically (write to PATH.tmp, then rename), so a reader never
 * sees half a file. main.c writes one last dump after the worker stops.
 * Names and help texts come from the X-macro tables of dp_counters.h.
 * Port and global counters are the sums over the workers (each has its
 * own copy); the worker counters follow per worker (worker="N").
 * dp_stats_print is also what the control channel's "counters" returns.
 * The memcached counters (dp_mc.h's tables) follow, from dp_mc_ctl.c.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <rte_cycles.h>
#include <rte_lcore.h>

#include "dp.h"

#define DP_METRIC_PREFIX "tsw_dataplane_"

static pthread_t dp_stats_thread;
static bool dp_stats_running;

/* Microseconds between the workers' start and their stop (or now). */
static uint64_t
dp_worker_us(const struct dp_core *dc)
{
	uint64_t start = __atomic_load_n(&dc->worker_start_tsc,
			__ATOMIC_ACQUIRE);
	uint64_t stop = __atomic_load_n(&dc->worker_stop_tsc, __ATOMIC_ACQUIRE);

	if (start == 0)
		return 0;
	if (stop == 0)
		stop = rte_rdtsc();
	return (uint64_t)((double)(stop - start) * 1e6 / rte_get_tsc_hz());
}

static inline uint64_t
dp_load(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

/* One port's counters summed over the workers. */
static void
dp_port_sum(const struct dp_core *dc, uint16_t idx, struct dp_port_counters *c)
{
	uint16_t w;

	memset(c, 0, sizeof(*c));
	for (w = 0; w < dc->nb_workers; w++) {
		const struct dp_port_counters *s = &dc->workers[w].port[idx].stats;

#define DP_ADD(cname, help) c->cname += dp_load(&s->cname);
		DP_PORT_COUNTERS(DP_ADD)
#undef DP_ADD
	}
}

void
dp_stats_print(const struct dp_core *dc, FILE *f)
{
	struct dp_port_counters pc[DP_MAX_PORTS];
	struct dp_global_counters g;
	uint16_t i, w;

	for (i = 0; i < dc->nb_ports; i++)
		dp_port_sum(dc, i, &pc[i]);
#define DP_PRINT_PORT(cname, help) \
	fprintf(f, "# HELP " DP_METRIC_PREFIX #cname "_total " help "\n" \
		"# TYPE " DP_METRIC_PREFIX #cname "_total counter\n"); \
	for (i = 0; i < dc->nb_ports; i++) \
		fprintf(f, DP_METRIC_PREFIX #cname "_total{port=\"%u\"," \
			"name=\"%s\",role=\"%s\"} %" PRIu64 "\n", \
			dc->ports[i].port_id, dc->ports[i].name, \
			dp_role_name(dc->ports[i].role), pc[i].cname);
	DP_PORT_COUNTERS(DP_PRINT_PORT)
#undef DP_PRINT_PORT

#define DP_PRINT_GLOBAL(cname, help) \
	fprintf(f, "# HELP " DP_METRIC_PREFIX #cname "_total " help "\n" \
		"# TYPE " DP_METRIC_PREFIX #cname "_total counter\n" \
		DP_METRIC_PREFIX #cname "_total %" PRIu64 "\n", \
		g.cname);
#define DP_ADD_GLOBAL(cname, help) \
	g.cname += dp_load(&dc->workers[w].stats.cname);
	memset(&g, 0, sizeof(g));
	for (w = 0; w < dc->nb_workers; w++) {
		DP_GLOBAL_COUNTERS(DP_ADD_GLOBAL)
	}
#undef DP_ADD_GLOBAL
	g.worker_us = dp_worker_us(dc);
	DP_GLOBAL_COUNTERS(DP_PRINT_GLOBAL)
#undef DP_PRINT_GLOBAL

	/* Per worker: its frames (summed over its ports), then its table. */
#define DP_PRINT_WORKER_HEAD(cname, help) \
	fprintf(f, "# HELP " DP_METRIC_PREFIX "worker_" #cname "_total " \
		help "\n# TYPE " DP_METRIC_PREFIX "worker_" #cname \
		"_total counter\n");
#define DP_PRINT_WORKER(cname, value) \
	fprintf(f, DP_METRIC_PREFIX "worker_" #cname "_total{worker=\"%u\"," \
		"lcore=\"%u\"} %" PRIu64 "\n", w, dc->workers[w].lcore_id, \
		(uint64_t)(value));
	DP_PRINT_WORKER_HEAD(rx_packets, "frames the worker received on its "
			"queues")
	for (w = 0; w < dc->nb_workers; w++) {
		uint64_t n = 0;

		for (i = 0; i < dc->nb_ports; i++)
			n += dp_load(&dc->workers[w].port[i].stats.rx_packets);
		DP_PRINT_WORKER(rx_packets, n)
	}
	DP_PRINT_WORKER_HEAD(tx_packets, "frames the worker transmitted")
	for (w = 0; w < dc->nb_workers; w++) {
		uint64_t n = 0;

		for (i = 0; i < dc->nb_ports; i++)
			n += dp_load(&dc->workers[w].port[i].stats.tx_packets);
		DP_PRINT_WORKER(tx_packets, n)
	}
#define DP_PRINT_WORKER_TABLE(cname, help) \
	DP_PRINT_WORKER_HEAD(cname, help) \
	for (w = 0; w < dc->nb_workers; w++) \
		DP_PRINT_WORKER(cname, dp_load(&dc->workers[w].wstats.cname))
	DP_WORKER_COUNTERS(DP_PRINT_WORKER_TABLE)
#undef DP_PRINT_WORKER_TABLE
#undef DP_PRINT_WORKER
#undef DP_PRINT_WORKER_HEAD
	if (dc->opt.mode == DP_MODE_SWITCH)
		dp_mc_stats_print(dc, f);
}

int
dp_stats_write(const struct dp_core *dc, const char *path)
{
	char tmp[4096];
	FILE *f;

	if (path == NULL) {
		dp_stats_print(dc, stdout);
		fflush(stdout);
		return 0;
	}
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "w");
	if (f == NULL)
		return -errno;
	dp_stats_print(dc, f);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		return -errno;
	return 0;
}

static void *
dp_stats_loop(void *arg)
{
	const struct dp_core *dc = arg;
	unsigned int ms = dc->opt.stats_interval_ms;
	struct timespec ts = {
		.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L
	};

	while (!dp_force_quit) {
		nanosleep(&ts, NULL);
		if (dp_force_quit)
			break;
		dp_stats_write(dc, dc->opt.stats_file);
	}
	return NULL;
}

int
dp_stats_start(struct dp_core *dc)
{
	int rc;

	if (dc->opt.stats_file == NULL || dc->opt.stats_interval_ms == 0)
		return 0;
	rc = rte_ctrl_thread_create(&dp_stats_thread, "dp-stats", NULL,
			dp_stats_loop, dc);
	if (rc != 0)
		return -rc;
	dp_stats_running = true;
	return 0;
}

void
dp_stats_stop(void)
{
	if (dp_stats_running)
		pthread_join(dp_stats_thread, NULL);
	dp_stats_running = false;
}
