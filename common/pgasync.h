#ifndef MH_PGASYNC_H
#define MH_PGASYNC_H

/*
 * One non-blocking PostgreSQL connection driven by a libevent loop: queries are queued and run
 * one at a time, each with a deadline. For daemons whose requests need an answer from
 * PostgreSQL but must never block their loop (ingest asking for firmware offers).
 *
 * Failure is fast and final for the query at hand: a query that cannot run (no connection, the
 * deadline passed, the connection broke) is answered with res NULL at once, never retried,
 * and the connection is re-established in the background with a backoff. A query that runs
 * past its deadline is abandoned by dropping the connection (the server then cancels it).
 *
 * Thread: everything runs on the thread of the event_base given to mh_pgasync_new.
 */

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct mh_pgasync mh_pgasync_t;

/*
 * The answer to one query, called exactly once and never from inside mh_pgasync_query. res is
 * borrowed for the call only: the statement's result (check PQresultStatus: a statement that
 * failed arrives as PGRES_FATAL_ERROR), or NULL when it could not run, with the reason in err
 * (borrowed, no secrets).
 */
typedef void (*mh_pgasync_cb)(const PGresult *res, const char *err, void *arg);

/*
 * Starts connecting to conninfo (copied; never logged) in the background. timeout_ms bounds
 * each query from the moment it is queued; max_queue bounds the queries waiting. Returns an
 * owned client, or NULL (logged).
 */
mh_pgasync_t *mh_pgasync_new(struct event_base *base, const char *conninfo,
                             const char *application_name, long timeout_ms, long max_queue);

/* Answers every query still waiting with NULL ("shutting down") and closes. NULL is a no-op. */
void mh_pgasync_free(mh_pgasync_t *pa);

/*
 * Queues sql (borrowed: it must outlive the query, e.g. a string literal) with nparams text
 * parameters (copied; NULL elements are SQL NULL). Returns 0 (cb will be called), or -1 when
 * the queue is full (cb will not be called).
 */
int mh_pgasync_query(mh_pgasync_t *pa, const char *sql, int nparams, const char *const *params,
                     mh_pgasync_cb cb, void *arg);

/* Copies a libpq message (several lines, tabs, a trailing newline) into out as one line. */
void mh_pgasync_one_line(const char *msg, char *out, size_t outlen);

#endif
