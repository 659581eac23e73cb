/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memcached hot-key cache (dp_mc_cache.h). Plain C11, no DPDK; all
 * memory is taken in dp_mc_cache_create().
 *
 * Layout. nslots slots, each a struct dp_mc_slot header (one 64-byte
 * line) and its text: the whole reply a hit is answered with,
 *   "VALUE <key> <flags> <bytes>\r\n<value>\r\nEND\r\n",
 * room for a 250-byte key, 10-digit flags, 7-digit length and max_value
 * value bytes (284 + max_value), padded to 64: slot i of set s is slot
 * s * DP_MC_CACHE_WAYS + i, so a set is contiguous. Then the sketch (4
 * rows of sketch_width 16-bit counters) and the stripes. Footprint, in
 * bytes:
 *   nslots * round_up(348 + max_value, 64)
 *   + 8 * sketch_width + 24 * nstripes + sizeof(struct dp_mc_cache)
 *
 * The text. A pending slot holds "VALUE <key>" (the key is compared
 * there); a fill writes the rest, and the 16-bit ones'-complement sum of
 * the whole text (dp_mc_sum, from an even offset), so a hit is a copy
 * and a checksum from sums, with no formatting and no pass over the
 * value. The value stays where dp_mc_hit.value points, as before.
 *
 * Hash bits. The set is the low bits of the key hash, the stripe bits
 * 40..55, and each sketch row takes the top bits of the hash times its
 * own odd constant, so the three are not the same bits.
 *
 * Configuration. nslots is rounded up to a power of two, at least
 * DP_MC_CACHE_WAYS, at most 2^31. sketch_width and nstripes must be
 * powers of two (nstripes at most 65536, see write tokens below).
 * Every size, decay_every and the three times must be non-zero (a zero
 * write timeout would make writes invisible to the fill rule);
 * hot_threshold may be zero (everything is hot) but not above what a
 * 16-bit counter can reach; max_value is at most 1 MiB.
 *
 * Rules beyond the header, all on the safe side:
 *   - write_begin() returns a token, the stripe index in the low 16 bits
 *     and the stripe's era in the high 16. A stripe given up on after
 *     write_timeout starts a new era, and write_end() ignores tokens of
 *     older eras: a late end of a timed-out write (a reply that comes in
 *     after all, or the request table reaping it) must not end the hold
 *     of a newer write that is still in flight.
 *   - After a flush no pending fill is recorded for write_timeout, from
 *     the first call that brings a time: a flush_all travels to the
 *     servers like a write, and a get that overtakes it would read a
 *     value it is about to delete. (A flush call has no time of its own.)
 *   - A key with a pending fill that is still good keeps it: a later
 *     get's read_miss() returns false (true when it is the same ticket).
 *     Replacing it would let a steady stream of gets to a hot key starve
 *     every fill.
 *   - write_begin() has only the hash, so it acts on every slot of the
 *     set with that hash; a colliding key loses its slot too (costs a
 *     fill). It drops live slots and leaves pending ones where they are,
 *     dead by the stripe's new epoch: their reply is then counted RACED,
 *     and until their deadline a get reusing their ticket (a client
 *     retrying with the same request id) records no fill, since the old
 *     reply, read before the write, would pass for the new one's. That
 *     guard lasts only as long as the dead slot does (a newer get of the
 *     key or set pressure reuses it), so the caller should also record
 *     no fill for a get whose ticket is still in its request table.
 *
 * Slots recorded before a flush are not walked: their generation is old,
 * so they are dead and are reused or dropped when met. The live counter
 * counts current-generation live slots, including expired ones not yet
 * met again.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dp_lcname.h"
#include "dp_mc_cache.h"
#include "dp_mc_proto.h"

