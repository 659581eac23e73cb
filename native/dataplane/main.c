/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tsw-dataplane: the torswitch top-of-rack data plane.
 *
 * Start-up: EAL init (ports come from EAL options, e.g.
 * --vdev net_af_packet0,iface=veth0,qpairs=2 --vdev net_tap0,iface=tswtap0;
 * the lcores from -l), then the application options after "--", one
 * worker per lcore (dp.h), one packet pool, every port set up in
 * promiscuous mode with min(workers, what its PMD offers) rx and tx
 * queues (RSS over IP, TCP and UDP asked for where the PMD offers it),
 * the (port, rx queue) pairs dealt to the workers (dp_workers_plan), the MAC
 * table, each worker's steering flow table, the hand-off ring to worker 0
 * (several workers), the memcached state and its pool file
 * (dp_mc_ctl.c), the control channel (dp_ctl.c), and the loop of the
 * chosen mode (dp_worker.c) on every worker, worker 0 on the main lcore.
 * An lcore left without an rx queue gets no worker. SIGINT and SIGTERM
 * only set a flag, and --run-ms ends the loops by themselves; then the
 * last counters are written and the ports closed. Any start-up failure
 * exits with a message; nothing aborts afterwards.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_mbuf.h>
#include <rte_random.h>
#include <rte_ring.h>

#include "dp.h"

#define DP_NB_RXD 1024
#define DP_NB_TXD 1024
#define DP_MBUF_CACHE 256
/* Hash fields asked of a PMD that offers RSS (dp.h: flows and queues). */
#define DP_RSS_HF (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP)

volatile bool dp_force_quit;

static struct dp_core dp_core;

static void
dp_usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s [EAL options] -- [options]\n"
		"EAL -l LIST: the switch loop runs on each lcore (worker 0 on\n"
		"the main one, owner of the memcached state), every port with\n"
		"a queue pair per lcore where its PMD allows (af_packet:\n"
		"give qpairs=N in its --vdev)\n"
		"  --stats-file PATH        rewrite counters there periodically\n"
		"  --stats-interval-ms N    period of the stats file (default %u)\n"
		"  --mac-age-s N            MAC table ageing time (default %u)\n"
		"  --flow-idle-s N          a steering flow (dp_flow.h) whose\n"
		"                           client sent nothing this long is\n"
		"                           forgotten (default %u)\n"
		"  --uplink PORT_ID         port facing the spine (never steered)\n"
		"  --tap PORT_ID            exception port (default: the net_tap\n"
		"                           port, if any)\n"
		"  --steer-tcp-port N       steer rack IPv4 TCP to port N to the\n"
		"                           tap (repeatable, at most %u)\n"
		"  --steering on|off        initial steering state of new TCP\n"
		"                           flows (default on; the control\n"
		"                           channel changes it)\n"
		"  --static-mac MAC@PORT_ID a MAC that never ages or moves\n"
		"                           (repeatable, at most %u)\n"
		"  --control PATH           serve the control channel (unix\n"
		"                           datagram socket) at PATH\n"
		"  --mode switch|bare       L2 switch with steering (default), or\n"
		"                           port i to port i+1 unseen (baseline)\n"
		"  --run-ms N               stop after N milliseconds (benchmarks)\n"
		"  --no-backoff             busy-poll even when idle (benchmarks)\n"
		"memcached over UDP (MemSwitch, dp_mc.h; pools come from the\n"
		"control channel's mc-pool or from --mc-pool-file):\n"
		"  --mc-cache-slots N       hot-key cache slots, 0 for no cache\n"
		"                           (default %u)\n"
		"  --mc-max-value BYTES     largest value cached, at most %u\n"
		"                           (default %u)\n"
		"  --mc-hot-threshold N     gets of a key (sketch estimate) before\n"
		"                           it is cached, 1..65535 (default %u)\n"
		"  --mc-cache-ttl-ms N      cached values expire after N ms\n"
		"                           (default %u)\n"
		"  --mc-write-timeout-ms N  a write whose reply is not seen keeps\n"
		"                           its keys uncacheable this long\n"
		"                           (default %u)\n"
		"  --mc-pool-file PATH      control lines (mc-pool ...) applied at\n"
		"                           start-up; # starts a comment line\n",
		prog, DP_STATS_INTERVAL_MS_DEFAULT, DP_MAC_AGE_S_DEFAULT,
		DP_FLOW_IDLE_S_DEFAULT, DP_MAX_STEER_PORTS, DP_MAX_STATIC_MACS,
		DP_MC_CACHE_SLOTS_DEFAULT, DP_MC_MAX_VALUE_LIMIT,
		DP_MC_MAX_VALUE_DEFAULT, DP_MC_HOT_THRESHOLD_DEFAULT,
		DP_MC_TTL_MS_DEFAULT, DP_MC_WRITE_TIMEOUT_MS_DEFAULT);
}

