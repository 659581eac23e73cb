/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control channel: a unix datagram socket served by one control thread
 * (never the worker). torswitch.dataplane.ControlClient is the other end.
 *
 * Protocol, version 1. A request is one datagram of ASCII words separated
 * by spaces (a trailing newline is ignored), at most DP_CTL_MAX_REQ bytes:
 *
 *     v1 SEQ VERB [ARG...]
 *
 * SEQ is any word the client chooses; the reply repeats it so a client
 * can drop late replies to requests it gave up on. The reply goes to the
 * sender's address (so the client must bind its socket), one datagram:
 *
 *     v1 SEQ ok\n BODY            or          v1 SEQ error MESSAGE\n
 *
 * Verbs:
 *     status               BODY: key=value lines (protocol, mode, ports,
 *                          steering, steering_lease_ms, steer_tcp_ports,
 *                          tap_port, flow_slots (per worker),
 *                          flow_idle_s, workers; per worker N
 *                          workerN_lcore and workerN_rxq, its
 *                          PORT_ID:QUEUE pairs separated by commas; per
 *                          port P (port_id) portP_rxq, portP_txq and
 *                          portP_rss on|off)
 *     steering on|off      turn HDFS steering of new TCP flows on or off
 *                          (on needs a tap); each flow keeps the decision
 *                          taken on its SYN (dp_flow.h)
 *     steering on LEASE_MS steering on for LEASE_MS milliseconds only
 *                          (1..86400000): the control thread turns it off
 *                          when the lease runs out, unless another
 *                          "steering on" came first. The fail-open lease
 *                          of a supervisor that renews it while its engine
 *                          is healthy: a supervisor that dies or hangs
 *                          stops renewing, and new flows go direct within
 *                          LEASE_MS (plus the socket's 100 ms receive
 *                          timeout). "steering on" without a lease and
 *                          "steering off" cancel it.
 *     steer-ports [N...]   replace the steered TCP ports (none: clear)
 *     counters             BODY: the stats file's Prometheus text
 *     mc-pool, mc-pool-del, mc-flush, mc-status
 *                          memcached pools and cache (dp_mc.h, dp_mc_ctl.c)
 *
 * A request longer than DP_CTL_MAX_REQ (big enough for a pool of
 * DP_MC_MAX_SERVERS servers) or of more than DP_CTL_MAX_WORDS words is
 * refused whole.
 *
 * A request for another version is answered "v1 SEQ error unsupported
 * protocol version", which tells the client what this side speaks. A
 * command is validated completely before anything changes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <rte_lcore.h>

#include "dp.h"

#define DP_CTL_VERSION "v1"
#define DP_CTL_MAX_REQ 16384
#define DP_CTL_MAX_WORDS 80
#define DP_CTL_MAX_SEQ 64	/* longest sequence word repeated in a reply */
#define DP_CTL_SNDBUF (1 << 20)
#define DP_CTL_MAX_LEASE_MS 86400000L

static pthread_t dp_ctl_thread;
static bool dp_ctl_running;
static int dp_ctl_fd = -1;
static char dp_ctl_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
/* When a leased "steering on" ends (CLOCK_MONOTONIC ns), 0: no lease.
 * The control thread's own. */
static uint64_t dp_ctl_lease_end_ns;

static uint64_t
dp_ctl_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Steering off if its lease has run out. */
static void
dp_ctl_lease_check(struct dp_core *dc)
{
	if (dp_ctl_lease_end_ns == 0 || dp_ctl_now_ns() < dp_ctl_lease_end_ns)
		return;
	dp_ctl_lease_end_ns = 0;
	dp_steer_enable(dc, false);
	printf("tsw-dataplane: steering lease ran out: steering off for new "
			"flows\n");
	fflush(stdout);
}

/* The workers, their rx queues and the ports' queues (status). */
static void
dp_ctl_status_workers(const struct dp_core *dc, FILE *f)
{
	uint16_t i, j;

	fprintf(f, "workers=%u\n", dc->nb_workers);
	for (i = 0; i < dc->nb_workers; i++) {
		const struct dp_worker *w = &dc->workers[i];

		fprintf(f, "worker%u_lcore=%u\nworker%u_rxq=", i, w->lcore_id, i);
		for (j = 0; j < w->nb_rxq; j++)
			fprintf(f, "%s%u:%u", j ? "," : "", w->rxq[j].port_id,
					w->rxq[j].queue_id);
		fputc('\n', f);
	}
	for (i = 0; i < dc->nb_ports; i++) {
		const struct dp_port *p = &dc->ports[i];

		fprintf(f, "port%u_rxq=%u\nport%u_txq=%u\nport%u_rss=%s\n",
				p->port_id, p->nb_rxq, p->port_id, p->nb_txq,
				p->port_id, p->rss ? "on" : "off");
	}
}

