/* SPDX-License-Identifier: Apache-2.0 */
/*
 * MemSwitch's slow half (see dp_mc.h): start-up (dp_mc_init, the pool
 * file), the control verbs (dp_mc_ctl), publishing and retiring pools,
 * and the counters dump. Runs on the main thread before the worker
 * starts, then on the control and stats threads; never on the worker.
 *
 * Publishing a pool: validate every word, build the ring, then one atomic
 * store of the pointer (and of any_pool / pool_hi). The replaced pool is
 * freed once the worker has finished two rounds after the store (it loads
 * the pointers again every frame), or at once when the worker is not
 * running. dp_mc_lock keeps the stats writer from reading a pool while
 * it is freed; the worker never takes it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_cycles.h>
#include <rte_ether.h>

#include "tsw/tsw_hash.h"
#include "tsw/tsw_route.h"
#include "tsw/tsw_status.h"

#include "dp.h"

#define DP_MC_METRIC "tsw_dataplane_mc_"
#define DP_MC_RETIRE_POLL_NS 100000L	/* 0.1 ms */
#define DP_MC_RETIRE_MAX_S 5		/* then the old pool is leaked */
/* MACs in status lines: lower case, as ip(8) and sysfs print them. */
#define DP_MC_MAC_FMT "%02x:%02x:%02x:%02x:%02x:%02x"
#define DP_MC_MAX_IDENTITY (sizeof(((struct dp_mc_server *)0)->name) - 1)

static pthread_mutex_t dp_mc_lock = PTHREAD_MUTEX_INITIALIZER;

static void
dp_mc_pool_free(struct dp_mc_pool *p)
{
	if (p == NULL)
		return;
	tsw_ring_free(p->ring);
	free(p);
}

/* ---- parsing the words of mc-pool ----------------------------------------- */

static bool
dp_mc_num(const char *s, unsigned long max, unsigned long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno == 0 && *end == '\0' && *out <= max;
}

static bool
dp_mc_ipv4(const char *s, uint32_t *host)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		return false;
	*host = ntohl(a.s_addr);
	return true;
}

static bool
dp_mc_mac(const char *s, struct rte_ether_addr *a)
{
	return strlen(s) == 17 && rte_ether_unformat_addr(s, a) == 0 &&
		rte_is_unicast_ether_addr(a);
}

static int
dp_mc_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* SID,IP,PORT,MAC,WEIGHT,LIVE,IDENTITY_HEX into s. */
static const char *
dp_mc_parse_server(char *word, struct dp_mc_server *s)
{
	char *f[7], *save = NULL, *tok;
	unsigned long v;
	size_t n, i;
	int nf = 0, hi, lo;

	for (tok = strtok_r(word, ",", &save); tok != NULL;
			tok = strtok_r(NULL, ",", &save)) {
		if (nf == 7)
			return "a server is SID,IP,PORT,MAC,WEIGHT,LIVE,IDENTITY_HEX";
		f[nf++] = tok;
	}
	if (nf != 7)
		return "a server is SID,IP,PORT,MAC,WEIGHT,LIVE,IDENTITY_HEX";
	if (!dp_mc_num(f[0], DP_MC_MAX_SERVER_IDS - 1, &v))
		return "server ids are numbers below 256";
	s->id = (uint16_t)v;
	if (!dp_mc_ipv4(f[1], &s->ip))
		return "server address is not a.b.c.d";
	if (!dp_mc_num(f[2], 65535, &v) || v == 0)
		return "server port is not 1..65535";
	s->port = (uint16_t)v;
	if (strcmp(f[5], "1") != 0 && strcmp(f[5], "0") != 0)
		return "server liveness is 1 or 0";
	s->live = f[5][0] == '1';
	/* A server whose MAC is not known yet may be listed, not live. */
	if (!dp_mc_mac(f[3], &s->mac) ||
			(s->live && rte_is_zero_ether_addr(&s->mac)))
		return "server MAC is not a unicast aa:bb:cc:dd:ee:ff (zero "
			"only when not live)";
	if (!dp_mc_num(f[4], 1000000, &v) || v == 0)
		return "server weight is not 1..1000000";
	s->weight = (uint32_t)v;
	n = strlen(f[6]);
	if (n == 0 || n % 2 != 0 || n / 2 > DP_MC_MAX_IDENTITY)
		return "server identity is not 1..95 bytes of hex";
	for (i = 0; i < n / 2; i++) {
		hi = dp_mc_hex(f[6][2 * i]);
		lo = dp_mc_hex(f[6][2 * i + 1]);
		if (hi < 0 || lo < 0)
			return "server identity is not hex";
		s->name[i] = (char)(hi << 4 | lo);
		if (s->name[i] < 0x20 || s->name[i] > 0x7e)
			return "server identity is not printable ASCII";
	}
	s->name[n / 2] = '\0';
	return NULL;
}