static unsigned long
dp_parse_ulong(const char *s, unsigned long max, const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v > max)
		rte_exit(EXIT_FAILURE, "invalid %s: '%s'\n", what, s);
	return v;
}

static void
dp_parse_static_mac(struct dp_options *opt, const char *arg)
{
	struct rte_ether_addr addr;
	struct dp_static_mac *sm;
	char mac[32];
	const char *at = strchr(arg, '@');

	if (opt->nb_static_macs == DP_MAX_STATIC_MACS)
		rte_exit(EXIT_FAILURE, "too many --static-mac\n");
	if (at == NULL || (size_t)(at - arg) >= sizeof(mac))
		rte_exit(EXIT_FAILURE, "--static-mac takes MAC@PORT_ID: '%s'\n",
				arg);
	memcpy(mac, arg, at - arg);
	mac[at - arg] = '\0';
	if (rte_ether_unformat_addr(mac, &addr) != 0 ||
			!rte_is_unicast_ether_addr(&addr) ||
			rte_is_zero_ether_addr(&addr))
		rte_exit(EXIT_FAILURE, "--static-mac: bad unicast MAC '%s'\n",
				mac);
	sm = &opt->static_macs[opt->nb_static_macs++];
	sm->mac = dp_mac_key_of(&addr);
	sm->port_id = dp_parse_ulong(at + 1, RTE_MAX_ETHPORTS - 1,
			"--static-mac port");
}