/* Writes the reply to f; returns NULL on success or an error message. */
static const char *
dp_ctl_exec(struct dp_core *dc, char **w, int nw, FILE *f)
{
	uint16_t ports[DP_MAX_STEER_PORTS], i;
	char *end;
	long v;
	int rc;

	if (strcmp(w[0], "status") == 0 && nw == 1) {
		uint64_t now = dp_ctl_now_ns(), lease = dp_ctl_lease_end_ns;

		fprintf(f, "protocol=1\nmode=%s\nports=%u\nsteering=%s\n",
				dp_mode_name(dc->opt.mode), dc->nb_ports,
				__atomic_load_n(&dc->steer_on, __ATOMIC_ACQUIRE) ?
				"on" : "off");
		if (lease == 0)
			fprintf(f, "steering_lease_ms=none\n");
		else
			fprintf(f, "steering_lease_ms=%" PRIu64 "\n",
					lease > now ? (lease - now) / 1000000 : 0);
		fprintf(f, "flow_slots=%u\nflow_idle_s=%u\nsteer_tcp_ports=",
				DP_FLOW_ENTRIES, dc->opt.flow_idle_s);
		for (i = 0; i < dc->nb_steer; i++)
			fprintf(f, "%s%u", i ? "," : "", dc->steer_ports[i]);
		if (dc->tap_idx >= 0)
			fprintf(f, "\ntap_port=%u\n",
					dc->ports[dc->tap_idx].port_id);
		else
			fprintf(f, "\ntap_port=none\n");
		dp_ctl_status_workers(dc, f);
		return NULL;
	}
	if (strcmp(w[0], "steering") == 0 && (nw == 2 || nw == 3)) {
		bool on = strcmp(w[1], "on") == 0;

		if (!on && strcmp(w[1], "off") != 0)
			return "steering takes on or off";
		v = 0;
		if (nw == 3) {
			if (!on)
				return "only steering on takes a lease";
			errno = 0;
			v = strtol(w[2], &end, 10);
			if (errno != 0 || *end != '\0' || v < 1 ||
					v > DP_CTL_MAX_LEASE_MS)
				return "the lease is 1..86400000 ms";
		}
		rc = dp_steer_enable(dc, on);
		if (rc != 0)
			return "no tap port to steer to";
		dp_ctl_lease_end_ns = v ? dp_ctl_now_ns() +
			(uint64_t)v * 1000000u : 0;
		return NULL;
	}
	if (strcmp(w[0], "steer-ports") == 0) {
		if (nw - 1 > DP_MAX_STEER_PORTS)
			return "too many steered ports";
		for (i = 0; i < nw - 1; i++) {
			errno = 0;
			v = strtol(w[i + 1], &end, 10);
			if (errno != 0 || *end != '\0' || v < 1 || v > 65535)
				return "steered ports are numbers 1..65535";
			ports[i] = (uint16_t)v;
		}
		rc = dp_steer_set_ports(dc, ports, (uint16_t)(nw - 1));
		return rc == 0 ? NULL : "invalid steered ports";
	}
	if (strcmp(w[0], "counters") == 0 && nw == 1) {
		dp_stats_print(dc, f);
		return NULL;
	}
	if (strncmp(w[0], "mc-", 3) == 0)
		return dp_mc_ctl(dc, w, nw, f);
	return "unknown command or wrong number of arguments";
}