static bool
dp_mc_name_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n >= sizeof(((struct dp_mc_pool *)0)->name))
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
				(s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
				s[i] == '-' || s[i] == '.'))
			return false;
	return true;
}

/* mc-pool ID NAME VIP:PORT VMAC HASH DIST TAG CACHE SERVER...: a new pool,
 * not yet published. */
static const char *
dp_mc_build_pool(struct dp_core *dc, char **w, int nw, struct dp_mc_pool **out)
{
	uint8_t names[DP_MC_MAX_SERVERS * (DP_MC_MAX_IDENTITY + 1)];
	uint32_t offs[DP_MC_MAX_SERVERS + 1], weights[DP_MC_MAX_SERVERS];
	uint8_t live[DP_MC_MAX_SERVERS];
	struct tsw_ring_spec spec;
	struct dp_mc_pool *p, *other;
	const char *err = NULL;
	char *colon;
	unsigned long v;
	int i, j, rc;

	if (nw < 10)
		return "mc-pool takes ID NAME VIP:PORT VMAC HASH DIST TAG CACHE "
			"SERVER...";
	if (nw - 9 > DP_MC_MAX_SERVERS)
		return "more than 32 servers";
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return "out of memory";
	if (!dp_mc_num(w[1], DP_MC_MAX_POOLS - 1, &v)) {
		err = "pool ids are 0..7";
		goto fail;
	}
	p->id = (uint16_t)v;
	if (!dp_mc_name_ok(w[2])) {
		err = "pool names are 1..63 of A-Z a-z 0-9 _ - .";
		goto fail;
	}
	strcpy(p->name, w[2]);
	colon = strrchr(w[3], ':');
	if (colon == NULL) {
		err = "the pool address is VIP:PORT";
		goto fail;
	}
	*colon = '\0';
	if (!dp_mc_ipv4(w[3], &p->vip) || !dp_mc_num(colon + 1, 65535, &v) ||
			v == 0) {
		err = "the pool address is a.b.c.d:PORT";
		goto fail;
	}
	p->vport = (uint16_t)v;
	p->vip_be = rte_cpu_to_be_32(p->vip);
	p->vport_be = rte_cpu_to_be_16(p->vport);
	if (!dp_mc_mac(w[4], &p->vmac) || rte_is_zero_ether_addr(&p->vmac)) {
		err = "the pool MAC is not a unicast aa:bb:cc:dd:ee:ff";
		goto fail;
	}
	p->hash = -1;
	for (i = 0; i < tsw_hash_count(); i++)
		if (strcmp(w[5], tsw_hash_name(i)) == 0)
			p->hash = i;
	p->dist = -1;
	for (i = 0; i < tsw_dist_count(); i++)
		if (strcmp(w[6], tsw_dist_name(i)) == 0)
			p->dist = i;
	if (p->hash < 0 || p->dist < 0) {
		err = "unknown hash or distribution";
		goto fail;
	}
	if (strcmp(w[7], "-") != 0) {
		if (strlen(w[7]) != 2) {
			err = "the hash tag is two characters or -";
			goto fail;
		}
		strcpy(p->tag, w[7]);
	}
	if (strcmp(w[8], "on") != 0 && strcmp(w[8], "off") != 0) {
		err = "cache is on or off";
		goto fail;
	}
	p->cache = strcmp(w[8], "on") == 0;
	p->nservers = (uint16_t)(nw - 9);
	p->first_live = -1;
	offs[0] = 0;
	for (i = 0; i < p->nservers; i++) {
		struct dp_mc_server *s = &p->servers[i];
		size_t n;

		err = dp_mc_parse_server(w[9 + i], s);
		if (err != NULL)
			goto fail;
		for (j = 0; j < i; j++)
			if (p->servers[j].id == s->id) {
				err = "a server id appears twice";
				goto fail;
			}
		if (s->live && p->first_live < 0)
			p->first_live = (int16_t)i;
		n = strlen(s->name);
		memcpy(names + offs[i], s->name, n);
		offs[i + 1] = offs[i] + (uint32_t)n;
		weights[i] = s->weight;
		live[i] = s->live;
	}
	/* Counters are per server id over all pools, so ids are too. */
	for (i = 0; i < DP_MC_MAX_POOLS; i++) {
		other = __atomic_load_n(&dc->mc.pools[i], __ATOMIC_ACQUIRE);
		if (other == NULL || other->id == p->id)
			continue;
		if (other->vip == p->vip && other->vport == p->vport) {
			err = "VIP:PORT belongs to another pool";
			goto fail;
		}
		for (j = 0; j < other->nservers * p->nservers; j++)
			if (other->servers[j / p->nservers].id ==
					p->servers[j % p->nservers].id) {
				err = "a server id belongs to another pool";
				goto fail;
			}
	}
	memset(&spec, 0, sizeof(spec));
	spec.distribution = p->dist;
	spec.hash = p->hash;
	spec.has_hash_tag = p->tag[0] != '\0';
	memcpy(spec.hash_tag, p->tag, 2);
	spec.nserver = p->nservers;
	spec.names = names;
	spec.name_offsets = offs;
	spec.weights = weights;
	spec.live = live;
	rc = tsw_ring_build(&spec, &p->ring);
	if (rc != TSW_OK) {
		err = rc == TSW_ENOMEM ? "out of memory" :
			"the ring cannot be built (identity too long for ketama?)";
		goto fail;
	}
	*out = p;
	return NULL;
fail:
	dp_mc_pool_free(p);
	return err;
}