static void
dp_parse_args(struct dp_options *opt, struct dp_mc_options *mc, int argc,
		char **argv)
{
	enum { O_STATS = 256, O_INTERVAL, O_AGE, O_UPLINK, O_TAP, O_STEER,
		O_NOBACKOFF, O_STEERING, O_STATIC, O_CONTROL, O_MODE, O_RUN,
		O_MC_SLOTS, O_MC_VALUE, O_MC_HOT, O_MC_TTL, O_MC_WTO,
		O_MC_FILE, O_FLOW_IDLE };
	static const struct option longopts[] = {
		{ "stats-file", required_argument, NULL, O_STATS },
		{ "stats-interval-ms", required_argument, NULL, O_INTERVAL },
		{ "mac-age-s", required_argument, NULL, O_AGE },
		{ "flow-idle-s", required_argument, NULL, O_FLOW_IDLE },
		{ "uplink", required_argument, NULL, O_UPLINK },
		{ "tap", required_argument, NULL, O_TAP },
		{ "steer-tcp-port", required_argument, NULL, O_STEER },
		{ "no-backoff", no_argument, NULL, O_NOBACKOFF },
		{ "steering", required_argument, NULL, O_STEERING },
		{ "static-mac", required_argument, NULL, O_STATIC },
		{ "control", required_argument, NULL, O_CONTROL },
		{ "mode", required_argument, NULL, O_MODE },
		{ "run-ms", required_argument, NULL, O_RUN },
		{ "mc-cache-slots", required_argument, NULL, O_MC_SLOTS },
		{ "mc-max-value", required_argument, NULL, O_MC_VALUE },
		{ "mc-hot-threshold", required_argument, NULL, O_MC_HOT },
		{ "mc-cache-ttl-ms", required_argument, NULL, O_MC_TTL },
		{ "mc-write-timeout-ms", required_argument, NULL, O_MC_WTO },
		{ "mc-pool-file", required_argument, NULL, O_MC_FILE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	opt->age_s = DP_MAC_AGE_S_DEFAULT;
	opt->flow_idle_s = DP_FLOW_IDLE_S_DEFAULT;
	opt->stats_interval_ms = DP_STATS_INTERVAL_MS_DEFAULT;
	opt->uplink_port_id = -1;
	opt->tap_port_id = -1;
	opt->steering = true;
	mc->cache_slots = DP_MC_CACHE_SLOTS_DEFAULT;
	mc->max_value = DP_MC_MAX_VALUE_DEFAULT;
	mc->hot_threshold = DP_MC_HOT_THRESHOLD_DEFAULT;
	mc->ttl_ms = DP_MC_TTL_MS_DEFAULT;
	mc->write_timeout_ms = DP_MC_WRITE_TIMEOUT_MS_DEFAULT;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_STATS:
			opt->stats_file = optarg;
			break;
		case O_INTERVAL:
			opt->stats_interval_ms = dp_parse_ulong(optarg, 3600000,
					"--stats-interval-ms");
			break;
		case O_AGE:
			opt->age_s = dp_parse_ulong(optarg, 86400, "--mac-age-s");
			if (opt->age_s == 0)
				rte_exit(EXIT_FAILURE, "--mac-age-s must be > 0\n");
			break;
		case O_FLOW_IDLE:
			opt->flow_idle_s = dp_parse_ulong(optarg, 86400,
					"--flow-idle-s");
			if (opt->flow_idle_s == 0)
				rte_exit(EXIT_FAILURE, "--flow-idle-s must be > 0\n");
			break;
		case O_UPLINK:
			opt->uplink_port_id = dp_parse_ulong(optarg,
					RTE_MAX_ETHPORTS - 1, "--uplink");
			break;
		case O_TAP:
			opt->tap_port_id = dp_parse_ulong(optarg,
					RTE_MAX_ETHPORTS - 1, "--tap");
			break;
		case O_STEER:
			if (opt->nb_steer == DP_MAX_STEER_PORTS)
				rte_exit(EXIT_FAILURE, "too many --steer-tcp-port\n");
			opt->steer_tcp_ports[opt->nb_steer++] =
				dp_parse_ulong(optarg, 65535, "--steer-tcp-port");
			break;
		case O_NOBACKOFF:
			opt->no_backoff = true;
			break;
		case O_STEERING:
			if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0)
				rte_exit(EXIT_FAILURE, "--steering takes on or off\n");
			opt->steering = strcmp(optarg, "on") == 0;
			break;
		case O_STATIC:
			dp_parse_static_mac(opt, optarg);
			break;
		case O_CONTROL:
			opt->control_path = optarg;
			break;
		case O_MODE:
			if (strcmp(optarg, "switch") == 0)
				opt->mode = DP_MODE_SWITCH;
			else if (strcmp(optarg, "bare") == 0)
				opt->mode = DP_MODE_BARE;
			else
				rte_exit(EXIT_FAILURE, "--mode takes switch or bare\n");
			break;
		case O_RUN:
			opt->run_ms = dp_parse_ulong(optarg, 86400000, "--run-ms");
			break;
		case O_MC_SLOTS:
			mc->cache_slots = dp_parse_ulong(optarg, 1u << 24,
					"--mc-cache-slots");
			break;
		case O_MC_VALUE:
			mc->max_value = dp_parse_ulong(optarg,
					DP_MC_MAX_VALUE_LIMIT, "--mc-max-value");
			if (mc->max_value == 0)
				rte_exit(EXIT_FAILURE, "--mc-max-value must be > 0\n");
			break;
		case O_MC_HOT:
			mc->hot_threshold = dp_parse_ulong(optarg, 65535,
					"--mc-hot-threshold");
			if (mc->hot_threshold == 0)
				rte_exit(EXIT_FAILURE,
					"--mc-hot-threshold must be >= 1\n");
			break;
		case O_MC_TTL:
			mc->ttl_ms = dp_parse_ulong(optarg, 86400000,
					"--mc-cache-ttl-ms");
			if (mc->ttl_ms == 0)
				rte_exit(EXIT_FAILURE, "--mc-cache-ttl-ms must be > 0\n");
			break;
		case O_MC_WTO:
			mc->write_timeout_ms = dp_parse_ulong(optarg, 3600000,
					"--mc-write-timeout-ms");
			if (mc->write_timeout_ms == 0)
				rte_exit(EXIT_FAILURE,
					"--mc-write-timeout-ms must be > 0\n");
			break;
		case O_MC_FILE:
			mc->pool_file = optarg;
			break;
		case 'h':
			dp_usage(argv[0]);
			exit(EXIT_SUCCESS);
		default:
			dp_usage(argv[0]);
			rte_exit(EXIT_FAILURE, "invalid arguments\n");
		}
	}
	if (optind != argc)
		rte_exit(EXIT_FAILURE, "unexpected argument '%s'\n", argv[optind]);
}

