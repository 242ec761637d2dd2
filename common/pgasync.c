#include "common/pgasync.h"

#include "common/alloc.h"
#include "common/log.h"

#include <stdlib.h>
#include <string.h>

#define PGA_CONNECT_TIMEOUT_MS 5000
#define PGA_BACKOFF_MIN_MS 100
#define PGA_BACKOFF_MAX_MS 5000

typedef struct pga_job pga_job_t;

struct pga_job {
    pga_job_t *prev, *next;
    mh_pgasync_t *pa;
    const char *sql;
    int nparams;
    char **params;
    mh_pgasync_cb cb;
    void *arg;
    struct event *timer; /* the deadline; also fired at once to fail a job early */
    const char *fail;    /* why the job failed before it could run, or NULL */
};

typedef enum pga_state { PGA_DOWN, PGA_CONNECTING, PGA_IDLE, PGA_BUSY } pga_state_t;

struct mh_pgasync {
    struct event_base *base;
    char *conninfo;
    char *appname;
    long timeout_ms;
    long max_queue;
    long nqueued; /* jobs in the list, the running one included */
    PGconn *conn;
    pga_state_t state;
    struct event *io_ev; /* readiness of conn's socket, NULL when not watching */
    struct event *retry_ev;
    int backoff_ms;
    bool down_logged;
    pga_job_t jobs;         /* list head (sentinel), oldest first */
    pga_job_t *running;     /* the job whose statement is on the connection, or NULL */
    PGresult *result;       /* the running statement's result, while libpq waits for the rest */
    struct event *kick_ev;  /* starts the next job from the loop */
    unsigned long finished; /* jobs answered so far */
};

static void io_cb(evutil_socket_t fd, short what, void *arg);
static void run_next(mh_pgasync_t *pa);

static void job_free(pga_job_t *job)
{
    for (int i = 0; i < job->nparams; i++)
        free(job->params[i]);
    free(job->params);
    if (job->timer != NULL)
        event_free(job->timer);
    free(job);
}

/* Unlinks job and answers it. */
static void job_finish(pga_job_t *job, const PGresult *res, const char *err)
{
    mh_pgasync_t *pa = job->pa;
    job->prev->next = job->next;
    job->next->prev = job->prev;
    pa->nqueued--;
    pa->finished++;
    if (pa->running == job)
        pa->running = NULL;
    mh_pgasync_cb cb = job->cb;
    void *arg = job->arg;
    job_free(job);
    cb(res, err, arg);
}

static void unwatch(mh_pgasync_t *pa)
{
    if (pa->io_ev != NULL) {
        event_free(pa->io_ev);
        pa->io_ev = NULL;
    }
}

static int watch(mh_pgasync_t *pa, short what, long timeout_ms)
{
    unwatch(pa);
    pa->io_ev = event_new(pa->base, PQsocket(pa->conn), what | EV_PERSIST, io_cb, pa);
    if (pa->io_ev == NULL)
        return -1;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return event_add(pa->io_ev, timeout_ms > 0 ? &tv : NULL);
}

/* The connection is unusable: close it, fail every job, reconnect after the backoff. */
static void went_down(mh_pgasync_t *pa, const char *reason)
{
    char why[160];
    mh_pgasync_one_line(reason, why, sizeof(why));

    unwatch(pa);
    PQclear(pa->result);
    pa->result = NULL;
    if (pa->conn != NULL) {
        PQfinish(pa->conn);
        pa->conn = NULL;
    }
    pa->state = PGA_DOWN;
    if (!pa->down_logged) {
        mh_log(MH_LOG_WARN, "postgres (%s): %s; reconnecting in the background", pa->appname, why);
        pa->down_logged = true;
    }
    struct timeval tv = {pa->backoff_ms / 1000, (pa->backoff_ms % 1000) * 1000};
    event_add(pa->retry_ev, &tv);
    pa->backoff_ms =
        pa->backoff_ms * 2 > PGA_BACKOFF_MAX_MS ? PGA_BACKOFF_MAX_MS : pa->backoff_ms * 2;
    /* Callbacks may queue new jobs: those find the state DOWN and fail through their timer. */
    while (pa->jobs.next != &pa->jobs)
        job_finish(pa->jobs.next, NULL, why);
}