/* ---- publishing ------------------------------------------------------------ */

static void
dp_mc_publish(struct dp_core *dc, uint16_t id, struct dp_mc_pool *p,
		struct dp_mc_pool **old)
{
	struct dp_mc_state *mc = &dc->mc;
	uint8_t hi = 0, any = 0;
	unsigned int i;

	/* Keys may move: no cached value may outlive the mapping it was
	 * filled under. Flushed before the store (a frame that sees the new
	 * pool also sees the flush request) and again after it (fills that
	 * raced the store under the old pool). */
	if (mc->cache != NULL)
		dp_mc_cache_flush_async(mc->cache);
	pthread_mutex_lock(&dp_mc_lock);
	*old = mc->pools[id];
	__atomic_store_n(&mc->pools[id], p, __ATOMIC_RELEASE);
	for (i = 0; i < DP_MC_MAX_POOLS; i++)
		if (mc->pools[i] != NULL) {
			hi = (uint8_t)(i + 1);
			any = 1;
		}
	/* Raised after the pointer store, lowered after the clear: the
	 * worker never skips a published slot. */
	__atomic_store_n(&mc->pool_hi, hi, __ATOMIC_RELEASE);
	__atomic_store_n(&mc->any_pool, any, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&dp_mc_lock);
	if (mc->cache != NULL)
		dp_mc_cache_flush_async(mc->cache);
}

/* Frees a pool no frame can still be using: after the worker has gone
 * through two rounds since it was replaced, or at once when the worker is
 * not running. */