/* How many queues the port gets, and whether RSS spreads its frames. */
static void
dp_port_plan(struct dp_port *p, unsigned int nb_lcores)
{
	struct rte_eth_dev_info info;
	int rc;

	rc = rte_eth_dev_info_get(p->port_id, &info);
	if (rc != 0)
		rte_exit(EXIT_FAILURE, "port %u: dev_info: %s\n", p->port_id,
				rte_strerror(-rc));
	p->nb_rxq = RTE_MAX(1u, RTE_MIN(nb_lcores, (unsigned int)info.max_rx_queues));
	p->nb_txq = RTE_MAX(1u, RTE_MIN(nb_lcores, (unsigned int)info.max_tx_queues));
	p->rss = p->nb_rxq > 1 && (info.flow_type_rss_offloads & DP_RSS_HF) != 0;
	if (strcmp(info.driver_name, "net_tap") == 0 &&
			dp_core.opt.tap_port_id < 0)
		dp_core.opt.tap_port_id = p->port_id;
}

static void
dp_port_init(struct dp_port *p, struct rte_mempool *pool)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	uint16_t nb_rxd = DP_NB_RXD, nb_txd = DP_NB_TXD, q;
	int socket = rte_eth_dev_socket_id(p->port_id);
	int rc;

	memset(&conf, 0, sizeof(conf));
	rc = rte_eth_dev_info_get(p->port_id, &info);
	if (rc != 0)
		rte_exit(EXIT_FAILURE, "port %u: dev_info: %s\n", p->port_id,
				rte_strerror(-rc));
	if (p->rss) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf =
			DP_RSS_HF & info.flow_type_rss_offloads;
	}
	rc = rte_eth_dev_configure(p->port_id, p->nb_rxq, p->nb_txq, &conf);
	if (rc != 0)
		rte_exit(EXIT_FAILURE, "port %u: configure: %s\n", p->port_id,
				rte_strerror(-rc));
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(p->port_id, &nb_rxd, &nb_txd);
	if (rc != 0)
		rte_exit(EXIT_FAILURE, "port %u: descriptors: %s\n",
				p->port_id, rte_strerror(-rc));
	for (q = 0; q < p->nb_rxq; q++) {
		rc = rte_eth_rx_queue_setup(p->port_id, q, nb_rxd,
				socket < 0 ? 0 : socket, NULL, pool);
		if (rc != 0)
			rte_exit(EXIT_FAILURE, "port %u: rx queue %u: %s\n",
					p->port_id, q, rte_strerror(-rc));
	}
	for (q = 0; q < p->nb_txq; q++) {
		rc = rte_eth_tx_queue_setup(p->port_id, q, nb_txd,
				socket < 0 ? 0 : socket, NULL);
		if (rc != 0)
			rte_exit(EXIT_FAILURE, "port %u: tx queue %u: %s\n",
					p->port_id, q, rte_strerror(-rc));
	}
	rc = rte_eth_dev_start(p->port_id);
	if (rc != 0)
		rte_exit(EXIT_FAILURE, "port %u: start: %s\n", p->port_id,
				rte_strerror(-rc));
	/* A switch port must see every frame; not every PMD can say so. */
	rc = rte_eth_promiscuous_enable(p->port_id);
	if (rc != 0 && rc != -ENOTSUP)
		rte_exit(EXIT_FAILURE, "port %u: promiscuous: %s\n",
				p->port_id, rte_strerror(-rc));
	rc = rte_eth_macaddr_get(p->port_id, &p->mac);
	if (rc != 0)
		rte_exit(EXIT_FAILURE, "port %u: MAC address: %s\n",
				p->port_id, rte_strerror(-rc));
}

/*
 * Deals the (port, rx queue) pairs to the lcores round-robin, starting
 * each port one lcore further on: queue q of port i goes to lcore
 * (i + q) mod lcores, so a port's queues land on different workers and
 * each worker gets its share of the pairs. An lcore left without a pair
 * gets no worker. Then each worker's view of the ports: its tx queue and
 * whether it is shared.
 */