static void poll_connect(mh_pgasync_t *pa, PostgresPollingStatusType st)
{
    switch (st) {
    case PGRES_POLLING_READING:
        if (watch(pa, EV_READ, PGA_CONNECT_TIMEOUT_MS) != 0)
            went_down(pa, "cannot watch the socket");
        return;
    case PGRES_POLLING_WRITING:
        if (watch(pa, EV_WRITE, PGA_CONNECT_TIMEOUT_MS) != 0)
            went_down(pa, "cannot watch the socket");
        return;
    case PGRES_POLLING_OK:
        unwatch(pa);
        if (PQsetnonblocking(pa->conn, 1) != 0) {
            went_down(pa, PQerrorMessage(pa->conn));
            return;
        }
        if (pa->down_logged)
            mh_log(MH_LOG_INFO, "postgres (%s): connected", pa->appname);
        pa->down_logged = false;
        pa->backoff_ms = PGA_BACKOFF_MIN_MS;
        pa->state = PGA_IDLE;
        run_next(pa);
        return;
    case PGRES_POLLING_FAILED:
    default:
        went_down(pa, PQerrorMessage(pa->conn));
        return;
    }
}

static void start_connect(mh_pgasync_t *pa)
{
    const char *keys[] = {"dbname", "application_name", NULL};
    const char *vals[] = {pa->conninfo, pa->appname, NULL};
    pa->conn = PQconnectStartParams(keys, vals, 1);
    if (pa->conn == NULL) {
        went_down(pa, "out of memory");
        return;
    }
    if (PQstatus(pa->conn) == CONNECTION_BAD) {
        went_down(pa, PQerrorMessage(pa->conn));
        return;
    }
    pa->state = PGA_CONNECTING;
    poll_connect(pa, PGRES_POLLING_WRITING);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    start_connect(arg);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    run_next(arg);
}

/* Sends what libpq buffered; then waits for the answer (and for writability while more is
 * left to send). */
static void flush(mh_pgasync_t *pa)
{
    int r = PQflush(pa->conn);
    if (r < 0 || watch(pa, r == 1 ? EV_READ | EV_WRITE : EV_READ, 0) != 0)
        went_down(pa, PQerrorMessage(pa->conn));
}

static void run_next(mh_pgasync_t *pa)
{
    if (pa->state != PGA_IDLE)
        return;
    if (pa->jobs.next == &pa->jobs) {
        /* Idle, but listening: a server that goes away (restart, idle timeout) closes the
         * socket, and we reconnect now rather than fail the next query on a dead connection. */
        if (watch(pa, EV_READ, 0) != 0)
            went_down(pa, "cannot watch the socket");
        return;
    }
    pga_job_t *job = pa->jobs.next;
    if (!PQsendQueryParams(pa->conn, job->sql, job->nparams, NULL, (const char *const *)job->params,
                           NULL, NULL, 0)) {
        went_down(pa, PQerrorMessage(pa->conn));
        return;
    }
    pa->running = job;
    pa->state = PGA_BUSY;
    flush(pa);
}

static void consume(mh_pgasync_t *pa)
{
    if (!PQconsumeInput(pa->conn)) {
        went_down(pa, PQerrorMessage(pa->conn));
        return;
    }
    /* One statement: one result, then NULL once the server is ready again (which may arrive
     * in a later read). Keep the first result, drop any other. */
    for (;;) {
        if (PQisBusy(pa->conn))
            return;
        PGresult *r = PQgetResult(pa->conn);
        if (r == NULL)
            break;
        if (pa->result == NULL)
            pa->result = r;
        else
            PQclear(r);
    }
    PGresult *res = pa->result;
    pa->result = NULL;
    unwatch(pa);
    pa->state = PGA_IDLE;
    pga_job_t *job = pa->running;
    if (job != NULL)
        job_finish(job, res, res ? NULL : "no result");
    PQclear(res);
    run_next(pa);
}

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    mh_pgasync_t *pa = arg;
    if (pa->state == PGA_CONNECTING) {
        if (what & EV_TIMEOUT)
            went_down(pa, "connection timed out");
        else
            poll_connect(pa, PQconnectPoll(pa->conn));
        return;
    }
    if (pa->state == PGA_IDLE) {
        if (!PQconsumeInput(pa->conn) || PQstatus(pa->conn) == CONNECTION_BAD) {
            went_down(pa, PQerrorMessage(pa->conn));
            return;
        }
        PGnotify *n;
        while ((n = PQnotifies(pa->conn)) != NULL)
            PQfreemem(n);
        return;
    }
    if (pa->state != PGA_BUSY)
        return;
    if (what & EV_WRITE) {
        flush(pa);
        if (pa->state != PGA_BUSY)
            return;
    }
    if (what & EV_READ)
        consume(pa);
}