#define DP_MC_CACHE_KEY_MAX 250		/* memcached's KEY_MAX_LENGTH */
#define DP_MC_CACHE_KEY_OFF 6		/* "VALUE " */
#define DP_MC_CACHE_TAIL "\r\nEND\r\n"
#define DP_MC_CACHE_TAIL_LEN 7
/* "VALUE " key " " flags " " bytes "\r\n" ... "\r\nEND\r\n", but the value */
#define DP_MC_CACHE_TEXT_EXTRA (DP_MC_CACHE_KEY_OFF + DP_MC_CACHE_KEY_MAX + \
		1 + 10 + 1 + 7 + 2 + 7)
#define DP_MC_CACHE_VALUE_MAX (1u << 20)
#define DP_MC_CACHE_ROWS 4
#define DP_MC_CACHE_MAX_STRIPES (1u << 16)
#define DP_MC_CACHE_LINE 64

#define DP_MC_UNLIKELY(x) __builtin_expect(!!(x), 0)

enum dp_mc_slot_state {
	DP_MC_SLOT_EMPTY = 0,
	DP_MC_SLOT_PENDING,	/* waiting for the reply to `ticket` */
	DP_MC_SLOT_LIVE,	/* holds a value until `deadline` */
};

struct dp_mc_slot {
	uint64_t hash;
	uint64_t gen;		/* the cache's generation when recorded */
	uint64_t epoch;		/* pending: the stripe's epoch at read_miss */
	uint64_t ticket;	/* pending: the get whose reply may fill it */
	uint64_t deadline;	/* pending: fill by (inclusive); live: expiry */
	uint64_t used;		/* LRU stamp, from c->tick */
	uint32_t flags;
	uint32_t value_len;
	uint16_t value_off;	/* live: where the value starts in text */
	uint16_t text_sum;	/* live: dp_mc_sum of the whole text, folded */
	uint16_t tag;		/* the caller's, from read_miss */
	uint8_t state;		/* enum dp_mc_slot_state */
	uint8_t key_len;
	uint8_t text[];		/* "VALUE <key>...": see Layout */
};

struct dp_mc_stripe {
	uint64_t epoch;		/* bumped by every write_begin */
	uint64_t last_write;	/* latest now of a write_begin */
	uint32_t busy;		/* writes of this era begun and not ended */
	uint32_t era;		/* bumped when busy writes are given up on */
};

/*
 * Everything is the owner's except flush_req (any thread adds to it)
 * and live (the owner stores it atomically, stats read it racily).
 */
struct dp_mc_cache {
	struct dp_mc_cache_config cfg;	/* nslots rounded */
	uint8_t *slots;
	size_t stride;			/* bytes per slot */
	uint32_t set_mask;		/* sets - 1 */
	uint32_t stripe_mask;
	uint32_t sketch_mask;
	unsigned int sketch_shift;	/* 64 - log2(width), at most 63 */
	uint16_t *sketch;		/* DP_MC_CACHE_ROWS rows */
	uint32_t sketch_counts;		/* since the last halving */
	struct dp_mc_stripe *stripes;
	uint64_t gen;
	uint64_t tick;
	uint64_t flush_at;		/* when the post-flush hold started */
	bool flush_hold;		/* no read_miss before flush_at + wt */
	bool flush_unstamped;		/* flush_at is the next call's now */
	uint32_t flush_seen;		/* flush_req value last applied */
	uint32_t flush_req;
	uint32_t live;
};

_Static_assert(offsetof(struct dp_mc_slot, text) == 64,
		"slot header size is part of the documented footprint");

/* Odd constants: the golden ratio and splitmix64's multipliers. */
#define DP_MC_K0 UINT64_C(0x9e3779b97f4a7c15)
#define DP_MC_K1 UINT64_C(0xbf58476d1ce4e5b9)
#define DP_MC_K2 UINT64_C(0x94d049bb133111eb)

static const uint64_t dp_mc_row_mul[DP_MC_CACHE_ROWS] = {
	UINT64_C(0xd6e8feb86659fd93), UINT64_C(0xa0761d6478bd642f),
	UINT64_C(0xe7037ed1a0b428db), UINT64_C(0x8ebc6af09c88c6e3),
};

