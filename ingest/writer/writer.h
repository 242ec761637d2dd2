#ifndef WR_WRITER_H
#define WR_WRITER_H

/*
 * meterhub-writer's per-shard consumer: one thread per stream shard, each with its own blocking
 * Redis connection and its own PostgreSQL connection, nothing shared with the other shards but
 * the configuration (read-only) and the metrics (relaxed atomics).
 *
 * The loop of a shard:
 *   - create the consumer group "writers" on <prefix>:{<shard>}:q (MKSTREAM; an existing group
 *     is fine);
 *   - re-read this consumer's own pending entries (after a start or a Redis reconnect), then
 *     new ones, at most batch_size entries, blocking up to block_ms; after a read that was not
 *     full, wait batch_wait_ms before the next one, so that under load each transaction
 *     carries many entries (see the comment at wr_writer's loop);
 *   - every few seconds XAUTOCLAIM entries idle longer than claim_idle_ms, left by dead
 *     consumers (a SIGKILLed writer, or a peer), and write them too;
 *   - decode each entry (field "e", a meterhub.QueueEntry); an entry that cannot be decoded
 *     goes to <prefix>:{<shard>}:dead with the reason and its id;
 *   - write the decoded rows in one statement (store.h); if PostgreSQL is down, keep the batch
 *     and retry it with backoff; if the server refuses the data, retry entry by entry and
 *     dead-letter the entries that fail;
 *   - only after the commit, XACK and XDEL the entries in one round trip, so that the stream's
 *     length stays the backlog.
 * A stop request lets the current batch finish (commit and acknowledgement) and then ends the
 * thread. A batch that cannot be finished because a server is down stays pending in Redis and
 * is claimed by the next writer: nothing is acknowledged before it is stored.
 */

#include "common/queue.h"

#include <event2/buffer.h>
#include <stdbool.h>

/* [writer] section. Strings owned by the configuration (mh_config_dispose). */
typedef struct wr_conf {
    long batch_size;    /* entries per read */
    long batch_wait_ms; /* after a read of fewer than batch_size entries, wait this long */
    long block_ms;      /* XREADGROUP BLOCK */
    long claim_idle_ms; /* XAUTOCLAIM min-idle-time */
    char *consumer;     /* consumer name in the group; NULL or "": <hostname>-<pid> */
    char *log_level;
    char *ops_addr;
    long ops_port; /* 0: no ops server */
} wr_conf_t;

typedef struct wr_writer wr_writer_t;
typedef struct wr_metrics wr_metrics_t;

/*
 * Returns an owned writer for one shard, not yet running. conf, redis and conninfo are
 * borrowed and must outlive the writer; consumer is the resolved consumer name (copied).
 * Main thread.
 */
wr_writer_t *wr_writer_new(const wr_conf_t *conf, const mh_redis_conf_t *redis,
                           const char *conninfo, const char *consumer, long shard);

/* Starts the shard's thread. Returns 0, or -1 after logging. Main thread. */
int wr_writer_start(wr_writer_t *w);

/* Asks the thread to stop after its current batch; returns at once. Any thread. */
void wr_writer_stop(wr_writer_t *w);

/* Stops the thread if running, waits for it, and frees the writer. NULL is a no-op. */
void wr_writer_free(wr_writer_t *w);

/* The shard's counters (borrowed; valid as long as the writer). Any thread. */
const wr_metrics_t *wr_writer_metrics(const wr_writer_t *w);
long wr_writer_shard(const wr_writer_t *w);

/*
 * Ops endpoint bodies for all shards (metrics.c). wr_metrics_render appends the Prometheus text
 * exposition; wr_health_render appends a JSON status and returns true when every shard has a
 * live PostgreSQL and Redis connection. Any thread (they only read atomics).
 */
void wr_metrics_render(struct evbuffer *out, wr_writer_t *const *writers, size_t n);
bool wr_health_render(struct evbuffer *out, wr_writer_t *const *writers, size_t n);

#endif
