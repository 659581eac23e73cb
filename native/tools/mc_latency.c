/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mc_latency: memcached get round-trip times, one request at a time, for
 * `torswitch bench memcached` (torswitch/bench/memcached.py).
 *
 *   mc_latency [-n REQUESTS] [-r RATE] [-t TIMEOUT_MS] [-w WARMUP] TARGET...
 *   TARGET: udp:IP:PORT:KEYS or tcp:IP:PORT:KEYS
 *   KEYS: KEY[,KEY...], asked in turn, one per request (wrapping around)
 *
 * Every TARGET gets its own socket (UDP: unconnected, since a redirected
 * reply comes from the pool's address, not the one asked; TCP: connected
 * once, like a client of nutcracker). Requests are sent in rounds, one
 * per target, the order rotated every round so that no target always
 * follows the same one; the sends are paced on an absolute schedule of
 * RATE requests per second over all targets, with one request in flight.
 * A round trip is CLOCK_MONOTONIC from just before the send to the
 * moment the whole reply is in ("END\r\n" at its end).
 *
 * Output on stdout, one line per measured request (WARMUP rounds first,
 * not printed): "TARGET_INDEX STATUS NANOSECONDS", STATUS being
 *   V  a VALUE came back (the key was found),
 *   M  "END" alone (a miss: the measurement is then of the wrong path),
 *   T  no complete reply within TIMEOUT_MS (NANOSECONDS is -1),
 *   E  anything else (an error line).
 * Exits 0 after every request, 2 on bad arguments, 1 on a socket error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 8
#define MAX_KEY 250
#define BUF_SIZE 4096
#define UDP_HDR 8

struct target {
	int udp;			/* 1: UDP, 0: TCP */
	int fd;
	struct sockaddr_in addr;
	char **keys;
	size_t nkeys;
	size_t next_key;
	char request[MAX_KEY + 16];	/* "get KEY\r\n" of the current request */
	size_t request_len;
};

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
sleep_until(uint64_t t)
{
	struct timespec ts = {
		.tv_sec = (time_t)(t / 1000000000u),
		.tv_nsec = (long)(t % 1000000000u),
	};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
			EINTR)
		;
}

static int
usage(const char *why)
{
	fprintf(stderr, "mc_latency: %s\nusage: mc_latency [-n REQUESTS] "
		"[-r RATE] [-t TIMEOUT_MS] [-w WARMUP] "
		"{udp|tcp}:IP:PORT:KEY...\n", why);
	return 2;
}

/* "udp:IP:PORT:KEY,..." -> t (sockets not opened yet; spec is kept and
 * cut up). Returns 0 or -1. */
static int
parse_target(char *spec, struct target *t)
{
	char *proto = strtok(spec, ":");
	char *ip = strtok(NULL, ":");
	char *port = strtok(NULL, ":");
	char *keys = strtok(NULL, "");
	char *end, *key;
	unsigned long p;

	if (proto == NULL || ip == NULL || port == NULL || keys == NULL)
		return -1;
	if (strcmp(proto, "udp") == 0)
		t->udp = 1;
	else if (strcmp(proto, "tcp") == 0)
		t->udp = 0;
	else
		return -1;
	p = strtoul(port, &end, 10);
	if (*end != '\0' || p == 0 || p > 65535)
		return -1;
	memset(&t->addr, 0, sizeof(t->addr));
	t->addr.sin_family = AF_INET;
	t->addr.sin_port = htons((uint16_t)p);
	if (inet_pton(AF_INET, ip, &t->addr.sin_addr) != 1)
		return -1;
	t->keys = calloc(strlen(keys) / 2 + 1, sizeof(*t->keys));
	if (t->keys == NULL)
		return -1;
	t->nkeys = 0;
	t->next_key = 0;
	for (key = strtok(keys, ","); key != NULL; key = strtok(NULL, ",")) {
		if (strlen(key) > MAX_KEY)
			return -1;
		t->keys[t->nkeys++] = key;
	}
	return t->nkeys > 0 ? 0 : -1;
}

/* Sets t->request to the get of the target's next key. */
static void
next_request(struct target *t)
{
	t->request_len = (size_t)snprintf(t->request, sizeof(t->request),
			"get %s\r\n", t->keys[t->next_key]);
	t->next_key = (t->next_key + 1) % t->nkeys;
}

static int
open_target(struct target *t, int timeout_ms)
{
	struct timeval tv = {
		.tv_sec = timeout_ms / 1000,
		.tv_usec = (timeout_ms % 1000) * 1000,
	};
	int one = 1;

	t->fd = socket(AF_INET, t->udp ? SOCK_DGRAM : SOCK_STREAM, 0);
	if (t->fd < 0)
		return -1;
	if (setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0)
		return -1;
	if (t->udp)
		return 0;
	if (setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one,
			sizeof(one)) != 0)
		return -1;
	return connect(t->fd, (struct sockaddr *)&t->addr, sizeof(t->addr));
}

static int
starts_with(const char *buf, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && memcmp(buf, prefix, n) == 0;
}

