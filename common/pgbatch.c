#include "common/pgbatch.h"

#include "common/alloc.h"
#include "common/log.h"
#include "common/pgasync.h"

#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

typedef struct pgb_slot {
    void *item;
    long long queued_ms;
} pgb_slot_t;

/* One statement out on one connection: the items it decides, in the order sent. */
typedef struct pgb_call {
    mh_pgbatch_t *b;
    int conn;
    size_t n;
    void *items[]; /* NULL once answered */
} pgb_call_t;

struct mh_pgbatch {
    const mh_pgbatch_ops_t *ops;
    void *arg;
    long timeout_ms;
    size_t max_batch, max_pending;
    int nconns;
    mh_pgasync_t **conns;
    bool *busy;       /* conns[i] has a call out */
    pgb_slot_t *ring; /* waiting, oldest at head: max_pending slots, no allocation per item */
    size_t head, npending;
    struct event *flush_ev;
    bool stopping;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void call_done(const PGresult *res, const char *err, void *arg)
{
    pgb_call_t *c = arg;
    mh_pgbatch_t *b = c->b;
    const mh_pgbatch_ops_t *ops = b->ops;

    b->busy[c->conn] = false;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != ops->ncols) {
        if (ops->failed != NULL)
            ops->failed(res, err, b->arg);
        res = NULL;
    }
    for (int row = 0; res != NULL && row < PQntuples(res); row++) {
        long long ord = strtoll(PQgetvalue(res, row, 0), NULL, 10);
        if (ord < 1 || (size_t)ord > c->n || c->items[ord - 1] == NULL)
            continue;
        ops->answer(c->items[ord - 1], res, row, b->arg);
        c->items[ord - 1] = NULL;
    }
    for (size_t i = 0; i < c->n; i++)
        if (c->items[i] != NULL)
            ops->answer(c->items[i], NULL, -1, b->arg);
    free(c);
    if (b->npending > 0 && !b->stopping)
        event_active(b->flush_ev, EV_TIMEOUT, 0);
}

static pgb_slot_t pop(mh_pgbatch_t *b)
{
    pgb_slot_t e = b->ring[b->head];
    b->head = (b->head + 1) % b->max_pending;
    b->npending--;
    return e;
}

/* Answers as undecided the waiting items older than the deadline: a batch sent now could
 * only answer them after their requester stopped waiting. */
static void expire(mh_pgbatch_t *b)
{
    long long limit = now_ms() - b->timeout_ms;
    size_t n = 0;
    while (b->npending > 0 && b->ring[b->head].queued_ms < limit) {
        b->ops->answer(pop(b).item, NULL, -1, b->arg);
        n++;
    }
    if (n > 0 && b->ops->failed != NULL)
        b->ops->failed(NULL, "waited past the deadline for a batch", b->arg);
}

/* Sends one batch of what waits on conns[conn]. */
static void send_call(mh_pgbatch_t *b, int conn)
{
    size_t n = b->npending < b->max_batch ? b->npending : b->max_batch;
    pgb_call_t *c = mh_calloc(1, sizeof(*c) + n * sizeof(void *));
    c->b = b;
    c->conn = conn;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        void *item = pop(b).item;
        json_t *el = arr != NULL ? b->ops->element(item, b->arg) : NULL;
        if (el == NULL || json_array_append_new(arr, el) != 0)
            b->ops->answer(item, NULL, -1, b->arg); /* nothing to send for it */
        else
            c->items[c->n++] = item;
    }
    if (c->n == 0) {
        json_decref(arr);
        free(c);
        return;
    }
    char *text = arr != NULL ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    const char *params[1] = {text};
    b->busy[conn] = true;
    if (text == NULL)
        call_done(NULL, "cannot encode the batch", c);
    else if (mh_pgasync_query(b->conns[conn], b->ops->sql, 1, params, call_done, c) != 0)
        call_done(NULL, "cannot send the batch", c);
    free(text);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mh_pgbatch_t *b = arg;
    if (b->stopping)
        return;
    expire(b);
    for (int i = 0; i < b->nconns && b->npending > 0; i++)
        if (!b->busy[i])
            send_call(b, i);
}

mh_pgbatch_t *mh_pgbatch_new(struct event_base *base, const char *conninfo,
                             const char *application_name, long timeout_ms, int nconns,
                             size_t max_batch, size_t max_pending, const mh_pgbatch_ops_t *ops,
                             void *arg)
{
    mh_pgbatch_t *b = mh_calloc(1, sizeof(*b));
    b->ops = ops;
    b->arg = arg;
    b->timeout_ms = timeout_ms;
    b->max_batch = max_batch > 0 ? max_batch : 1;
    b->max_pending = max_pending > 0 ? max_pending : 1;
    b->ring = mh_calloc(b->max_pending, sizeof(*b->ring));
    b->nconns = nconns > 0 ? nconns : 1;
    b->conns = mh_calloc((size_t)b->nconns, sizeof(*b->conns));
    b->busy = mh_calloc((size_t)b->nconns, sizeof(*b->busy));
    b->flush_ev = event_new(base, -1, 0, flush_cb, b);
    if (b->flush_ev == NULL) {
        mh_log(MH_LOG_ERROR, "postgres (%s): cannot create an event", application_name);
        goto fail;
    }
    for (int i = 0; i < b->nconns; i++) {
        /* One call out at a time: a queue of two leaves room for nothing to wait there. */
        b->conns[i] = mh_pgasync_new(base, conninfo, application_name, timeout_ms, 2);
        if (b->conns[i] == NULL)
            goto fail;
    }
    return b;
fail:
    mh_pgbatch_free(b);
    return NULL;
}

void mh_pgbatch_free(mh_pgbatch_t *b)
{
    if (b == NULL)
        return;
    b->stopping = true;
    for (int i = 0; i < b->nconns; i++)
        mh_pgasync_free(b->conns[i]); /* answers the calls out */
    while (b->npending > 0)
        b->ops->answer(pop(b).item, NULL, -1, b->arg);
    if (b->flush_ev != NULL)
        event_free(b->flush_ev);
    free(b->conns);
    free(b->busy);
    free(b->ring);
    free(b);
}

int mh_pgbatch_add(mh_pgbatch_t *b, void *item)
{
    if (b->npending >= b->max_pending)
        return -1;
    b->ring[(b->head + b->npending) % b->max_pending] = (pgb_slot_t){item, now_ms()};
    b->npending++;
    event_active(b->flush_ev, EV_TIMEOUT, 0);
    return 0;
}