static void
dp_workers_plan(struct dp_core *dc, const unsigned int *lcores,
		unsigned int nb_lcores)
{
	unsigned int total = 0, i;
	uint16_t q, wi;

	for (i = 0; i < dc->nb_ports; i++)
		total += dc->ports[i].nb_rxq;
	dc->nb_workers = RTE_MIN(nb_lcores, total);
	for (wi = 0; wi < dc->nb_workers; wi++) {
		struct dp_worker *w = &dc->workers[wi];

		w->dc = dc;
		w->idx = wi;
		w->lcore_id = lcores[wi];
	}
	for (i = 0; i < dc->nb_ports; i++)
		for (q = 0; q < dc->ports[i].nb_rxq; q++) {
			struct dp_worker *w =
				&dc->workers[(i + q) % dc->nb_workers];
			struct dp_rxq *r = &w->rxq[w->nb_rxq++];

			r->port_idx = i;
			r->port_id = dc->ports[i].port_id;
			r->queue_id = q;
		}
	for (wi = 0; wi < dc->nb_workers; wi++) {
		struct dp_worker *w = &dc->workers[wi];

		for (i = 0; i < dc->nb_ports; i++) {
			const struct dp_port *p = &dc->ports[i];
			struct dp_wport *wp = &w->port[i];

			wp->port_id = p->port_id;
			wp->txq = wi % p->nb_txq;
			wp->tx_lock = p->nb_txq < dc->nb_workers ?
				&dc->tx_lock[i][wp->txq] : NULL;
		}
	}
	for (i = 0; i < dc->nb_ports; i++)
		for (q = 0; q < DP_MAX_QUEUES; q++)
			rte_spinlock_init(&dc->tx_lock[i][q]);
}

static void
dp_workers_print(const struct dp_core *dc)
{
	uint16_t wi, j;

	for (wi = 0; wi < dc->nb_workers; wi++) {
		const struct dp_worker *w = &dc->workers[wi];

		printf("tsw-dataplane: worker %u lcore %u polls", wi, w->lcore_id);
		for (j = 0; j < w->nb_rxq; j++)
			printf(" %u:%u", w->rxq[j].port_id, w->rxq[j].queue_id);
		printf(" (port:queue)\n");
	}
}

static int
dp_worker_main(void *arg)
{
	struct dp_worker *w = arg;

	return dp_worker_loop(w->dc->opt.mode)(w);
}

static void
dp_signal(int signum)
{
	(void)signum;
	dp_force_quit = true;
}