static void job_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    pga_job_t *job = arg;
    mh_pgasync_t *pa = job->pa;
    if (job == pa->running) {
        /* A busy loop may run this timer before the socket event of an answer that has
         * arrived: read what is there first. */
        unsigned long finished = pa->finished;
        consume(pa);
        if (pa->finished == finished && pa->state == PGA_BUSY) {
            /* The statement is still out: the only way to stop waiting for it is to drop the
             * connection, which makes the server cancel it. */
            went_down(pa, "query timed out");
        }
        return;
    }
    job_finish(job, NULL, job->fail ? job->fail : "query timed out waiting for the connection");
}

mh_pgasync_t *mh_pgasync_new(struct event_base *base, const char *conninfo,
                             const char *application_name, long timeout_ms, long max_queue)
{
    mh_pgasync_t *pa = mh_calloc(1, sizeof(*pa));
    pa->base = base;
    pa->conninfo = mh_strdup(conninfo);
    pa->appname = mh_strdup(application_name);
    pa->timeout_ms = timeout_ms;
    pa->max_queue = max_queue;
    pa->jobs.next = pa->jobs.prev = &pa->jobs;
    pa->backoff_ms = PGA_BACKOFF_MIN_MS;
    pa->retry_ev = evtimer_new(base, retry_cb, pa);
    pa->kick_ev = evtimer_new(base, kick_cb, pa);
    if (pa->retry_ev == NULL || pa->kick_ev == NULL) {
        mh_log(MH_LOG_ERROR, "postgres (%s): cannot create a timer", application_name);
        mh_pgasync_free(pa);
        return NULL;
    }
    start_connect(pa);
    return pa;
}

void mh_pgasync_free(mh_pgasync_t *pa)
{
    if (pa == NULL)
        return;
    unwatch(pa);
    PQclear(pa->result);
    if (pa->conn != NULL)
        PQfinish(pa->conn);
    pa->conn = NULL;
    pa->state = PGA_DOWN;
    while (pa->jobs.next != &pa->jobs)
        job_finish(pa->jobs.next, NULL, "shutting down");
    if (pa->retry_ev != NULL)
        event_free(pa->retry_ev);
    if (pa->kick_ev != NULL)
        event_free(pa->kick_ev);
    free(pa->conninfo);
    free(pa->appname);
    free(pa);
}

int mh_pgasync_query(mh_pgasync_t *pa, const char *sql, int nparams, const char *const *params,
                     mh_pgasync_cb cb, void *arg)
{
    if (pa->nqueued >= pa->max_queue)
        return -1;
    pga_job_t *job = mh_calloc(1, sizeof(*job));
    job->pa = pa;
    job->sql = sql;
    job->nparams = nparams;
    job->params = mh_calloc(nparams > 0 ? (size_t)nparams : 1, sizeof(char *));
    for (int i = 0; i < nparams; i++)
        job->params[i] = params[i] ? mh_strdup(params[i]) : NULL;
    job->cb = cb;
    job->arg = arg;
    job->timer = evtimer_new(pa->base, job_timer_cb, job);
    if (job->timer == NULL) {
        job_free(job);
        return -1;
    }
    job->prev = pa->jobs.prev;
    job->next = &pa->jobs;
    pa->jobs.prev->next = job;
    pa->jobs.prev = job;
    pa->nqueued++;
    if (pa->state == PGA_DOWN) {
        /* Answer from the loop, not from inside this call. */
        job->fail = "not connected";
        event_active(job->timer, EV_TIMEOUT, 0);
        return 0;
    }
    struct timeval tv = {pa->timeout_ms / 1000, (pa->timeout_ms % 1000) * 1000};
    event_add(job->timer, &tv);
    if (pa->state == PGA_IDLE)
        event_active(pa->kick_ev, EV_TIMEOUT, 0);
    return 0;
}

void mh_pgasync_one_line(const char *msg, char *out, size_t outlen)
{
    size_t n = 0;
    bool space = false;
    for (const char *p = msg ? msg : ""; *p && n + 1 < outlen; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r' || *p == ' ') {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < outlen)
            out[n++] = ' ';
        space = false;
        out[n++] = *p;
    }
    if (outlen > 0)
        out[n] = '\0';
}