/* Whether buf holds a whole reply: values then END, or one error line. */
static int
ends_reply(const char *buf, size_t len)
{
	if (len >= 5 && memcmp(buf + len - 5, "END\r\n", 5) == 0)
		return 1;
	return len >= 2 && memcmp(buf + len - 2, "\r\n", 2) == 0 &&
		(starts_with(buf, len, "ERROR") ||
		 starts_with(buf, len, "CLIENT_ERROR") ||
		 starts_with(buf, len, "SERVER_ERROR"));
}

/* The status letter of a complete reply. */
static char
classify(const char *reply, size_t len)
{
	if (starts_with(reply, len, "VALUE "))
		return 'V';
	if (len == 5 && memcmp(reply, "END\r\n", 5) == 0)
		return 'M';
	return 'E';
}

/* One get over UDP: returns the status, *ns the round trip. Datagrams
 * of other request ids (late answers) are skipped. Replies of several
 * datagrams are not expected (small values) and count as 'E'. */
static char
get_udp(struct target *t, uint16_t req_id, uint64_t *ns)
{
	char out[UDP_HDR + sizeof(t->request)];
	char in[BUF_SIZE];
	uint16_t hdr[4] = { htons(req_id), 0, htons(1), 0 };
	uint64_t start;
	ssize_t n;

	memcpy(out, hdr, UDP_HDR);
	memcpy(out + UDP_HDR, t->request, t->request_len);
	start = now_ns();
	if (sendto(t->fd, out, UDP_HDR + t->request_len, 0,
			(struct sockaddr *)&t->addr, sizeof(t->addr)) < 0)
		return 'T';
	for (;;) {
		n = recv(t->fd, in, sizeof(in), 0);
		if (n < 0)
			return 'T';	/* SO_RCVTIMEO passed (or an error) */
		if (n >= UDP_HDR && memcmp(in, hdr, 2) == 0)
			break;
	}
	*ns = now_ns() - start;
	memcpy(hdr, in, UDP_HDR);
	if (ntohs(hdr[2]) != 1)
		return 'E';
	return classify(in + UDP_HDR, (size_t)n - UDP_HDR);
}

/* One get over TCP, read until the reply is complete. */
static char
get_tcp(struct target *t, uint64_t *ns)
{
	char in[BUF_SIZE];
	size_t len = 0;
	uint64_t start;
	ssize_t n;

	start = now_ns();
	if (send(t->fd, t->request, t->request_len, 0) !=
			(ssize_t)t->request_len)
		return 'T';
	while (!ends_reply(in, len)) {
		if (len == sizeof(in))
			return 'E';
		n = recv(t->fd, in + len, sizeof(in) - len, 0);
		if (n <= 0)
			return 'T';
		len += (size_t)n;
	}
	*ns = now_ns() - start;
	return classify(in, len);
}

int
main(int argc, char **argv)
{
	struct target targets[MAX_TARGETS];
	long requests = 500, warmup = 5, timeout_ms = 1000;
	double rate = 100.0;
	uint64_t next, gap;
	uint16_t req_id;
	int ntargets, opt, i;
	long round;

	while ((opt = getopt(argc, argv, "n:r:t:w:")) != -1) {
		switch (opt) {
		case 'n':
			requests = strtol(optarg, NULL, 10);
			break;
		case 'r':
			rate = strtod(optarg, NULL);
			break;
		case 't':
			timeout_ms = strtol(optarg, NULL, 10);
			break;
		case 'w':
			warmup = strtol(optarg, NULL, 10);
			break;
		default:
			return usage("unknown option");
		}
	}
	if (requests < 1 || warmup < 0 || rate <= 0 || timeout_ms < 1)
		return usage("-n, -r and -t must be positive, -w >= 0");
	ntargets = argc - optind;
	if (ntargets < 1 || ntargets > MAX_TARGETS)
		return usage("give 1 to 8 targets");
	for (i = 0; i < ntargets; i++) {
		if (parse_target(argv[optind + i], &targets[i]) != 0)
			return usage("bad target");
		if (open_target(&targets[i], (int)timeout_ms) != 0) {
			fprintf(stderr, "mc_latency: target %d: %s\n", i,
				strerror(errno));
			return 1;
		}
	}

	req_id = (uint16_t)(getpid() * 7919u);
	gap = (uint64_t)(1e9 / rate);
	next = now_ns();
	for (round = 0; round < warmup + requests; round++) {
		for (int k = 0; k < ntargets; k++) {
			struct target *t = &targets[(k + round) % ntargets];
			uint64_t ns = 0, now;
			char status;

			next_request(t);
			sleep_until(next);
			next += gap;
			if (t->udp)
				status = get_udp(t, ++req_id, &ns);
			else
				status = get_tcp(t, &ns);
			now = now_ns();
			if (next < now)
				next = now;	/* late (a timeout): no burst */
			if (round < warmup)
				continue;
			if (status == 'T')
				printf("%ld T -1\n", (long)(t - targets));
			else
				printf("%ld %c %llu\n", (long)(t - targets),
					status, (unsigned long long)ns);
		}
	}
	return fflush(stdout) == 0 ? 0 : 1;
}
