/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The in-switch hot-key cache for memcached gets, with its admission
 * sketch and the coherence state that keeps it from ever serving a stale
 * value. No DPDK dependency: time is the caller's TSC reading, memory is
 * allocated once at creation, and one worker lcore owns a cache (no
 * locks). The one exception is dp_mc_cache_flush_async(), which any
 * thread may call.
 *
 * Admission: every get of a key is counted in a count-min sketch
 * (conservative update, counters halved every `decay_every` counts); a
 * key is hot once its estimate reaches hot_threshold. Only hot keys get a
 * slot. Memory is bounded: nslots slots of fixed size (key up to 250
 * bytes, value up to max_value bytes), set-associative, replacing the
 * least recently used slot of the set.
 *
 * Coherence. A slot is filled only from the reply to one particular get
 * that this switch forwarded (the "ticket": client address, port and
 * request id), and only when no write to the key could have reached the
 * server between that get and its reply:
 *   - dp_mc_cache_write_begin() (called before a write is forwarded)
 *     invalidates the key's slot, bumps its stripe's epoch and marks the
 *     stripe busy; dp_mc_cache_write_end() (the write's reply seen)
 *     clears the mark. A lost reply or a noreply write keeps the stripe
 *     busy until write_timeout has passed since the stripe's last write.
 *   - dp_mc_cache_read_miss() records a pending fill only while its
 *     stripe is not busy, with the stripe's epoch and the generation;
 *   - dp_mc_cache_fill() accepts the value only for the same key, ticket,
 *     epoch and generation, within pending_timeout.
 * So a filled value is the server's state after every write forwarded
 * before the get, and no write was forwarded while it was read; the next
 * write invalidates it before it leaves the switch. Stripes are shared by
 * keys with equal hash bits (false sharing only costs fills). flush_all
 * and pool changes bump the generation, which invalidates every slot and
 * pending fill at once. Entries also expire after ttl (memcached items
 * expire on the server without telling anyone).
 */
#ifndef DP_MC_CACHE_H
#define DP_MC_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#define DP_MC_CACHE_WAYS 4

struct dp_mc_cache_config {
	uint32_t nslots;		/* rounded up to a power of two >= WAYS */
	uint32_t max_value;		/* bytes; larger values are not cached */
	uint32_t hot_threshold;		/* sketch estimate that admits a key */
	uint32_t sketch_width;		/* counters per row, power of two */
	uint32_t decay_every;		/* halve the sketch after this many counts */
	uint32_t nstripes;		/* coherence stripes, power of two */
	uint64_t ttl_tsc;		/* entry lifetime */
	uint64_t write_timeout_tsc;	/* stripe busy at most this long */
	uint64_t pending_timeout_tsc;	/* a pending fill waits this long */
};

/* What the caller counts. Each result of fill/lookup has one counter. */
#define DP_MC_FILL_RESULTS(X) \
	X(FILLED, "value cached") \
	X(NOT_PENDING, "no pending fill for this key and ticket") \
	X(RACED, "a write or flush came between the get and its reply") \
	X(TOO_BIG, "value larger than the cache's maximum") \
	X(EXPIRED, "the pending fill waited too long")

enum dp_mc_fill_result {
#define DP_MC_X(name, help) DP_MC_FILL_##name,
	DP_MC_FILL_RESULTS(DP_MC_X)
#undef DP_MC_X
	DP_MC_FILL_RESULT_COUNT
};

struct dp_mc_cache;

/* A hit: pointers into the slot, valid until the owner's next call.
 * text is the whole reply to a get of the key,
 *   "VALUE <key> <flags> <bytes>\r\n<value>\r\nEND\r\n",
 * (value points into it), and text_sum its 16-bit ones'-complement sum
 * (dp_mc_sum_fold(dp_mc_sum(text, text_len, 0)), dp_mc_proto.h) as it
 * lies at an even offset. tag is what read_miss_tag recorded. */
struct dp_mc_hit {
	uint32_t flags;
	const uint8_t *value;
	uint32_t value_len;
	uint16_t tag;
	uint16_t text_sum;
	const uint8_t *text;
	uint32_t text_len;
};

/* Creates a cache. Returns 0 or -EINVAL (zero sizes, max_value over
 * 1 MiB) or -ENOMEM. */
int dp_mc_cache_create(const struct dp_mc_cache_config *cfg,
		struct dp_mc_cache **out);
void dp_mc_cache_free(struct dp_mc_cache *c);

/* The 64-bit hash every other call takes: the key and the pool it was
 * sent to (the same key in two pools is two items). */
uint64_t dp_mc_cache_hash(uint32_t pool_id, const uint8_t *key,
		uint32_t key_len);

/* Counts one get of the key. Returns the sketch's new estimate. */
uint32_t dp_mc_cache_count(struct dp_mc_cache *c, uint64_t hash);

/* True, with the value in *hit, when the key has a live slot. */
bool dp_mc_cache_lookup(struct dp_mc_cache *c, uint64_t hash,
		const uint8_t *key, uint32_t key_len, uint64_t now,
		struct dp_mc_hit *hit);

/* A get of the key is being forwarded with this ticket. Records a
 * pending fill when the key is hot (estimate >= hot_threshold) and its
 * stripe is not busy. Returns true when it did. */
bool dp_mc_cache_read_miss(struct dp_mc_cache *c, uint64_t hash,
		const uint8_t *key, uint32_t key_len, uint32_t estimate,
		uint64_t ticket, uint64_t now);

/* The same, recording tag with the pending fill; a hit on the value it
 * brings returns it (dp_mc_hit.tag). read_miss records tag 0. */
bool dp_mc_cache_read_miss_tag(struct dp_mc_cache *c, uint64_t hash,
		const uint8_t *key, uint32_t key_len, uint32_t estimate,
		uint64_t ticket, uint64_t now, uint16_t tag);

/* A VALUE for the key passed back to the client of ticket. */
enum dp_mc_fill_result dp_mc_cache_fill(struct dp_mc_cache *c,
		uint64_t hash, const uint8_t *key, uint32_t key_len,
		uint64_t ticket, uint32_t flags, const uint8_t *value,
		uint32_t value_len, uint64_t now);

/* A write to the key is about to be forwarded. Returns the stripe to hand
 * to dp_mc_cache_write_end, and sets *invalidated when a slot (live or
 * pending) was dropped. */
uint32_t dp_mc_cache_write_begin(struct dp_mc_cache *c, uint64_t hash,
		uint64_t now, bool *invalidated);
void dp_mc_cache_write_end(struct dp_mc_cache *c, uint32_t stripe);

/* flush_all passed through, or the pools changed: forget everything. */
void dp_mc_cache_flush(struct dp_mc_cache *c);

/* The same from another thread (control): takes effect at the owner's
 * next call. */
void dp_mc_cache_flush_async(struct dp_mc_cache *c);

/* Live entries, for the stats (racy read). */
uint32_t dp_mc_cache_entries(const struct dp_mc_cache *c);

const char *dp_mc_fill_result_name(enum dp_mc_fill_result r);

/* The ticket of a request: the client's IPv4 address and UDP port and
 * the frame header's request id (all host order). */
static inline uint64_t
dp_mc_ticket(uint32_t client_ip, uint16_t client_port, uint16_t req_id)
{
	return (uint64_t)client_ip << 32 | (uint64_t)client_port << 16 |
		req_id;
}

#endif /* DP_MC_CACHE_H */
