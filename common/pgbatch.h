#ifndef MH_PGBATCH_H
#define MH_PGBATCH_H
/*
 * Requests to PostgreSQL gathered into batches, on a few mh_pgasync connections of their own:
 * the items that arrive while every connection has a batch out wait for the next one, and go
 * as one statement whose only parameter is the JSON array of their elements. A busy daemon
 * then pays one round trip and one statement per batch instead of one per request (ingest's
 * firmware offer and download checks: upg_heartbeats and upg_downloads).
 *
 * The statement answers rows whose first column is the element's 1-based position in the
 * array; an item no row names is answered as undecided. Every item is answered exactly once,
 * never from inside mh_pgbatch_add.
 *
 * Thread: everything runs on the thread of the event_base given to mh_pgbatch_new.
 */
#include <event2/event.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>

typedef struct mh_pgbatch mh_pgbatch_t;

typedef struct mh_pgbatch_ops {
    /* The statement (borrowed, e.g. a literal): $1 is the JSON array; column 0 the position. */
    const char *sql;
    int ncols; /* a result of any other shape is a failure */
    /* The item's element (a new reference), or NULL when it has none: it is then answered as
     * undecided without being sent. */
    json_t *(*element)(void *item, void *arg);
    /* Answers item from row `row` of res (borrowed for the call), or with res NULL when
     * PostgreSQL did not decide it (the batch failed, or the item waited past the deadline).
     * Takes ownership of item. */
    void (*answer)(void *item, const PGresult *res, int row, void *arg);
    /* Once for each batch that failed, before its items are answered, and once for each turn
     * that answered items which waited too long: res (borrowed, may be NULL) and err (no
     * secrets, may be NULL) say why. May be NULL. */
    void (*failed)(const PGresult *res, const char *err, void *arg);
} mh_pgbatch_ops_t;

/*
 * nconns connections to conninfo (copied; never logged), each with at most one batch out;
 * up to max_batch items a batch and max_pending waiting. timeout_ms bounds each batch from
 * the moment it is sent, and each item's wait for a batch. ops is borrowed (it must outlive
 * the batcher); arg is passed to its callbacks. Returns an owned batcher, or NULL (logged).
 */
mh_pgbatch_t *mh_pgbatch_new(struct event_base *base, const char *conninfo,
                             const char *application_name, long timeout_ms, int nconns,
                             size_t max_batch, size_t max_pending, const mh_pgbatch_ops_t *ops,
                             void *arg);

/* Answers every item, out or waiting, as undecided, and closes. NULL is a no-op. */
void mh_pgbatch_free(mh_pgbatch_t *b);

/*
 * Queues item (ownership passes to the batcher: it comes back through ops->answer) for a batch
 * sent at the end of this loop turn at the earliest, so that the items of one turn go
 * together. Returns 0, or -1 when max_pending items are already waiting: the item is not taken
 * and the caller answers it (shedding is the caller's business).
 */
int mh_pgbatch_add(mh_pgbatch_t *b, void *item);

#endif