static inline uint64_t
dp_mc_fmix(uint64_t x)
{
	x ^= x >> 30;
	x *= DP_MC_K1;
	x ^= x >> 27;
	x *= DP_MC_K2;
	x ^= x >> 31;
	return x;
}

/* One word into the state: a bijection of h for each w, and the shift
 * brings the high bits a multiply produced back down for the next. */
static inline uint64_t
dp_mc_absorb(uint64_t h, uint64_t w)
{
	h = (h ^ w) * DP_MC_K1;
	return h ^ h >> 32;
}

/* The last 1..7 bytes of a key as one word, zero-padded: what memcpy
 * into a zeroed word gives, without a copy of variable length. */
static inline uint64_t
dp_mc_tail(const uint8_t *key, uint32_t n)
{
	uint64_t w = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint32_t lo, hi;

	if (n >= 4) {
		/* Two loads that overlap in the middle. */
		memcpy(&lo, key, 4);
		memcpy(&hi, key + n - 4, 4);
		return (uint64_t)lo | (uint64_t)hi << (8 * (n - 4));
	}
	w = (uint64_t)key[0] | (uint64_t)key[n / 2] << (8 * (n / 2)) |
		(uint64_t)key[n - 1] << (8 * (n - 1));
#else
	memcpy(&w, key, n);
#endif
	return w;
}

/* Host byte order: the hash never leaves the process. */
uint64_t
dp_mc_cache_hash(uint32_t pool_id, const uint8_t *key, uint32_t key_len)
{
	uint64_t h = ((uint64_t)pool_id << 32 | key_len) * DP_MC_K0;
	uint64_t w;

	for (; key_len >= 8; key += 8, key_len -= 8) {
		memcpy(&w, key, 8);
		h = dp_mc_absorb(h, w);
	}
	if (key_len > 0) {
		w = dp_mc_tail(key, key_len);
		h = dp_mc_absorb(h, w);
	}
	return dp_mc_fmix(h);
}

/* ---- creation ---------------------------------------------------------- */

static inline bool
dp_mc_pow2(uint32_t x)
{
	return x != 0 && (x & (x - 1)) == 0;
}

static int
dp_mc_cache_check(const struct dp_mc_cache_config *cfg)
{
	if (cfg->nslots == 0 || cfg->nslots > (1u << 31) ||
			cfg->max_value == 0 ||
			cfg->max_value > DP_MC_CACHE_VALUE_MAX ||
			cfg->hot_threshold > UINT16_MAX ||
			!dp_mc_pow2(cfg->sketch_width) ||
			cfg->decay_every == 0 ||
			!dp_mc_pow2(cfg->nstripes) ||
			cfg->nstripes > DP_MC_CACHE_MAX_STRIPES ||
			cfg->ttl_tsc == 0 || cfg->write_timeout_tsc == 0 ||
			cfg->pending_timeout_tsc == 0)
		return -EINVAL;
	return 0;
}

int
dp_mc_cache_create(const struct dp_mc_cache_config *cfg,
		struct dp_mc_cache **out)
{
	struct dp_mc_cache *c;
	uint64_t bytes;
	uint32_t n, i;
	int rc;

