#ifndef WR_STORE_H
#define WR_STORE_H

/*
 * The PostgreSQL side of meterhub-writer: a batch of readings and heartbeats accumulated from
 * queue entries, and a connection that writes a whole batch in one statement.
 *
 * The statement inserts the readings (ON CONFLICT DO NOTHING, so a replayed batch is a no-op)
 * of sensors that still exist (an erased account's queued readings are dropped), folds only the
 * rows it actually inserted into readings_hourly and readings_daily, and records the heartbeats
 * in devices, all in one transaction: when wr_store_write() returns WR_STORE_OK the transaction
 * has committed, and not before.
 *
 * Threading: a wr_store_t and a wr_batch_t belong to one thread at a time (a shard's writer
 * thread). Nothing here is shared.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wr_reading {
    int64_t sensor; /* sensors.sid */
    int64_t ts;     /* seconds since the epoch, UTC */
    double value;
} wr_reading_t;

typedef struct wr_heartbeat {
    int64_t device; /* devices.did */
    int64_t ts;     /* seconds since the epoch, UTC */
    char *firmware; /* owned; "" stores NULL (unknown) */
    bool remote_upgrade;
} wr_heartbeat_t;

/* Growable arrays of rows to write. Embedded: wr_batch_init / wr_batch_dispose. */
typedef struct wr_batch {
    wr_reading_t *readings;
    size_t nreadings, readings_cap;
    wr_heartbeat_t *heartbeats;
    size_t nheartbeats, heartbeats_cap;
} wr_batch_t;

void wr_batch_init(wr_batch_t *b);
void wr_batch_dispose(wr_batch_t *b);
/* Empties the batch, keeping its memory for the next one. */
void wr_batch_reset(wr_batch_t *b);
/* Drops the rows added after the batch had nreadings readings and nheartbeats heartbeats. */
void wr_batch_truncate(wr_batch_t *b, size_t nreadings, size_t nheartbeats);
bool wr_batch_empty(const wr_batch_t *b);
void wr_batch_add_reading(wr_batch_t *b, int64_t sensor, int64_t ts, double value);
/* Copies firmware (NULL is taken as ""). */
void wr_batch_add_heartbeat(wr_batch_t *b, int64_t device, int64_t ts, const char *firmware,
                            bool remote_upgrade);

typedef enum wr_store_status {
    WR_STORE_OK = 0,
    /* The connection is gone (server stopped, network broken, server shutting down): the store
     * has dropped it; reconnect and retry the same batch. */
    WR_STORE_LOST = -1,
    /* The server refused the data (SQLSTATE class 22 or 23): retrying the same batch cannot
     * succeed; retry entry by entry and dead-letter the entries that still fail. */
    WR_STORE_DATA = -2,
    /* Any other failure (permissions, deadlock, lack of resources...): retry the same batch
     * after a pause. */
    WR_STORE_RETRY = -3,
} wr_store_status_t;

typedef struct wr_store_result {
    uint64_t inserted;   /* readings inserted (the others were already stored) */
    uint64_t heartbeats; /* devices whose last_seen moved */
} wr_store_result_t;

typedef struct wr_store wr_store_t;

/* Returns an owned, unconnected store. conninfo and application_name are copied. */
wr_store_t *wr_store_new(const char *conninfo, const char *application_name);
void wr_store_free(wr_store_t *s);

/*
 * (Re)connects and prepares the write statement. Does not log: on failure returns -1 with the
 * server's or libpq's message (one line, no password) in err, so the caller can log an outage
 * once rather than every attempt.
 */
int wr_store_connect(wr_store_t *s, char *err, size_t errlen);
bool wr_store_connected(const wr_store_t *s);

/*
 * Checks an idle connection with an empty query, so that an outage is noticed (and reported
 * by /healthz) without traffic. Returns 0, or -1 with err filled after dropping a dead
 * connection.
 */
int wr_store_ping(wr_store_t *s, char *err, size_t errlen);

/*
 * Writes the batch in one statement and one transaction (BEGIN, statement, COMMIT). Sorts
 * b->readings by (sensor, ts) in place, so that concurrent writers take row locks in the same
 * order. An empty batch is not sent. On failure the transaction is rolled back (or the
 * connection dropped, for WR_STORE_LOST), err holds the server's primary message (for
 * WR_STORE_DATA, the dead-letter reason) and res is untouched.
 */
wr_store_status_t wr_store_write(wr_store_t *s, wr_batch_t *b, wr_store_result_t *res, char *err,
                                 size_t errlen);

/*
 * Creates the monthly readings partitions from last month to three months ahead
 * (ensure_reading_partitions). Returns the number created, or -1 with err filled.
 */
int wr_store_ensure_partitions(wr_store_t *s, char *err, size_t errlen);

#endif