static void
dp_ctl_serve(struct dp_core *dc, char *req, size_t len, bool truncated,
		const struct sockaddr_un *peer, socklen_t peer_len)
{
	char *w[DP_CTL_MAX_WORDS], *save = NULL, *tok, *body = NULL;
	char head[DP_CTL_MAX_SEQ + 128];
	const char *seq, *err = NULL;
	size_t body_len = 0;
	struct iovec iov[2];
	struct msghdr msg;
	int nw = 0, head_len;
	FILE *f;

	req[len] = '\0';
	for (tok = strtok_r(req, " \t\r\n", &save); tok != NULL;
			tok = strtok_r(NULL, " \t\r\n", &save)) {
		if (nw == DP_CTL_MAX_WORDS) {
			err = "too many words";
			break;
		}
		w[nw++] = tok;
	}
	seq = nw >= 2 ? w[1] : "-";
	if (err == NULL && truncated)
		err = "request too long";
	if (err == NULL && nw >= 1 && strcmp(w[0], DP_CTL_VERSION) != 0)
		err = "unsupported protocol version";
	else if (err == NULL && nw < 3)
		err = "no command";
	if (err == NULL) {
		f = open_memstream(&body, &body_len);
		if (f == NULL)
			return;	/* no memory: the client times out, retries */
		err = dp_ctl_exec(dc, w + 2, nw - 2, f);
		if (fclose(f) != 0)
			err = "out of memory";
	}
	if (err != NULL) {
		head_len = snprintf(head, sizeof(head),
				DP_CTL_VERSION " %.*s error %s\n", DP_CTL_MAX_SEQ,
				seq, err);
		body_len = 0;
	} else {
		head_len = snprintf(head, sizeof(head),
				DP_CTL_VERSION " %.*s ok\n", DP_CTL_MAX_SEQ, seq);
	}
	if (head_len < 0)
		head_len = 0;
	if ((size_t)head_len >= sizeof(head))
		head_len = sizeof(head) - 1;	/* snprintf truncated it */
	if (peer_len > sizeof(sa_family_t)) {
		iov[0].iov_base = head;
		iov[0].iov_len = (size_t)head_len;
		iov[1].iov_base = body;
		iov[1].iov_len = body_len;
		memset(&msg, 0, sizeof(msg));
		msg.msg_name = (void *)peer;
		msg.msg_namelen = peer_len;
		msg.msg_iov = iov;
		msg.msg_iovlen = 2;
		sendmsg(dp_ctl_fd, &msg, MSG_DONTWAIT);
	}
	free(body);
}

static void *
dp_ctl_loop(void *arg)
{
	/* One control thread: the request buffer need not be on its stack. */
	static char req[DP_CTL_MAX_REQ + 1];
	struct dp_core *dc = arg;
	struct sockaddr_un peer;
	socklen_t peer_len;
	ssize_t n;

	while (!dp_force_quit) {
		peer_len = sizeof(peer);
		/* MSG_TRUNC: the datagram's real length, to refuse one that
		 * did not fit rather than act on its first part. */
		n = recvfrom(dp_ctl_fd, req, DP_CTL_MAX_REQ, MSG_TRUNC,
				(struct sockaddr *)&peer, &peer_len);
		dp_ctl_lease_check(dc);
		if (n < 0)
			continue;	/* timeout (to look at dp_force_quit) */
		dp_ctl_serve(dc, req, RTE_MIN((size_t)n, (size_t)DP_CTL_MAX_REQ),
				n > DP_CTL_MAX_REQ, &peer, peer_len);
	}
	return NULL;
}

/* Binds path (replacing a stale socket file) and starts the control
 * thread. Returns 0 or a negative errno. */
int
dp_ctl_start(struct dp_core *dc, const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };
	int sndbuf = DP_CTL_SNDBUF, rc;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	dp_ctl_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (dp_ctl_fd < 0)
		return -errno;
	unlink(path);
	if (bind(dp_ctl_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
			setsockopt(dp_ctl_fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
				sizeof(tv)) != 0 ||
			setsockopt(dp_ctl_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf,
				sizeof(sndbuf)) != 0) {
		rc = -errno;
		close(dp_ctl_fd);
		dp_ctl_fd = -1;
		return rc;
	}
	strcpy(dp_ctl_path, path);
	rc = rte_ctrl_thread_create(&dp_ctl_thread, "dp-ctl", NULL,
			dp_ctl_loop, dc);
	if (rc != 0) {
		dp_ctl_stop();
		return -rc;
	}
	dp_ctl_running = true;
	return 0;
}

/* Joins the control thread (after dp_force_quit is set) and removes the
 * socket. */
void
dp_ctl_stop(void)
{
	if (dp_ctl_running)
		pthread_join(dp_ctl_thread, NULL);
	dp_ctl_running = false;
	if (dp_ctl_fd >= 0) {
		close(dp_ctl_fd);
		unlink(dp_ctl_path);
	}
	dp_ctl_fd = -1;
}