static void
dp_mc_retire(struct dp_core *dc, struct dp_mc_pool *old)
{
	struct timespec ts = { 0, DP_MC_RETIRE_POLL_NS };
	uint64_t r0, polls = 0;

	if (old == NULL)
		return;
	/* Pairs with the worker's sequentially consistent round store (and
	 * its fence after starting): the new pointer is visible to every
	 * round that starts after the round count read here. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	r0 = __atomic_load_n(&dc->mc.rounds, __ATOMIC_ACQUIRE);
	for (;;) {
		if (__atomic_load_n(&dc->worker_start_tsc, __ATOMIC_ACQUIRE) == 0 ||
				__atomic_load_n(&dc->worker_stop_tsc,
					__ATOMIC_ACQUIRE) != 0 ||
				__atomic_load_n(&dc->mc.rounds,
					__ATOMIC_ACQUIRE) >= r0 + 2)
			break;
		if (++polls > (uint64_t)DP_MC_RETIRE_MAX_S * 1000000000L /
				DP_MC_RETIRE_POLL_NS) {
			fprintf(stderr, "tsw-dataplane: worker stalled, pool %s "
					"not freed\n", old->name);
			return;
		}
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&dp_mc_lock);
	dp_mc_pool_free(old);
	pthread_mutex_unlock(&dp_mc_lock);
}

/* ---- control verbs ------------------------------------------------------------ */

static void
dp_mc_status(struct dp_core *dc, FILE *f)
{
	struct dp_mc_state *mc = &dc->mc;
	const struct dp_mc_pool *p;
	unsigned int i, j;
	size_t k;

	fprintf(f, "cache_slots=%u\ncache_entries=%u\nrequests_in_flight=%u\n",
			mc->cache != NULL ? mc->opt.cache_slots : 0,
			mc->cache != NULL ? dp_mc_cache_entries(mc->cache) : 0,
			mc->reqs != NULL ? dp_mc_flow_count(mc->reqs) : 0);
	pthread_mutex_lock(&dp_mc_lock);
	for (i = 0; i < DP_MC_MAX_POOLS; i++) {
		p = mc->pools[i];
		if (p == NULL)
			continue;
		fprintf(f, "pool=%u name=%s vip=%u.%u.%u.%u port=%u vmac="
				DP_MC_MAC_FMT " hash=%s distribution=%s "
				"hash_tag=%s cache=%s servers=%u\n", p->id, p->name,
				p->vip >> 24, p->vip >> 16 & 255, p->vip >> 8 & 255,
				p->vip & 255, p->vport,
				RTE_ETHER_ADDR_BYTES(&p->vmac), tsw_hash_name(p->hash),
				tsw_dist_name(p->dist), p->tag[0] ? p->tag : "-",
				p->cache ? "on" : "off", p->nservers);
		for (j = 0; j < p->nservers; j++) {
			const struct dp_mc_server *s = &p->servers[j];

			fprintf(f, "server pool=%u sid=%u ip=%u.%u.%u.%u port=%u "
					"mac=" DP_MC_MAC_FMT
					" weight=%u live=%u identity=", p->id,
					s->id, s->ip >> 24, s->ip >> 16 & 255,
					s->ip >> 8 & 255, s->ip & 255, s->port,
					RTE_ETHER_ADDR_BYTES(&s->mac), s->weight,
					s->live);
			for (k = 0; s->name[k] != '\0'; k++)
				fprintf(f, "%02x", (unsigned char)s->name[k]);
			fputc('\n', f);
		}
	}
	pthread_mutex_unlock(&dp_mc_lock);
}

const char *
dp_mc_ctl(struct dp_core *dc, char **w, int nw, FILE *f)
{
	struct dp_mc_pool *p = NULL, *old = NULL;
	unsigned long id;
	const char *err;

	if (strcmp(w[0], "mc-pool") == 0) {
		if (dc->opt.mode != DP_MODE_SWITCH)
			return "memcached pools need --mode switch";
		err = dp_mc_build_pool(dc, w, nw, &p);
		if (err != NULL)
			return err;
		dp_mc_publish(dc, p->id, p, &old);
		dp_mc_retire(dc, old);
		return NULL;
	}
	if (strcmp(w[0], "mc-pool-del") == 0 && nw == 2) {
		if (!dp_mc_num(w[1], DP_MC_MAX_POOLS - 1, &id))
			return "pool ids are 0..7";
		if (dc->mc.pools[id] == NULL)
			return "no such pool";
		dp_mc_publish(dc, (uint16_t)id, NULL, &old);
		dp_mc_retire(dc, old);
		return NULL;
	}
	if (strcmp(w[0], "mc-flush") == 0 && nw == 1) {
		if (dc->mc.cache != NULL)
			dp_mc_cache_flush_async(dc->mc.cache);
		return NULL;
	}
	if (strcmp(w[0], "mc-status") == 0 && nw == 1) {
		dp_mc_status(dc, f);
		return NULL;
	}
	return "unknown command or wrong number of arguments";
}

/* ---- start-up ------------------------------------------------------------------- */

static uint32_t
dp_mc_pow2(uint64_t v, uint32_t min, uint32_t max)
{
	uint32_t n = min;

	while (n < v && n < max)
		n <<= 1;
	return n;
}

/* Applies the control lines of a pool file. Returns 0 or -EINVAL (with
 * the line number on stderr), or a negative errno to open it. */
static int
dp_mc_apply_file(struct dp_core *dc, const char *path)
{
	char *line = NULL, *w[DP_MC_MAX_SERVERS + 16], *save, *tok;
	const char *err;
	size_t cap = 0;
	unsigned int lineno = 0;
	int nw, rc = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		rc = -errno;
		fprintf(stderr, "tsw-dataplane: --mc-pool-file %s: %s\n", path,
				strerror(errno));
		return rc;
	}
	while (getline(&line, &cap, f) >= 0) {
		lineno++;
		nw = 0;
		err = NULL;
		save = NULL;
		for (tok = strtok_r(line, " \t\r\n", &save); tok != NULL;
				tok = strtok_r(NULL, " \t\r\n", &save)) {
			if (nw == (int)RTE_DIM(w)) {
				err = "too many words";
				break;
			}
			w[nw++] = tok;
		}
		if (err == NULL && (nw == 0 || w[0][0] == '#'))
			continue;
		if (err == NULL && strncmp(w[0], "mc-", 3) != 0)
			err = "not an mc- command";
		if (err == NULL)
			err = dp_mc_ctl(dc, w, nw, stdout);
		if (err != NULL) {
			fprintf(stderr, "tsw-dataplane: %s line %u: %s\n", path,
					lineno, err);
			rc = -EINVAL;
			break;
		}
	}
	free(line);
	fclose(f);
	return rc;
}