int
main(int argc, char **argv)
{
	struct dp_core *dc = &dp_core;
	struct rte_mempool *pool;
	unsigned int nb_mbufs, nb_lcores, lcore_id;
	unsigned int lcores[DP_MAX_WORKERS];
	uint16_t port_id, i;
	int rc;

	rc = rte_eal_init(argc, argv);
	if (rc < 0)
		rte_exit(EXIT_FAILURE, "EAL init failed: %s\n",
				rte_strerror(rte_errno));
	argc -= rc;
	argv += rc;
	argv[0] = argv[-rc];
	dp_parse_args(&dc->opt, &dc->mc.opt, argc, argv);

	signal(SIGINT, dp_signal);
	signal(SIGTERM, dp_signal);

	nb_lcores = rte_lcore_count();
	if (nb_lcores > DP_MAX_WORKERS)
		rte_exit(EXIT_FAILURE, "more than %u lcores\n", DP_MAX_WORKERS);
	lcores[0] = rte_get_main_lcore();
	i = 1;
	RTE_LCORE_FOREACH_WORKER(lcore_id)
		lcores[i++] = lcore_id;

	RTE_ETH_FOREACH_DEV(port_id) {
		if (dc->nb_ports == DP_MAX_PORTS)
			rte_exit(EXIT_FAILURE, "more than %u ports\n",
					DP_MAX_PORTS);
		dc->ports[dc->nb_ports++].port_id = port_id;
	}
	if (dc->nb_ports < 2)
		rte_exit(EXIT_FAILURE, "need at least 2 ports, have %u "
				"(give them with --vdev)\n", dc->nb_ports);
	for (i = 0; i < dc->nb_ports; i++)
		dp_port_plan(&dc->ports[i], nb_lcores);
	dp_workers_plan(dc, lcores, nb_lcores);

	/* Rings, transmit buffers, the per-lcore caches, the hand-off ring,
	 * and the reply datagrams memcached splits may hold. */
	nb_mbufs = 0;
	for (i = 0; i < dc->nb_ports; i++)
		nb_mbufs += dc->ports[i].nb_rxq * DP_NB_RXD +
			dc->ports[i].nb_txq * DP_NB_TXD;
	nb_mbufs += dc->nb_workers * (dc->nb_ports * DP_TX_BUF + 2 * DP_BURST +
			DP_MBUF_CACHE * 2);
	if (dc->nb_workers > 1)
		nb_mbufs += DP_HANDOFF_RING;
	nb_mbufs = RTE_MAX(8191u, nb_mbufs) + DP_MC_MAX_HELD;
	pool = rte_pktmbuf_pool_create("dp_mbufs", nb_mbufs, DP_MBUF_CACHE, 0,
			RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (pool == NULL)
		rte_exit(EXIT_FAILURE, "packet pool: %s\n",
				rte_strerror(rte_errno));

	dc->tap_idx = -1;
	for (i = 0; i < dc->nb_ports; i++) {
		struct dp_port *p = &dc->ports[i];

		rte_eth_dev_get_name_by_port(p->port_id, p->name);
		dp_port_init(p, pool);
	}
	for (i = 0; i < dc->nb_ports; i++) {
		struct dp_port *p = &dc->ports[i];

		if (p->port_id == dc->opt.tap_port_id) {
			p->role = DP_ROLE_TAP;
			dc->tap_idx = i;
		} else if (p->port_id == dc->opt.uplink_port_id) {
			p->role = DP_ROLE_UPLINK;
		}
		printf("tsw-dataplane: port %u %s role %s mac "
				RTE_ETHER_ADDR_PRT_FMT " queues rx %u tx %u%s\n",
				p->port_id, p->name, dp_role_name(p->role),
				RTE_ETHER_ADDR_BYTES(&p->mac), p->nb_rxq, p->nb_txq,
				p->rss ? " rss" : "");
	}
	if (dc->opt.tap_port_id >= 0 && dc->tap_idx < 0)
		rte_exit(EXIT_FAILURE, "--tap %d: no such port\n",
				dc->opt.tap_port_id);
	if (dc->opt.uplink_port_id >= 0 &&
			!rte_eth_dev_is_valid_port(dc->opt.uplink_port_id))
		rte_exit(EXIT_FAILURE, "--uplink %d: no such port\n",
				dc->opt.uplink_port_id);

	for (i = 0; i < dc->nb_ports; i++)
		dc->ports[i].steer_capable = dc->tap_idx >= 0 &&
			dc->ports[i].role == DP_ROLE_RACK;
	for (i = 0; i < dc->nb_workers; i++) {
		struct dp_worker *w = &dc->workers[i];
		uint16_t j;

		for (j = 0; j < w->nb_rxq; j++)
			w->rxq[j].steer_capable =
				dc->ports[w->rxq[j].port_idx].steer_capable;
	}
	rc = dp_steer_set_ports(dc, dc->opt.steer_tcp_ports, dc->opt.nb_steer);
	if (rc == 0)
		rc = dp_steer_enable(dc, dc->opt.steering && dc->tap_idx >= 0);
	if (rc != 0)
		rte_exit(EXIT_FAILURE, "steering: %s\n", strerror(-rc));

	dp_mac_init(&dc->mac, (uint64_t)dc->opt.age_s * rte_get_tsc_hz());
	for (i = 0; i < dc->nb_workers; i++) {
		struct dp_worker *w = &dc->workers[i];
		void *mem = &dc->flow0;

		if (i > 0 && posix_memalign(&mem, RTE_CACHE_LINE_SIZE,
				sizeof(*w->flow)) != 0)
			rte_exit(EXIT_FAILURE, "no memory for flow tables\n");
		w->flow = mem;
		dp_flow_init(w->flow,
				(uint64_t)dc->opt.flow_idle_s * rte_get_tsc_hz(),
				(uint64_t)DP_FLOW_CLOSING_S * rte_get_tsc_hz(),
				rte_rand());
	}
	if (dc->nb_workers > 1 && dc->opt.mode == DP_MODE_SWITCH) {
		dc->handoff = rte_ring_create("dp_handoff", DP_HANDOFF_RING,
				rte_socket_id(), RING_F_SC_DEQ);
		if (dc->handoff == NULL)
			rte_exit(EXIT_FAILURE, "hand-off ring: %s\n",
					rte_strerror(rte_errno));
	}
	for (i = 0; i < dc->opt.nb_static_macs; i++) {
		const struct dp_static_mac *sm = &dc->opt.static_macs[i];
		uint16_t idx;

		for (idx = 0; idx < dc->nb_ports; idx++)
			if (dc->ports[idx].port_id == sm->port_id)
				break;
		if (idx == dc->nb_ports)
			rte_exit(EXIT_FAILURE, "--static-mac: no port %u\n",
					sm->port_id);
		rc = dp_mac_add_static(&dc->mac, sm->mac, idx, rte_rdtsc());
		if (rc != 0)
			rte_exit(EXIT_FAILURE, "--static-mac #%u: %s\n", i + 1,
					strerror(-rc));
	}
	if (dc->opt.mode == DP_MODE_SWITCH) {
		rc = dp_mc_init(dc, pool);
		if (rc != 0)
			rte_exit(EXIT_FAILURE, "memcached set-up failed\n");
	} else if (dc->mc.opt.pool_file != NULL) {
		rte_exit(EXIT_FAILURE, "--mc-pool-file needs --mode switch\n");
	}
	if (dc->opt.control_path != NULL) {
		rc = dp_ctl_start(dc, dc->opt.control_path);
		if (rc != 0)
			rte_exit(EXIT_FAILURE, "control socket %s: %s\n",
					dc->opt.control_path, strerror(-rc));
	}

	/* The first stats file is the readiness signal for supervisors. */
	rc = dp_stats_write(dc, dc->opt.stats_file);
	if (rc != 0)
		rte_exit(EXIT_FAILURE, "stats file %s: %s\n",
				dc->opt.stats_file, strerror(-rc));
	rc = dp_stats_start(dc);
	if (rc != 0)
		rte_exit(EXIT_FAILURE, "stats thread: %s\n", strerror(-rc));
	dp_workers_print(dc);
	printf("tsw-dataplane: ready, %u ports, %u workers, mode %s, "
			"steering %s, back-off %s\n", dc->nb_ports, dc->nb_workers,
			dp_mode_name(dc->opt.mode),
			dc->steer_on ? "on" : "off",
			dc->opt.no_backoff ? "off" : "on");
	fflush(stdout);

	/* The start time before any worker runs: the control thread frees a
	 * replaced pool at once while it is 0 (dp_mc_ctl.c). */
	__atomic_store_n(&dc->worker_start_tsc, rte_rdtsc(), __ATOMIC_SEQ_CST);
	for (i = 1; i < dc->nb_workers; i++) {
		rc = rte_eal_remote_launch(dp_worker_main, &dc->workers[i],
				dc->workers[i].lcore_id);
		if (rc != 0)
			rte_exit(EXIT_FAILURE, "worker %u on lcore %u: %s\n", i,
					dc->workers[i].lcore_id, strerror(-rc));
	}
	dp_worker_main(&dc->workers[0]);

	dp_force_quit = true;
	rte_eal_mp_wait_lcore();
	__atomic_store_n(&dc->worker_stop_tsc, rte_rdtsc(), __ATOMIC_RELEASE);
	dp_stats_stop();
	dp_ctl_stop();
	for (i = 0; i < dc->nb_ports; i++) {
		rte_eth_dev_stop(dc->ports[i].port_id);
		rte_eth_dev_close(dc->ports[i].port_id);
	}
	rc = dp_stats_write(dc, dc->opt.stats_file);
	if (rc != 0)
		fprintf(stderr, "tsw-dataplane: final stats: %s\n",
				strerror(-rc));
	if (dc->opt.stats_file != NULL)
		dp_stats_write(dc, NULL);
	dp_mc_free(dc);
	if (dc->handoff != NULL) {
		void *m = NULL;

		while (rte_ring_dequeue(dc->handoff, &m) == 0)
			rte_pktmbuf_free(m);
		rte_ring_free(dc->handoff);
	}
	for (i = 1; i < dc->nb_workers; i++)
		free(dc->workers[i].flow);
	printf("tsw-dataplane: stopped\n");
	rte_eal_cleanup();
	return 0;
}