	*out = NULL;
	rc = dp_mc_cache_check(cfg);
	if (rc != 0)
		return rc;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->cfg = *cfg;
	for (n = DP_MC_CACHE_WAYS; n < cfg->nslots; n <<= 1)
		;
	c->cfg.nslots = n;
	c->stride = (offsetof(struct dp_mc_slot, text) + DP_MC_CACHE_TEXT_EXTRA +
			cfg->max_value + DP_MC_CACHE_LINE - 1) &
		~(size_t)(DP_MC_CACHE_LINE - 1);
	bytes = (uint64_t)n * c->stride;
	if (bytes > SIZE_MAX)
		goto nomem;
	c->slots = aligned_alloc(DP_MC_CACHE_LINE, (size_t)bytes);
	c->sketch = calloc((size_t)DP_MC_CACHE_ROWS * cfg->sketch_width,
			sizeof(*c->sketch));
	c->stripes = calloc(cfg->nstripes, sizeof(*c->stripes));
	if (c->slots == NULL || c->sketch == NULL || c->stripes == NULL)
		goto nomem;
	/* Only the headers: the text is never read before it is written, so
	 * a large cache is not written through here. */
	for (i = 0; i < n; i++)
		memset(c->slots + (size_t)i * c->stride, 0,
				offsetof(struct dp_mc_slot, text));
	c->set_mask = n / DP_MC_CACHE_WAYS - 1;
	c->stripe_mask = cfg->nstripes - 1;
	c->sketch_mask = cfg->sketch_width - 1;
	c->sketch_shift = 64;
	for (i = cfg->sketch_width; i > 1; i >>= 1)
		c->sketch_shift--;
	if (c->sketch_shift == 64)
		c->sketch_shift = 63;	/* one counter per row: mask is 0 */
	c->gen = 1;
	*out = c;
	return 0;
nomem:
	dp_mc_cache_free(c);
	return -ENOMEM;
}

void
dp_mc_cache_free(struct dp_mc_cache *c)
{
	if (c == NULL)
		return;
	free(c->slots);
	free(c->sketch);
	free(c->stripes);
	free(c);
}

/* ---- helpers ----------------------------------------------------------- */

static inline void
dp_mc_live_add(struct dp_mc_cache *c, int d)
{
	__atomic_store_n(&c->live, c->live + (uint32_t)d, __ATOMIC_RELAXED);
}

static void
dp_mc_flush_now(struct dp_mc_cache *c)
{
	c->flush_seen = __atomic_load_n(&c->flush_req, __ATOMIC_RELAXED);
	c->gen++;
	__atomic_store_n(&c->live, 0, __ATOMIC_RELAXED);
	c->flush_hold = true;
	c->flush_unstamped = true;
}

/*
 * First thing in every owner call: apply a flush another thread asked
 * for. A relaxed load is enough: flush_async is called before the change
 * it is for is published (with release), so a worker that sees the
 * change sees the request too.
 */
static inline void
dp_mc_sync(struct dp_mc_cache *c)
{
	if (DP_MC_UNLIKELY(__atomic_load_n(&c->flush_req, __ATOMIC_RELAXED) !=
			c->flush_seen))
		dp_mc_flush_now(c);
}

static inline void
dp_mc_sync_at(struct dp_mc_cache *c, uint64_t now)
{
	dp_mc_sync(c);
	if (DP_MC_UNLIKELY(c->flush_unstamped)) {
		c->flush_at = now;
		c->flush_unstamped = false;
	}
}

static inline struct dp_mc_slot *
dp_mc_slot_at(const struct dp_mc_cache *c, uint32_t i)
{
	return (struct dp_mc_slot *)(c->slots + (size_t)i * c->stride);
}

static inline struct dp_mc_slot *
dp_mc_set_of(const struct dp_mc_cache *c, uint64_t hash)
{
	return dp_mc_slot_at(c, ((uint32_t)hash & c->set_mask) *
			DP_MC_CACHE_WAYS);
}

static inline struct dp_mc_slot *
dp_mc_way(const struct dp_mc_cache *c, struct dp_mc_slot *set, unsigned int i)
{
	return (struct dp_mc_slot *)((uint8_t *)set + i * c->stride);
}

static inline uint32_t
dp_mc_stripe_idx(const struct dp_mc_cache *c, uint64_t hash)
{
	return (uint32_t)(hash >> 40) & c->stripe_mask;
}

static inline struct dp_mc_stripe *
dp_mc_stripe_of(const struct dp_mc_cache *c, uint64_t hash)
{
	return &c->stripes[dp_mc_stripe_idx(c, hash)];
}

