#ifndef WR_WRITER_INTERNAL_H
#define WR_WRITER_INTERNAL_H

/*
 * Internals shared by writer.c, metrics.c and the unit tests: the per-shard counters, the
 * parsing of stream replies, entry decoding and the reconnect backoff. The parsing and decoding
 * functions are pure (no I/O) and may run on any thread.
 */

#include "store.h"
#include "writer.h"

#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdint.h>

/* ---- metrics ---- */

#define WR_COMMIT_NBUCKETS 12

/* Upper bounds (seconds) of the commit latency histogram buckets, +Inf excluded. */
extern const double wr_commit_bounds[WR_COMMIT_NBUCKETS];

/*
 * Counters of one shard. Written by the shard's thread only, read by the ops server on the main
 * thread; relaxed atomics, since each value stands alone.
 */
struct wr_metrics {
    atomic_uint_fast64_t entries_read;      /* entries taken from the stream (read or claimed) */
    atomic_uint_fast64_t entries_claimed;   /* of which claimed from other consumers */
    atomic_uint_fast64_t readings_read;     /* readings in the stored entries */
    atomic_uint_fast64_t readings_inserted; /* of which new rows */
    atomic_uint_fast64_t heartbeats;        /* heartbeats in the stored entries */
    atomic_uint_fast64_t batches_committed;
    atomic_uint_fast64_t dead_lettered;
    atomic_uint_fast64_t postgres_errors; /* failed connects and statements */
    atomic_uint_fast64_t redis_errors;    /* failed connects and commands */
    atomic_uint_fast64_t commit_buckets[WR_COMMIT_NBUCKETS + 1]; /* not cumulative; last +Inf */
    atomic_uint_fast64_t commit_usec_sum;
    atomic_uint_fast64_t commit_count;
    atomic_int_fast64_t pending; /* XPENDING count, refreshed with each claim round; -1 unknown */
    atomic_int_fast64_t backlog; /* XLEN, same */
    atomic_bool postgres_up;
    atomic_bool redis_up;
};

static inline void wr_metrics_add(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t wr_metrics_get(const atomic_uint_fast64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

void wr_metrics_init(wr_metrics_t *m);
void wr_metrics_observe_commit(wr_metrics_t *m, uint64_t usec);

/* ---- stream entries ---- */

/*
 * One queued batch of an XREADGROUP or XAUTOCLAIM reply: a field "e" of a stream entry, which
 * may hold several (one wr_entry_t each, adjacent, sharing the id). id and payload are borrowed
 * from the reply, which must outlive the entry. reason is owned (heap) and set once the entry
 * is to be dead-lettered.
 */
typedef struct wr_entry {
    const char *id;      /* the stream entry's id, borrowed from the reply */
    const char *payload; /* field "e"; NULL when missing */
    size_t payload_len;
    bool deleted; /* no fields: deleted from the stream while pending; acknowledge only */
    char *reason; /* dead-letter reason, or NULL */
} wr_entry_t;

/* A growable list of entries. Embedded: zero-initialise, wr_entries_clear, wr_entries_dispose. */
typedef struct wr_entries {
    wr_entry_t *v;
    size_t n, cap;
} wr_entries_t;

/* Stream entries in the list: the payloads of one stream entry are adjacent, sharing an id. */
size_t wr_entries_count_ids(const wr_entries_t *e);

void wr_entries_clear(wr_entries_t *e);
void wr_entries_dispose(wr_entries_t *e);
/* Marks the entry for the dead-letter stream with a copy of reason (a first reason stays). */
void wr_entry_set_dead(wr_entry_t *e, const char *reason);

/*
 * Appends the entries of a stream-entries array ([[id, [field, value, ...]], ...]) to out.
 * Returns 0, or -1 if the reply does not have that shape (out then holds what was parsed).
 */
int wr_parse_entries(const redisReply *list, wr_entries_t *out);

/* XREADGROUP reply (nil on timeout, or [[key, entries]]). Returns 0 or -1 as above. */
int wr_parse_read_reply(const redisReply *r, wr_entries_t *out);

/*
 * XAUTOCLAIM reply ([next-cursor, entries] or, since Redis 7, [next-cursor, entries, deleted
 * ids]). Copies the next cursor into cursor[cursorlen]. Returns 0 or -1 as above.
 */
int wr_parse_claim_reply(const redisReply *r, char *cursor, size_t cursorlen, wr_entries_t *out);

/* The largest entry payload the writer decodes; larger entries are dead-lettered. */
#define WR_ENTRY_MAX_BYTES (16u << 20)

/*
 * Decodes one QueueEntry and appends its rows to b. On failure returns -1 with the
 * dead-letter reason in reason[reasonlen], leaving b as it was.
 */
int wr_decode_entry(const char *payload, size_t len, wr_batch_t *b, char *reason, size_t reasonlen);

/*
 * Decodes entries from index `from` into b (which must be empty) while b holds fewer than
 * max_readings readings and the next entry does not take it past max_readings; marks the
 * entries that cannot be decoded as dead and skips deleted and dead ones. Always takes at least
 * one decodable entry, however large. Returns the index after the last entry examined: entries
 * [from, returned) are either in b, dead or deleted.
 */
size_t wr_fill_batch(wr_entries_t *e, size_t from, wr_batch_t *b, size_t max_readings);

/* ---- backoff ---- */

#define WR_BACKOFF_MIN_MS 100
#define WR_BACKOFF_MAX_MS 5000

/* Exponential backoff with jitter: 100 ms doubling to 5 s, each delay drawn in [d/2, d]. */
typedef struct wr_backoff {
    long next_ms;
    uint64_t rng;
} wr_backoff_t;

void wr_backoff_init(wr_backoff_t *b, uint64_t seed);
void wr_backoff_reset(wr_backoff_t *b);
/* Returns the delay to wait now (ms) and doubles the next one. */
long wr_backoff_next(wr_backoff_t *b);

#endif
