/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The key-routing core: a key goes to one of N targets (memcached servers, ToRs).
 *
 * A ring is built once from a spec (control path, any thread) and is immutable afterwards, so
 * any number of threads may look keys up in it without locks; a new membership means a new
 * ring, published by swapping a pointer (Python) or through RCU (the data plane). The spec's
 * arrays are copied; the caller keeps ownership of its memory.
 *
 * A lookup does, in order: the exact-match override table on the whole key (a pinned key goes
 * to its target while that target is live); the hash tag (hash only what lies between the two
 * tag characters, as TwemProxy does); the key hash; the distribution:
 *  - ketama: TwemProxy's continuum (160 points per server scaled by weight, MD5 of
 *    "name-i"), binary search for the first point >= hash, wrapping to the first point;
 *  - modula: hash % total weight over a table where server s appears weight(s) times;
 *  - random: a uniformly random live server (per-thread generator);
 *  - rendezvous: weighted highest-random-weight, score = weight / -ln(u(hash, server)).
 * Only live servers take keys. A lookup returns server_ids[position] (the position itself when
 * server_ids is NULL): the spec lists servers in the order the distribution needs (for
 * TwemProxy compatibility, its sorted order) while callers keep their own numbering.
 */
#ifndef TSW_ROUTE_H
#define TSW_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#define TSW_DIST_TABLE(X)        \
	X(KETAMA, ketama)        \
	X(MODULA, modula)        \
	X(RANDOM, random)        \
	X(RENDEZVOUS, rendezvous)

enum tsw_dist_kind {
#define TSW_X(up, low) TSW_DIST_##up,
	TSW_DIST_TABLE(TSW_X)
#undef TSW_X
	TSW_DIST_COUNT
};

/* Returned by lookups when no server is live. */
#define TSW_ROUTE_NONE UINT32_MAX

/* TwemProxy's ketama constants (nc_ketama.c). */
#define TSW_KETAMA_POINTS_PER_SERVER 160
#define TSW_KETAMA_POINTS_PER_HASH 4
#define TSW_KETAMA_MAX_HOSTLEN 86

struct tsw_ring;

struct tsw_ring_spec {
	int distribution;                 /* enum tsw_dist_kind */
	int hash;                         /* enum tsw_hash_kind */
	int has_hash_tag;
	uint8_t hash_tag[2];              /* opening and closing tag characters */
	uint32_t nserver;
	const uint8_t *names;             /* server identities, packed */
	const uint32_t *name_offsets;     /* nserver + 1 offsets into names */
	const uint32_t *weights;          /* nserver weights, each >= 1 */
	const uint8_t *live;              /* nserver flags; NULL means all live */
	const uint32_t *server_ids;       /* nserver values lookups return; NULL: positions */
	uint32_t noverride;
	const uint8_t *override_keys;     /* packed */
	const uint32_t *override_offsets; /* noverride + 1 offsets */
	const uint32_t *override_targets; /* noverride server positions in this spec */
	uint64_t seed;                    /* rendezvous salt and random-generator seed */
};

/*
 * Build a ring. Returns TSW_OK and stores it in *out, or TSW_EINVAL (bad spec: no servers, zero
 * weight, unknown kind, name too long for ketama, override target out of range, duplicate
 * override key) or TSW_ENOMEM.
 */
int
tsw_ring_build(const struct tsw_ring_spec *spec, struct tsw_ring **out);

/* Free a ring; NULL is accepted. */
void
tsw_ring_free(struct tsw_ring *ring);

/* Server index for one key, or TSW_ROUTE_NONE. */
uint32_t
tsw_ring_lookup(const struct tsw_ring *ring, const void *key, size_t len);

/* Key i spans [offsets[i], offsets[i+1]) of `keys`; out[i] gets its server. Returns n. */
size_t
tsw_ring_lookup_batch(const struct tsw_ring *ring, const uint8_t *keys,
		      const uint32_t *offsets, size_t n, uint32_t *out);

/* Keys of equal length `width` laid out back to back (block ids, fixed-size keys). Returns n. */
size_t
tsw_ring_lookup_fixed(const struct tsw_ring *ring, const uint8_t *keys, size_t width,
		      size_t n, uint32_t *out);

/* The hash the distribution sees for a key (after the hash tag). */
uint32_t
tsw_ring_key_hash(const struct tsw_ring *ring, const void *key, size_t len);

/* Number of continuum points (ketama), table slots (modula) or live servers (others). */
uint32_t
tsw_ring_npoints(const struct tsw_ring *ring);

/* Copy up to `cap` continuum points out (value and server index). Returns how many. */
uint32_t
tsw_ring_points(const struct tsw_ring *ring, uint32_t *values, uint32_t *servers,
		uint32_t cap);

/* Live servers in the ring. */
uint32_t
tsw_ring_nlive(const struct tsw_ring *ring);

const char *
tsw_dist_name(int kind);

int
tsw_dist_count(void);

#endif /* TSW_ROUTE_H */
