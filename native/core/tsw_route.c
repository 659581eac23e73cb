/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ring construction (slow path, allocates) and lookup (fast path: no allocation, no locks).
 *
 * Ketama lookups use a jump table over the top TSW_JUMP_BITS of the hash to narrow the binary
 * search to the few points of one bucket; the answer is the same as TwemProxy's plain binary
 * search (first point with value >= hash, wrapping), which the tests check point by point.
 *
 * Most buckets need no search at all: every hash in bucket b lands on one of the points
 * jump[b] .. jump[b + 1] (the last of them, or the first point of the ring after a wrap, for
 * hashes past the bucket's own points), and when those all belong to one server that server is
 * the answer for the whole bucket. `uniform[b]` holds it (as a byte, so the table is 4 KiB and
 * stays in cache), or TSW_UNIFORM_NONE when the bucket's points disagree; it exists only when
 * every server id fits a byte. With 160 points per server and 4096 buckets, about nine buckets
 * in ten are uniform for a handful of servers.
 *
 * The fast path (`fast`): ketama over fnv1a_64, no overrides, no hash tag, some server live,
 * which is nutcracker's default pool and what the data plane's memcached pools use. It hashes
 * inline (the same arithmetic as tsw_hash_fnv1a_64) and skips the general path's branches.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsw/tsw_hash.h"
#include "tsw/tsw_md5.h"
#include "tsw/tsw_route.h"
#include "tsw/tsw_status.h"

#define TSW_JUMP_BITS 12
#define TSW_JUMP_SIZE (1u << TSW_JUMP_BITS)
#define TSW_UNIFORM_NONE 0xffu

struct tsw_point {
	uint32_t value;
	uint32_t server;
};

struct tsw_override {
	uint64_t hash; /* 0 marks an empty slot; real hashes are forced non-zero */
	uint32_t off;
	uint32_t len;
	uint32_t target;
};

struct tsw_rdv_server {
	uint64_t salt;
	double weight;
	uint32_t server;
};

/* Immutable after tsw_ring_build() returns. */
struct tsw_ring {
	int dist;
	int fast;                     /* ketama with fnv1a_64, no overrides or tag, some server live */
	tsw_hash_fn hash;
	int has_tag;
	uint8_t tag[2];
	uint32_t nserver;
	uint32_t nlive;
	uint8_t *live;                /* nserver flags, by position in the spec */
	uint32_t *ids;                /* what a lookup returns for each position */
	uint32_t npoints;
	struct tsw_point *points;     /* ketama continuum, modula table, live list */
	uint32_t *jump;               /* ketama: TSW_JUMP_SIZE + 1 point indexes */
	uint8_t *uniform;             /* ketama: TSW_JUMP_SIZE bucket answers, or NULL (above) */
	struct tsw_rdv_server *rdv;   /* rendezvous: nlive entries */
	uint32_t ovr_mask;            /* override table capacity - 1, or 0 if none */
	struct tsw_override *ovr;
	uint8_t *ovr_keys;
	uint64_t seed;
};

/* Real 64-bit FNV-1a over unsigned bytes: override-table hashing and rendezvous salts. */
static uint64_t
fnv1a64(const void *key, size_t len)
{
	const uint8_t *p = key;
	uint64_t h = UINT64_C(0xcbf29ce484222325);

	while (len--) {
		h ^= *p++;
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

/* SplitMix64 finaliser: a fast 64-bit bijective mixer. */
static inline uint64_t
mix64(uint64_t x)
{
	x += UINT64_C(0x9e3779b97f4a7c15);
	x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
	return x ^ (x >> 31);
}

struct ranked_point {
	uint32_t value;
	uint32_t rank;
	uint32_t server;
};

static int
ranked_cmp(const void *a, const void *b)
{
	const struct ranked_point *p = a, *q = b;

	if (p->value != q->value)
		return p->value < q->value ? -1 : 1;
	return p->rank < q->rank ? -1 : (p->rank > q->rank);
}

/* The bucket answers (see the top of the file); none when some server id needs more than a byte. */
static int
uniform_build(struct tsw_ring *r)
{
	uint32_t b, k;

	if (r->npoints == 0)
		return TSW_OK;
	for (k = 0; k < r->npoints; k++)
		if (r->points[k].server >= TSW_UNIFORM_NONE)
			return TSW_OK;
	r->uniform = malloc(TSW_JUMP_SIZE);
	if (!r->uniform)
		return TSW_ENOMEM;
	for (b = 0; b < TSW_JUMP_SIZE; b++) {
		uint32_t lo = r->jump[b], hi = r->jump[b + 1];
		uint32_t last = r->points[hi == r->npoints ? 0 : hi].server;

		r->uniform[b] = (uint8_t)last;
		for (k = lo; k < hi; k++)
			if (r->points[k].server != last)
				r->uniform[b] = TSW_UNIFORM_NONE;
	}
	return TSW_OK;
}

static int
ketama_build(struct tsw_ring *r, const struct tsw_ring_spec *s)
{
	uint32_t total_weight = 0, i, np = 0, count = 0;
	struct ranked_point *tmp;

	for (i = 0; i < s->nserver; i++)
		if (r->live[i])
			total_weight += s->weights[i];
	/* Upper bound: each server gets at most 160 * nlive points scaled by its share. */
	tmp = calloc((size_t)r->nlive * TSW_KETAMA_POINTS_PER_SERVER + 4, sizeof(*tmp));
	if (!tmp)
		return TSW_ENOMEM;
	for (i = 0; i < s->nserver; i++) {
		const uint8_t *name = s->names + s->name_offsets[i];
		uint32_t namelen = s->name_offsets[i + 1] - s->name_offsets[i];
		uint32_t per_server, idx;
		float pct;

		if (!r->live[i])
			continue;
		/* TwemProxy's arithmetic, in float on purpose: it decides the point count. */
		pct = (float)s->weights[i] / (float)total_weight;
		per_server = (uint32_t)(floorf((float)(pct * TSW_KETAMA_POINTS_PER_SERVER / 4 *
						       (float)r->nlive + 0.0000000001)) *
					4);
		if (count + per_server > (size_t)r->nlive * TSW_KETAMA_POINTS_PER_SERVER + 4) {
			free(tmp);
			return TSW_ERANGE;
		}
		for (idx = 0; idx < per_server / TSW_KETAMA_POINTS_PER_HASH; idx++) {
			char host[TSW_KETAMA_MAX_HOSTLEN + 16];
			uint8_t d[16];
			int hostlen, x;

			hostlen = snprintf(host, sizeof(host), "%.*s-%u", (int)namelen,
					   (const char *)name, idx);
			tsw_md5(host, (size_t)hostlen, d);
			for (x = 0; x < TSW_KETAMA_POINTS_PER_HASH; x++) {
				tmp[count].value = (uint32_t)d[3 + 4 * x] << 24 |
						   (uint32_t)d[2 + 4 * x] << 16 |
						   (uint32_t)d[1 + 4 * x] << 8 | d[4 * x];
				tmp[count].rank = count;
				tmp[count].server = r->ids[i];
				count++;
			}
		}
	}
	qsort(tmp, count, sizeof(*tmp), ranked_cmp);
	r->points = calloc(count ? count : 1, sizeof(*r->points));
	r->jump = calloc(TSW_JUMP_SIZE + 1, sizeof(*r->jump));
	if (!r->points || !r->jump) {
		free(tmp);
		return TSW_ENOMEM;
	}
	for (i = 0; i < count; i++) {
		r->points[i].value = tmp[i].value;
		r->points[i].server = tmp[i].server;
	}
	free(tmp);
	r->npoints = count;
	/* jump[b] = first point whose value >= b << (32 - TSW_JUMP_BITS). */
	for (i = 0; i <= TSW_JUMP_SIZE; i++) {
		uint64_t bound = (uint64_t)i << (32 - TSW_JUMP_BITS);

		while (np < count && r->points[np].value < bound)
			np++;
		r->jump[i] = np;
	}
	return uniform_build(r);
}

static int
modula_build(struct tsw_ring *r, const struct tsw_ring_spec *s)
{
	uint64_t total = 0;
	uint32_t i, w, n = 0;

	for (i = 0; i < s->nserver; i++)
		if (r->live[i])
			total += s->weights[i];
	if (total > (1u << 24))
		return TSW_ERANGE;
	r->points = calloc(total ? total : 1, sizeof(*r->points));
	if (!r->points)
		return TSW_ENOMEM;
	for (i = 0; i < s->nserver; i++) {
		if (!r->live[i])
			continue;
		for (w = 0; w < s->weights[i]; w++)
			r->points[n++].server = r->ids[i];
	}
	r->npoints = n;
	return TSW_OK;
}

static int
live_list_build(struct tsw_ring *r, const struct tsw_ring_spec *s)
{
	uint32_t i, n = 0;

	r->points = calloc(r->nlive ? r->nlive : 1, sizeof(*r->points));
	if (!r->points)
		return TSW_ENOMEM;
	for (i = 0; i < s->nserver; i++)
		if (r->live[i])
			r->points[n++].server = i; /* position; mapped to ids below */
	r->npoints = n;
	if (r->dist != TSW_DIST_RENDEZVOUS)
		goto ids;
	r->rdv = calloc(r->nlive ? r->nlive : 1, sizeof(*r->rdv));
	if (!r->rdv)
		return TSW_ENOMEM;
	for (i = 0; i < n; i++) {
		uint32_t sv = r->points[i].server;
		const uint8_t *name = s->names + s->name_offsets[sv];

		/* Salted by the server's identity, not its position: reordering moves nothing. */
		r->rdv[i].salt = mix64(fnv1a64(name, s->name_offsets[sv + 1] - s->name_offsets[sv]) ^
				       s->seed);
		r->rdv[i].weight = (double)s->weights[sv];
		r->rdv[i].server = r->ids[sv];
	}
ids:
	for (i = 0; i < n; i++)
		r->points[i].server = r->ids[r->points[i].server];
	return TSW_OK;
}

static int
override_build(struct tsw_ring *r, const struct tsw_ring_spec *s)
{
	uint32_t cap = 4, i, total;

	if (!s->noverride)
		return TSW_OK;
	while (cap < 2 * s->noverride)
		cap <<= 1;
	total = s->override_offsets[s->noverride] - s->override_offsets[0];
	r->ovr = calloc(cap, sizeof(*r->ovr));
	r->ovr_keys = malloc(total ? total : 1);
	if (!r->ovr || !r->ovr_keys)
		return TSW_ENOMEM;
	memcpy(r->ovr_keys, s->override_keys + s->override_offsets[0], total);
	r->ovr_mask = cap - 1;
	for (i = 0; i < s->noverride; i++) {
		uint32_t off = s->override_offsets[i] - s->override_offsets[0];
		uint32_t len = s->override_offsets[i + 1] - s->override_offsets[i];
		uint64_t h = fnv1a64(r->ovr_keys + off, len) | 1;
		uint32_t slot = (uint32_t)h & r->ovr_mask;

		if (s->override_targets[i] >= s->nserver)
			return TSW_EINVAL;
		while (r->ovr[slot].hash) {
			struct tsw_override *o = &r->ovr[slot];

			if (o->hash == h && o->len == len &&
			    memcmp(r->ovr_keys + o->off, r->ovr_keys + off, len) == 0)
				return TSW_EINVAL; /* duplicate key */
			slot = (slot + 1) & r->ovr_mask;
		}
		r->ovr[slot] = (struct tsw_override){ h, off, len, s->override_targets[i] };
	}
	return TSW_OK;
}

int
tsw_ring_build(const struct tsw_ring_spec *s, struct tsw_ring **out)
{
	struct tsw_ring *r;
	uint32_t i;
	int rc;

	*out = NULL;
	if (!s || s->nserver == 0 || s->distribution < 0 || s->distribution >= TSW_DIST_COUNT ||
	    !tsw_hash_get(s->hash) || !s->names || !s->name_offsets || !s->weights)
		return TSW_EINVAL;
	for (i = 0; i < s->nserver; i++) {
		uint32_t namelen = s->name_offsets[i + 1] - s->name_offsets[i];

		if (s->weights[i] == 0 || s->name_offsets[i + 1] < s->name_offsets[i])
			return TSW_EINVAL;
		/* "name-159" must fit TwemProxy's 86-byte buffer, or it would hash a truncation. */
		if (s->distribution == TSW_DIST_KETAMA && namelen + 5 >= TSW_KETAMA_MAX_HOSTLEN)
			return TSW_EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return TSW_ENOMEM;
	r->dist = s->distribution;
	r->hash = tsw_hash_get(s->hash);
	r->has_tag = s->has_hash_tag;
	r->tag[0] = s->hash_tag[0];
	r->tag[1] = s->hash_tag[1];
	r->nserver = s->nserver;
	r->seed = s->seed;
	r->live = malloc(s->nserver);
	r->ids = malloc(s->nserver * sizeof(*r->ids));
	if (!r->live || !r->ids) {
		tsw_ring_free(r);
		return TSW_ENOMEM;
	}
	for (i = 0; i < s->nserver; i++) {
		r->live[i] = s->live ? (s->live[i] != 0) : 1;
		r->nlive += r->live[i];
		r->ids[i] = s->server_ids ? s->server_ids[i] : i;
		if (r->ids[i] == TSW_ROUTE_NONE) {
			tsw_ring_free(r);
			return TSW_EINVAL;
		}
	}
	switch (r->dist) {
	case TSW_DIST_KETAMA:
		rc = ketama_build(r, s);
		break;
	case TSW_DIST_MODULA:
		rc = modula_build(r, s);
		break;
	default:
		rc = live_list_build(r, s);
		break;
	}
	if (rc == TSW_OK)
		rc = override_build(r, s);
	if (rc != TSW_OK) {
		tsw_ring_free(r);
		return rc;
	}
	r->fast = r->dist == TSW_DIST_KETAMA && s->hash == TSW_HASH_FNV1A_64 && !r->ovr &&
		  !r->has_tag && r->nlive != 0;
	*out = r;
	return TSW_OK;
}

void
tsw_ring_free(struct tsw_ring *r)
{
	if (!r)
		return;
	free(r->live);
	free(r->ids);
	free(r->points);
	free(r->jump);
	free(r->uniform);
	free(r->rdv);
	free(r->ovr);
	free(r->ovr_keys);
	free(r);
}

static inline const uint8_t *
apply_hash_tag(const struct tsw_ring *r, const uint8_t *key, size_t *len)
{
	const uint8_t *start, *end;

	if (!r->has_tag)
		return key;
	start = memchr(key, r->tag[0], *len);
	if (!start)
		return key;
	end = memchr(start + 1, r->tag[1], (size_t)(key + *len - (start + 1)));
	/* An empty tag ("{}") hashes the whole key, as TwemProxy does. */
	if (!end || end - start <= 1)
		return key;
	*len = (size_t)(end - start - 1);
	return start + 1;
}

uint32_t
tsw_ring_key_hash(const struct tsw_ring *r, const void *key, size_t len)
{
	const uint8_t *k = apply_hash_tag(r, key, &len);

	/* TwemProxy hashes an empty key to 0 rather than calling the hash function. */
	return len ? r->hash(k, len) : 0;
}

static inline uint32_t
ketama_find(const struct tsw_ring *r, uint32_t hash)
{
	uint32_t b = hash >> (32 - TSW_JUMP_BITS);
	uint32_t lo, hi, mid;

	if (__builtin_expect(r->uniform != NULL, 1)) {
		uint32_t u = r->uniform[b];

		if (__builtin_expect(u != TSW_UNIFORM_NONE, 1))
			return u;
	}
	lo = r->jump[b];
	hi = r->jump[b + 1];

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (r->points[mid].value < hash)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == r->npoints)
		lo = 0;
	return r->points[lo].server;
}

static _Thread_local uint64_t rng_state;

static inline uint32_t
random_pick(const struct tsw_ring *r)
{
	if (!rng_state)
		rng_state = mix64(r->seed ^ (uint64_t)(uintptr_t)&rng_state) | 1;
	/* xorshift64 */
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return r->points[rng_state % r->npoints].server;
}

static inline uint32_t
rendezvous_pick(const struct tsw_ring *r, uint32_t hash)
{
	uint64_t base = (uint64_t)hash << 32 | hash;
	double best = -1.0;
	uint32_t i, pick = TSW_ROUTE_NONE;

	for (i = 0; i < r->nlive; i++) {
		uint64_t x = mix64(base ^ r->rdv[i].salt);
		/* u in (0, 1): 53 random bits, centred so neither end is reachable. */
		double u = ((double)(x >> 11) + 0.5) * (1.0 / 9007199254740992.0);
		double score = r->rdv[i].weight / -log(u);

		if (score > best) {
			best = score;
			pick = r->rdv[i].server;
		}
	}
	return pick;
}

static inline uint32_t
override_find(const struct tsw_ring *r, const uint8_t *key, size_t len)
{
	uint64_t h = fnv1a64(key, len) | 1;
	uint32_t slot = (uint32_t)h & r->ovr_mask;

	while (r->ovr[slot].hash) {
		const struct tsw_override *o = &r->ovr[slot];

		if (o->hash == h && o->len == len && memcmp(r->ovr_keys + o->off, key, len) == 0)
			return r->live[o->target] ? r->ids[o->target] : TSW_ROUTE_NONE;
		slot = (slot + 1) & r->ovr_mask;
	}
	return TSW_ROUTE_NONE;
}

/*
 * TwemProxy's fnv1a_64 as tsw_hash_fnv1a_64 computes it (the low 32 bits of the 64-bit FNV-1a
 * over signed bytes, which only ever need 32-bit arithmetic), inline for the fast path below.
 */
#define FNV1A_LOW(h, b) (((h) ^ (uint32_t)(int32_t)(signed char)(b)) * UINT32_C(0x1b3))

static inline uint32_t
fnv1a_64_low(const uint8_t *p, size_t len)
{
	uint32_t h = UINT32_C(0x84222325);

	/* Blocks of eight and four bytes: the multiplies are a chain anyway, the loop's own work
	 * is not. */
	for (; len >= 8; p += 8, len -= 8) {
		h = FNV1A_LOW(h, p[0]);
		h = FNV1A_LOW(h, p[1]);
		h = FNV1A_LOW(h, p[2]);
		h = FNV1A_LOW(h, p[3]);
		h = FNV1A_LOW(h, p[4]);
		h = FNV1A_LOW(h, p[5]);
		h = FNV1A_LOW(h, p[6]);
		h = FNV1A_LOW(h, p[7]);
	}
	if (len >= 4) {
		h = FNV1A_LOW(h, p[0]);
		h = FNV1A_LOW(h, p[1]);
		h = FNV1A_LOW(h, p[2]);
		h = FNV1A_LOW(h, p[3]);
		p += 4;
		len -= 4;
	}
	if (len & 2) {
		h = FNV1A_LOW(h, p[0]);
		h = FNV1A_LOW(h, p[1]);
		p += 2;
	}
	if (len & 1)
		h = FNV1A_LOW(h, p[0]);
	return h;
}

/* Everything but the fast path; out of line, so the fast path saves no registers for it. */
static __attribute__((noinline)) uint32_t
lookup_general(const struct tsw_ring *r, const void *key, size_t len)
{
	uint32_t hash;

	if (r->ovr) {
		uint32_t t = override_find(r, key, len);

		if (t != TSW_ROUTE_NONE)
			return t;
	}
	if (r->nlive == 0)
		return TSW_ROUTE_NONE;
	hash = tsw_ring_key_hash(r, key, len);
	switch (r->dist) {
	case TSW_DIST_KETAMA:
		return ketama_find(r, hash);
	case TSW_DIST_MODULA:
		return r->points[hash % r->npoints].server;
	case TSW_DIST_RANDOM:
		return random_pick(r);
	default:
		return rendezvous_pick(r, hash);
	}
}

uint32_t
tsw_ring_lookup(const struct tsw_ring *r, const void *key, size_t len)
{
	/* The common configuration (a memcached pool as nutcracker's default), without the calls
	 * and branches of the general path: the same hash and the same search. */
	if (__builtin_expect(r->fast, 1))
		return ketama_find(r, len ? fnv1a_64_low(key, len) : 0);
	return lookup_general(r, key, len);
}

size_t
tsw_ring_lookup_batch(const struct tsw_ring *r, const uint8_t *keys, const uint32_t *offsets,
		      size_t n, uint32_t *out)
{
	size_t i;

	if (r->dist == TSW_DIST_KETAMA && !r->ovr && !r->has_tag && r->nlive) {
		/* The common case, without per-key branches on configuration. */
		for (i = 0; i < n; i++) {
			uint32_t len = offsets[i + 1] - offsets[i];
			uint32_t h = len ? r->hash(keys + offsets[i], len) : 0;

			out[i] = ketama_find(r, h);
		}
		return n;
	}
	for (i = 0; i < n; i++)
		out[i] = tsw_ring_lookup(r, keys + offsets[i], offsets[i + 1] - offsets[i]);
	return n;
}

size_t
tsw_ring_lookup_fixed(const struct tsw_ring *r, const uint8_t *keys, size_t width, size_t n,
		      uint32_t *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		out[i] = tsw_ring_lookup(r, keys + i * width, width);
	return n;
}

uint32_t
tsw_ring_npoints(const struct tsw_ring *r)
{
	return r->npoints;
}

uint32_t
tsw_ring_nlive(const struct tsw_ring *r)
{
	return r->nlive;
}

uint32_t
tsw_ring_points(const struct tsw_ring *r, uint32_t *values, uint32_t *servers, uint32_t cap)
{
	uint32_t i, n = r->npoints < cap ? r->npoints : cap;

	for (i = 0; i < n; i++) {
		values[i] = r->points[i].value;
		servers[i] = r->points[i].server;
	}
	return n;
}

static const char *const dist_names[TSW_DIST_COUNT] = {
#define TSW_X(up, low) [TSW_DIST_##up] = #low,
	TSW_DIST_TABLE(TSW_X)
#undef TSW_X
};

const char *
tsw_dist_name(int kind)
{
	if (kind < 0 || kind >= TSW_DIST_COUNT)
		return NULL;
	return dist_names[kind];
}

int
tsw_dist_count(void)
{
	return TSW_DIST_COUNT;
}