/* The decimal digits of v, right-aligned in buf[10]; returns the count. */
static inline uint32_t
dp_mc_fmt_dec(uint8_t buf[10], uint32_t v)
{
	uint32_t i = 10;

	do {
		buf[--i] = (uint8_t)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return 10 - i;
}

/* Completes a slot's text after "VALUE <key>" (see Layout). */
static void
dp_mc_text(struct dp_mc_slot *s, uint32_t flags, const uint8_t *value,
		uint32_t value_len)
{
	uint8_t fbuf[10], lbuf[10];
	uint32_t fn = dp_mc_fmt_dec(fbuf, flags);
	uint32_t ln = dp_mc_fmt_dec(lbuf, value_len);
	uint8_t *d = s->text + DP_MC_CACHE_KEY_OFF + s->key_len;

	*d++ = ' ';
	memcpy(d, fbuf + 10 - fn, fn);
	d += fn;
	*d++ = ' ';
	memcpy(d, lbuf + 10 - ln, ln);
	d += ln;
	*d++ = '\r';
	*d++ = '\n';
	s->value_off = (uint16_t)(d - s->text);
	if (value_len != 0)
		memcpy(d, value, value_len);
	memcpy(d + value_len, DP_MC_CACHE_TAIL, DP_MC_CACHE_TAIL_LEN);
	s->flags = flags;
	s->value_len = value_len;
	s->text_sum = dp_mc_sum_fold(dp_mc_sum(s->text, s->value_off +
				value_len + DP_MC_CACHE_TAIL_LEN, 0));
}

/* memcmp(a, b, n) == 0, with keys of up to 16 bytes in two or four
 * loads that overlap (most keys are short). */
static inline bool
dp_mc_key_eq(const uint8_t *a, const uint8_t *b, uint32_t n)
{
	uint64_t x0, x1, y0, y1;
	uint32_t u0, u1, v0, v1;

	if (n >= 8 && n <= 16) {
		memcpy(&x0, a, 8);
		memcpy(&y0, b, 8);
		memcpy(&x1, a + n - 8, 8);
		memcpy(&y1, b + n - 8, 8);
		return ((x0 ^ y0) | (x1 ^ y1)) == 0;
	}
	if (n >= 4 && n < 8) {
		memcpy(&u0, a, 4);
		memcpy(&v0, b, 4);
		memcpy(&u1, a + n - 4, 4);
		memcpy(&v1, b + n - 4, 4);
		return ((u0 ^ v0) | (u1 ^ v1)) == 0;
	}
	return memcmp(a, b, n) == 0;
}

/* The key's slot, live, pending or dead, or NULL. */
static struct dp_mc_slot *
dp_mc_find(const struct dp_mc_cache *c, uint64_t hash, const uint8_t *key,
		uint32_t key_len)
{
	struct dp_mc_slot *set = dp_mc_set_of(c, hash);
	unsigned int i;

	for (i = 0; i < DP_MC_CACHE_WAYS; i++) {
		struct dp_mc_slot *s = dp_mc_way(c, set, i);

		if (s->state != DP_MC_SLOT_EMPTY && s->hash == hash &&
				s->key_len == key_len &&
				dp_mc_key_eq(s->text + DP_MC_CACHE_KEY_OFF, key,
					key_len))
			return s;
	}
	return NULL;
}

static inline void
dp_mc_clear(struct dp_mc_cache *c, struct dp_mc_slot *s)
{
	if (s->state == DP_MC_SLOT_LIVE && s->gen == c->gen)
		dp_mc_live_add(c, -1);
	s->state = DP_MC_SLOT_EMPTY;
}

static inline bool
dp_mc_is_live(const struct dp_mc_cache *c, const struct dp_mc_slot *s,
		uint64_t now)
{
	return s->state == DP_MC_SLOT_LIVE && s->gen == c->gen &&
		now < s->deadline;
}

/* A pending fill that a reply could still complete. */
static inline bool
dp_mc_is_waiting(const struct dp_mc_cache *c, const struct dp_mc_slot *s,
		uint64_t now)
{
	return s->state == DP_MC_SLOT_PENDING && s->gen == c->gen &&
		s->epoch == dp_mc_stripe_of(c, s->hash)->epoch &&
		now <= s->deadline;
}

/* Where a new key goes: an empty slot, else a dead one, else the least
 * recently used. */
static struct dp_mc_slot *
dp_mc_victim(const struct dp_mc_cache *c, uint64_t hash, uint64_t now)
{
	struct dp_mc_slot *set = dp_mc_set_of(c, hash);
	struct dp_mc_slot *dead = NULL, *lru = NULL;
	unsigned int i;

	for (i = 0; i < DP_MC_CACHE_WAYS; i++) {
		struct dp_mc_slot *s = dp_mc_way(c, set, i);

		if (s->state == DP_MC_SLOT_EMPTY)
			return s;
		if (dead == NULL && !dp_mc_is_live(c, s, now) &&
				!dp_mc_is_waiting(c, s, now))
			dead = s;
		if (lru == NULL || s->used < lru->used)
			lru = s;
	}
	return dead != NULL ? dead : lru;
}

/*
 * Whether a write to the stripe may be on its way to a server. After
 * write_timeout since the last one, its writes have arrived or never
 * will: the stripe is free again, and a new era begins so that their
 * late ends are not taken for those of newer writes. A clock that went
 * backwards counts as busy.
 */
static bool
dp_mc_busy(const struct dp_mc_cache *c, struct dp_mc_stripe *st,
		uint64_t now)
{
	if (st->busy == 0)
		return false;
	if (now >= st->last_write &&
			now - st->last_write >= c->cfg.write_timeout_tsc) {
		st->busy = 0;
		st->era++;
		return false;
	}
	return true;
}

/* ---- sketch ------------------------------------------------------------ */

static __attribute__((noinline)) void
dp_mc_sketch_halve(struct dp_mc_cache *c)
{
	size_t i, n = (size_t)DP_MC_CACHE_ROWS * c->cfg.sketch_width;

	for (i = 0; i < n; i++)
		c->sketch[i] >>= 1;
	c->sketch_counts = 0;
}

/* Row r's counter for hash: the top bits of the hash times the row's own
 * constant. */
static inline uint16_t *
dp_mc_ctr(const struct dp_mc_cache *c, unsigned int r, uint64_t hash)
{
	uint32_t i = (uint32_t)((hash * dp_mc_row_mul[r]) >> c->sketch_shift) &
		c->sketch_mask;

	return &c->sketch[(size_t)r * c->cfg.sketch_width + i];
}

uint32_t
dp_mc_cache_count(struct dp_mc_cache *c, uint64_t hash)
{
	uint16_t *c0, *c1, *c2, *c3;
	uint32_t min;

	_Static_assert(DP_MC_CACHE_ROWS == 4, "the rows are spelt out");
	dp_mc_sync(c);
	/* Halving before counting keeps the returned estimate current. */
	if (DP_MC_UNLIKELY(c->sketch_counts >= c->cfg.decay_every))
		dp_mc_sketch_halve(c);
	c->sketch_counts++;
	c0 = dp_mc_ctr(c, 0, hash);
	c1 = dp_mc_ctr(c, 1, hash);
	c2 = dp_mc_ctr(c, 2, hash);
	c3 = dp_mc_ctr(c, 3, hash);
	min = *c0;
	min = *c1 < min ? *c1 : min;
	min = *c2 < min ? *c2 : min;
	min = *c3 < min ? *c3 : min;
	if (min == UINT16_MAX)
		return min;
	/* Conservative update: only the counters at the minimum move, so
	 * a key's estimate grows no faster than its own count allows. (Two
	 * rows may share no counter: each row has its own array.) */
	*c0 += *c0 == min;
	*c1 += *c1 == min;
	*c2 += *c2 == min;
	*c3 += *c3 == min;
	return min + 1;
}

/* ---- the get path ------------------------------------------------------ */

bool
dp_mc_cache_lookup(struct dp_mc_cache *c, uint64_t hash, const uint8_t *key,
		uint32_t key_len, uint64_t now, struct dp_mc_hit *hit)
{
	struct dp_mc_slot *s;

	dp_mc_sync_at(c, now);
	if (key_len > DP_MC_CACHE_KEY_MAX)
		return false;
	s = dp_mc_find(c, hash, key, key_len);
	if (s == NULL || s->state != DP_MC_SLOT_LIVE)
		return false;
	if (!dp_mc_is_live(c, s, now)) {
		dp_mc_clear(c, s);
		return false;
	}
	s->used = ++c->tick;
	hit->flags = s->flags;
	hit->value = s->text + s->value_off;
	hit->value_len = s->value_len;
	hit->tag = s->tag;
	hit->text = s->text;
	hit->text_len = (uint32_t)s->value_off + s->value_len +
		DP_MC_CACHE_TAIL_LEN;
	hit->text_sum = s->text_sum;
	return true;
}

bool
dp_mc_cache_read_miss(struct dp_mc_cache *c, uint64_t hash,
		const uint8_t *key, uint32_t key_len, uint32_t estimate,
		uint64_t ticket, uint64_t now)
{
	return dp_mc_cache_read_miss_tag(c, hash, key, key_len, estimate,
			ticket, now, 0);
}

bool
dp_mc_cache_read_miss_tag(struct dp_mc_cache *c, uint64_t hash,
		const uint8_t *key, uint32_t key_len, uint32_t estimate,
		uint64_t ticket, uint64_t now, uint16_t tag)
{
	struct dp_mc_stripe *st;
	struct dp_mc_slot *s;

	dp_mc_sync_at(c, now);
	if (estimate < c->cfg.hot_threshold || key_len == 0 ||
			key_len > DP_MC_CACHE_KEY_MAX)
		return false;
	if (c->flush_hold) {
		if (now < c->flush_at ||
				now - c->flush_at < c->cfg.write_timeout_tsc)
			return false;
		c->flush_hold = false;
	}
	st = dp_mc_stripe_of(c, hash);
	if (dp_mc_busy(c, st, now))
		return false;
	s = dp_mc_find(c, hash, key, key_len);
	if (s != NULL) {
		if (dp_mc_is_live(c, s, now))
			return false;
		if (dp_mc_is_waiting(c, s, now))
			return s->ticket == ticket;
		/* The same ticket on a pending fill a write or flush made
		 * stale: that get's reply, read before the write, may still
		 * come and would pass for this one's. */
		if (s->state == DP_MC_SLOT_PENDING && s->ticket == ticket &&
				now <= s->deadline)
			return false;
	} else {
		s = dp_mc_victim(c, hash, now);
	}
	dp_mc_clear(c, s);
	s->hash = hash;
	s->gen = c->gen;
	s->epoch = st->epoch;
	s->ticket = ticket;
	s->deadline = now + c->cfg.pending_timeout_tsc;
	s->used = ++c->tick;
	s->flags = 0;
	s->value_len = 0;
	s->value_off = 0;
	s->text_sum = 0;
	s->tag = tag;
	s->key_len = (uint8_t)key_len;
	memcpy(s->text, "VALUE ", DP_MC_CACHE_KEY_OFF);
	memcpy(s->text + DP_MC_CACHE_KEY_OFF, key, key_len);
	s->state = DP_MC_SLOT_PENDING;
	return true;
}

enum dp_mc_fill_result
dp_mc_cache_fill(struct dp_mc_cache *c, uint64_t hash, const uint8_t *key,
		uint32_t key_len, uint64_t ticket, uint32_t flags,
		const uint8_t *value, uint32_t value_len, uint64_t now)
{
	enum dp_mc_fill_result r;
	struct dp_mc_slot *s;

	dp_mc_sync_at(c, now);
	if (key_len > DP_MC_CACHE_KEY_MAX)
		return DP_MC_FILL_NOT_PENDING;
	s = dp_mc_find(c, hash, key, key_len);
	/* Another get's pending fill stays: its own reply may still come. */
	if (s == NULL || s->state != DP_MC_SLOT_PENDING || s->ticket != ticket)
		return DP_MC_FILL_NOT_PENDING;
	if (s->gen != c->gen || s->epoch != dp_mc_stripe_of(c, hash)->epoch)
		r = DP_MC_FILL_RACED;
	else if (now > s->deadline)
		r = DP_MC_FILL_EXPIRED;
	else if (value_len > c->cfg.max_value)
		r = DP_MC_FILL_TOO_BIG;
	else {
		dp_mc_text(s, flags, value, value_len);
		s->deadline = now + c->cfg.ttl_tsc;
		s->used = ++c->tick;
		s->state = DP_MC_SLOT_LIVE;
		dp_mc_live_add(c, 1);
		return DP_MC_FILL_FILLED;
	}
	/* This ticket's reply has come: the slot can wait for nothing. */
	dp_mc_clear(c, s);
	return r;
}

/* ---- writes and flushes ------------------------------------------------ */

uint32_t
dp_mc_cache_write_begin(struct dp_mc_cache *c, uint64_t hash, uint64_t now,
		bool *invalidated)
{
	struct dp_mc_slot *set;
	struct dp_mc_stripe *st;
	uint32_t idx;
	bool dropped = false;
	unsigned int i;

	dp_mc_sync_at(c, now);
	set = dp_mc_set_of(c, hash);
	for (i = 0; i < DP_MC_CACHE_WAYS; i++) {
		struct dp_mc_slot *s = dp_mc_way(c, set, i);

		if (s->state == DP_MC_SLOT_EMPTY || s->hash != hash)
			continue;
		if (dp_mc_is_live(c, s, now) || dp_mc_is_waiting(c, s, now))
			dropped = true;
		/* A pending slot stays, dead by the epoch bump below: its
		 * reply is then told RACED, and its ticket is not reused. */
		if (s->state == DP_MC_SLOT_LIVE)
			dp_mc_clear(c, s);
	}
	idx = dp_mc_stripe_idx(c, hash);
	st = &c->stripes[idx];
	(void)dp_mc_busy(c, st, now);	/* retire a timed-out era first */
	st->epoch++;
	st->busy++;
	if (now > st->last_write)
		st->last_write = now;
	if (invalidated != NULL)
		*invalidated = dropped;
	return idx | (st->era & 0xffffu) << 16;
}

void
dp_mc_cache_write_end(struct dp_mc_cache *c, uint32_t stripe)
{
	uint32_t idx = stripe & 0xffffu;
	struct dp_mc_stripe *st;

	dp_mc_sync(c);
	if (idx > c->stripe_mask)
		return;
	st = &c->stripes[idx];
	if ((st->era & 0xffffu) == stripe >> 16 && st->busy > 0)
		st->busy--;
}

void
dp_mc_cache_flush(struct dp_mc_cache *c)
{
	dp_mc_flush_now(c);
}

void
dp_mc_cache_flush_async(struct dp_mc_cache *c)
{
	__atomic_fetch_add(&c->flush_req, 1, __ATOMIC_RELEASE);
}

uint32_t
dp_mc_cache_entries(const struct dp_mc_cache *c)
{
	return __atomic_load_n(&c->live, __ATOMIC_RELAXED);
}

/* ---- names ------------------------------------------------------------- */

/* Fill result names: the X-macro names in lower case (dp_lcname.h). */
#define DP_MC_X(name, help)						\
	_Static_assert(sizeof(#name) <= DP_LCNAME_MAX,		\
			"fill result name " #name " too long");
DP_MC_FILL_RESULTS(DP_MC_X)
#undef DP_MC_X

static const char dp_mc_fill_names[DP_MC_FILL_RESULT_COUNT][DP_LCNAME_MAX] = {
#define DP_MC_X(name, help) [DP_MC_FILL_##name] = DP_LCNAME(#name),
	DP_MC_FILL_RESULTS(DP_MC_X)
#undef DP_MC_X
};

const char *
dp_mc_fill_result_name(enum dp_mc_fill_result r)
{
	return (unsigned int)r < DP_MC_FILL_RESULT_COUNT ?
		dp_mc_fill_names[r] : "?";
}