int
dp_mc_init(struct dp_core *dc, struct rte_mempool *pool)
{
	struct dp_mc_state *mc = &dc->mc;
	uint64_t ms = rte_get_tsc_hz() / 1000;
	int rc;

	mc->pktpool = pool;
	mc->req_timeout_tsc = ms * DP_MC_REQ_TIMEOUT_MS;
	if (mc->opt.cache_slots != 0) {
		struct dp_mc_cache_config cfg = {
			.nslots = mc->opt.cache_slots,
			.max_value = mc->opt.max_value,
			.hot_threshold = mc->opt.hot_threshold,
			.sketch_width = dp_mc_pow2((uint64_t)mc->opt.cache_slots * 4,
					1024, 1u << 24),
			.nstripes = dp_mc_pow2(mc->opt.cache_slots, 1024, 1u << 16),
			.ttl_tsc = ms * mc->opt.ttl_ms,
			.write_timeout_tsc = ms * mc->opt.write_timeout_ms,
			.pending_timeout_tsc = ms * DP_MC_REQ_TIMEOUT_MS,
		};

		cfg.decay_every = cfg.sketch_width * 16;
		rc = dp_mc_cache_create(&cfg, &mc->cache);
		if (rc != 0) {
			fprintf(stderr, "tsw-dataplane: memcached cache of %u "
					"slots: %s\n", mc->opt.cache_slots,
					strerror(-rc));
			return rc;
		}
	}
	rc = dp_mc_flow_create(DP_MC_REQ_ENTRIES, dp_mc_req_release, dc,
			&mc->reqs);
	if (rc == 0)
		rc = dp_mc_flow_create(DP_MC_FRAG_ENTRIES, NULL, NULL, &mc->frags);
	if (rc == 0)
		rc = dp_mc_splits_create(dc);
	if (rc != 0) {
		fprintf(stderr, "tsw-dataplane: memcached tables: %s\n",
				strerror(-rc));
		dp_mc_free(dc);
		return rc;
	}
	if (mc->opt.pool_file != NULL) {
		rc = dp_mc_apply_file(dc, mc->opt.pool_file);
		if (rc != 0) {
			dp_mc_free(dc);
			return rc;
		}
	}
	return 0;
}

/* After the worker has stopped. */
void
dp_mc_free(struct dp_core *dc)
{
	struct dp_mc_state *mc = &dc->mc;
	unsigned int i;

	for (i = 0; i < DP_MC_MAX_POOLS; i++) {
		dp_mc_pool_free(mc->pools[i]);
		mc->pools[i] = NULL;
	}
	mc->any_pool = 0;
	mc->pool_hi = 0;
	/* Releases the splits' held buffers, so before the split state. */
	dp_mc_flow_free(mc->reqs);
	dp_mc_flow_free(mc->frags);
	mc->reqs = NULL;
	mc->frags = NULL;
	dp_mc_splits_free(dc);
	dp_mc_cache_free(mc->cache);
	mc->cache = NULL;
}

/* ---- stats ------------------------------------------------------------------------- */

/* A label value: identities may hold " and \. */
static void
dp_mc_label(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
}

void
dp_mc_stats_print(const struct dp_core *dc, FILE *f)
{
	const struct dp_mc_state *mc = &dc->mc;
	const struct dp_mc_pool *p;
	unsigned int i, j;

	pthread_mutex_lock(&dp_mc_lock);
#define DP_MC_PRINT_POOL(cname, help) \
	fprintf(f, "# HELP " DP_MC_METRIC #cname "_total " help "\n" \
		"# TYPE " DP_MC_METRIC #cname "_total counter\n"); \
	for (i = 0; i < DP_MC_MAX_POOLS; i++) { \
		if ((p = mc->pools[i]) == NULL) \
			continue; \
		fprintf(f, DP_MC_METRIC #cname "_total{pool=\"%s\"," \
			"pool_id=\"%u\"} %" PRIu64 "\n", p->name, i, \
			__atomic_load_n(&mc->pool_stats[i].cname, \
				__ATOMIC_RELAXED)); \
	}
	DP_MC_POOL_COUNTERS(DP_MC_PRINT_POOL)
#undef DP_MC_PRINT_POOL

#define DP_MC_PRINT_SERVER(cname, help) \
	fprintf(f, "# HELP " DP_MC_METRIC "server_" #cname "_total " help "\n" \
		"# TYPE " DP_MC_METRIC "server_" #cname "_total counter\n"); \
	for (i = 0; i < DP_MC_MAX_POOLS; i++) { \
		if ((p = mc->pools[i]) == NULL) \
			continue; \
		for (j = 0; j < p->nservers; j++) { \
			fprintf(f, DP_MC_METRIC "server_" #cname \
				"_total{pool=\"%s\",server=\"", p->name); \
			dp_mc_label(f, p->servers[j].name); \
			fprintf(f, "\",sid=\"%u\"} %" PRIu64 "\n", \
				p->servers[j].id, __atomic_load_n( \
				&mc->server_stats[p->servers[j].id].cname, \
				__ATOMIC_RELAXED)); \
		} \
	}
	DP_MC_SERVER_COUNTERS(DP_MC_PRINT_SERVER)
#undef DP_MC_PRINT_SERVER
	pthread_mutex_unlock(&dp_mc_lock);

	fprintf(f, "# HELP " DP_MC_METRIC "parse_total memcached request "
			"datagrams by parse result\n"
			"# TYPE " DP_MC_METRIC "parse_total counter\n");
	for (i = 0; i < DP_MC_RESULT_COUNT; i++)
		fprintf(f, DP_MC_METRIC "parse_total{result=\"%s\"} %" PRIu64 "\n",
				dp_mc_result_name((enum dp_mc_result)i),
				__atomic_load_n(&mc->parse_results[i],
					__ATOMIC_RELAXED));
	fprintf(f, "# HELP " DP_MC_METRIC "fill_total single-value replies "
			"offered to the cache, by result\n"
			"# TYPE " DP_MC_METRIC "fill_total counter\n");
	for (i = 0; i < DP_MC_FILL_RESULT_COUNT; i++)
		fprintf(f, DP_MC_METRIC "fill_total{result=\"%s\"} %" PRIu64 "\n",
				dp_mc_fill_result_name((enum dp_mc_fill_result)i),
				__atomic_load_n(&mc->fill_results[i],
					__ATOMIC_RELAXED));
	fprintf(f, "# HELP " DP_MC_METRIC "cache_entries live entries in the "
			"memcached cache\n"
			"# TYPE " DP_MC_METRIC "cache_entries gauge\n"
			DP_MC_METRIC "cache_entries %u\n",
			mc->cache != NULL ? dp_mc_cache_entries(mc->cache) : 0);
	fprintf(f, "# HELP " DP_MC_METRIC "requests_in_flight memcached "
			"request-table entries (writes, multi-datagram requests, "
			"splits)\n"
			"# TYPE " DP_MC_METRIC "requests_in_flight gauge\n"
			DP_MC_METRIC "requests_in_flight %u\n",
			mc->reqs != NULL ? dp_mc_flow_count(mc->reqs) : 0);
}
