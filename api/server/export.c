/*
 * GET /v1/export: every reading of the caller's sensors as one streamed answer, NDJSON or CSV,
 * ordered by sensor id, then time.
 *
 * A database thread reads the rows through a server-side cursor, in one REPEATABLE READ READ
 * ONLY transaction (one snapshot however long the export takes), and formats them a FETCH at a
 * time; the loop thread writes them as a chunked HTTP answer. Between the two sits the stream:
 * a buffer under a mutex, and a count of the bytes queued but not yet written to the socket.
 * The producer sleeps while that count is above API_STREAM_HIGH_WATER; the loop thread hands
 * one chunk at a time to evhttp and, when libevent reports it written (the output buffer
 * drained), takes the count down and wakes the producer. Memory stays bounded whatever the
 * export's size, and a slow client slows the cursor down instead of filling our heap.
 *
 * A client that goes away (EOF, a reset, or nothing taken for idle_timeout_s: libevent's
 * write timeout) makes evhttp free the connection; its close callback marks the stream gone,
 * the producer's next write fails, and it rolls back and frees its thread.
 */
#include "api_internal.h"

#include "common/alloc.h"
#include "common/log.h"
#include "common/pg.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct api_stream {
    api_server_t *srv;
    /* Loop thread only. */
    struct evhttp_request *req; /* NULL once libevent has freed it with its connection */
    bool req_owned;             /* detached from its failed connection: ours to free */
    struct event *wake_ev;      /* made active by the producer: data is pending */
    const char *type;           /* Content-Type */
    bool started;               /* the status line and headers are out */
    bool ending;                /* produced whole; ends once the last chunk is written */
    size_t inflight;            /* bytes handed to evhttp and not yet reported written */
    uint64_t sent;              /* bytes handed to evhttp in all */
    struct evbuffer *chunk;     /* what is being handed over */
    /* Shared, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t drained;
    struct evbuffer *pending; /* produced, not handed to evhttp yet */
    size_t queued;            /* pending + inflight */
    uint64_t produced;        /* bytes written into the stream in all */
    bool gone;                /* the client went away: stop producing */
};

static void flush(api_stream_t *s);
static void end_complete(api_stream_t *s);

/* Counts how the stream ended and frees it. */
static void finish(api_stream_t *s, api_export_outcome_t outcome)
{
    api_metrics_t *m = &s->srv->metrics;
    atomic_fetch_add_explicit(&m->exports[outcome], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->export_bytes, s->sent, memory_order_relaxed);
    api_stream_free(s);
}

/* evhttp is freeing the connection: the client went away, timed out, or we are shutting down. */
static void close_cb(struct evhttp_connection *evcon, void *arg)
{
    api_stream_t *s = arg;
    (void)evcon;
    /* A request still being answered is detached from a connection that fails, and left to us;
     * at shutdown (evhttp_free) it is freed with the connection. */
    s->req_owned = evhttp_request_get_connection(s->req) == NULL;
    if (!s->req_owned)
        s->req = NULL;
    pthread_mutex_lock(&s->lock);
    s->gone = true;
    pthread_cond_broadcast(&s->drained);
    pthread_mutex_unlock(&s->lock);
    /* No job holds a stream that is ending: it goes with its connection. */
    if (s->ending)
        finish(s, API_EXPORT_CLIENT_GONE);
}

/*
 * evhttp wrote everything it had: the chunk in flight is on its way to the client. libevent
 * runs this callback deferred, some time after the output buffer emptied, and evhttp calls
 * whatever callback the connection has by then. So nothing is handed over while a chunk is in
 * flight: the next one goes from the loop (wake_cb), and the end of the answer from here, once
 * the last chunk's callback has come (see api_stream_end).
 */
static void written_cb(struct evhttp_connection *evcon, void *arg)
{
    api_stream_t *s = arg;
    (void)evcon;
    if (s->inflight == 0)
        return;
    pthread_mutex_lock(&s->lock);
    s->queued -= s->inflight;
    pthread_cond_signal(&s->drained);
    pthread_mutex_unlock(&s->lock);
    s->inflight = 0;
    if (s->ending)
        end_complete(s);
    else
        event_active(s->wake_ev, EV_READ, 0);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush(arg);
}

static void start(api_stream_t *s)
{
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(s->req);
    evhttp_add_header(hdr, "Content-Type", s->type);
    evhttp_add_header(hdr, "Cache-Control", "no-store");
    api_count_status(s->srv, 200);
    /* No Content-Length: HTTP/1.1 gets a chunked body. */
    evhttp_send_reply_start(s->req, 200, NULL);
    s->started = true;
}

/* Moves what is pending into s->chunk; returns its length. */
static size_t take_pending(api_stream_t *s)
{
    pthread_mutex_lock(&s->lock);
    evbuffer_add_buffer(s->chunk, s->pending);
    pthread_mutex_unlock(&s->lock);
    return evbuffer_get_length(s->chunk);
}

/* Hands what is pending to evhttp as one chunk, unless the last one is still being written. */
static void flush(api_stream_t *s)
{
    if (s->req == NULL || s->req_owned || s->inflight > 0 || s->ending)
        return;
    size_t n = take_pending(s);
    if (n == 0)
        return;
    if (!s->started)
        start(s);
    s->inflight = n;
    s->sent += n;
    evhttp_send_reply_chunk_with_cb(s->req, s->chunk, written_cb, s);
}

api_stream_t *api_stream_new(api_server_t *srv, struct evhttp_request *req, const char *type)
{
    api_stream_t *s = mh_calloc(1, sizeof(*s));
    s->srv = srv;
    s->req = req;
    s->type = type;
    s->pending = evbuffer_new();
    s->chunk = evbuffer_new();
    s->wake_ev = event_new(srv->base, -1, 0, wake_cb, s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->drained, NULL);
    srv->exports++;
    if (s->pending == NULL || s->chunk == NULL || s->wake_ev == NULL) {
        api_stream_free(s);
        return NULL;
    }
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon != NULL) {
        evhttp_connection_set_closecb(evcon, close_cb, s);
    } else {
        s->req_owned = true;
        s->gone = true;
    }
    return s;
}

int api_stream_write(api_stream_t *s, struct evbuffer *data)
{
    size_t n = evbuffer_get_length(data);
    int rc = -1;

    pthread_mutex_lock(&s->lock);
    while (!s->gone && s->queued >= API_STREAM_HIGH_WATER) {
        /* The close callback ends this wait; the timeout only guards a shutdown that would
         * stop the loop without freeing the connection. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        if (pthread_cond_timedwait(&s->drained, &s->lock, &until) == ETIMEDOUT) {
            pthread_mutex_lock(&s->srv->lock);
            bool stopping = s->srv->stopping;
            pthread_mutex_unlock(&s->srv->lock);
            if (stopping)
                s->gone = true;
        }
    }
    if (!s->gone) {
        evbuffer_add_buffer(s->pending, data);
        s->queued += n;
        s->produced += n;
        rc = 0;
    }
    pthread_mutex_unlock(&s->lock);
    if (rc == 0)
        event_active(s->wake_ev, EV_READ, 0);
    else
        evbuffer_drain(data, n);
    return rc;
}

/* Sends what is left and the last chunk, and frees s. Nothing may be in flight. */
static void end_complete(api_stream_t *s)
{
    evhttp_connection_set_closecb(evhttp_request_get_connection(s->req), NULL, NULL);
    size_t n = take_pending(s);
    if (!s->started)
        start(s);
    if (n > 0)
        evhttp_send_reply_chunk(s->req, s->chunk);
    s->sent += n;
    evhttp_send_reply_end(s->req);
    s->req = NULL;
    /* An invariant, checked because a short body would look complete. */
    if (s->sent != s->produced)
        mh_log(MH_LOG_ERROR, "api: export stream sent %llu bytes of %llu",
               (unsigned long long)s->sent, (unsigned long long)s->produced);
    finish(s, API_EXPORT_COMPLETE);
}

bool api_stream_end(api_stream_t *s, bool complete)
{
    if (s->req == NULL || s->req_owned) {
        if (s->req_owned)
            evhttp_send_reply_end(s->req); /* frees a request without a connection */
        s->req = NULL;
        s->req_owned = false;
        finish(s, API_EXPORT_CLIENT_GONE);
        return true;
    }
    if (complete) {
        /*
         * evhttp_send_reply_end makes evhttp's "all written" step the connection's write
         * callback. With a chunk in flight, a callback for it may already be scheduled: it
         * would end the request before the rest is written, and the connection would wait
         * for the next request with the end of this answer still in its buffer. So the end
         * waits for that chunk's callback.
         */
        if (s->inflight > 0)
            s->ending = true;
        else
            end_complete(s);
        return true;
    }
    struct evhttp_connection *evcon = evhttp_request_get_connection(s->req);
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    if (!s->started) {
        s->req = NULL;
        finish(s, API_EXPORT_FAILED);
        return false; /* the caller sends the job's error */
    }
    /* The 200 is out: only an incomplete body can tell the client. Closing without the last
     * chunk does; freeing the connection frees the request too. */
    mh_log(MH_LOG_WARN, "api: export cut off after %llu bytes: the database failed",
           (unsigned long long)s->sent);
    evhttp_connection_free(evcon);
    s->req = NULL;
    finish(s, API_EXPORT_FAILED);
    return true;
}

void api_stream_free(api_stream_t *s)
{
    if (s == NULL)
        return;
    if (s->req_owned && s->req != NULL)
        evhttp_request_free(s->req);
    s->srv->exports--;
    if (s->wake_ev != NULL)
        event_free(s->wake_ev);
    if (s->pending != NULL)
        evbuffer_free(s->pending);
    if (s->chunk != NULL)
        evbuffer_free(s->chunk);
    pthread_cond_destroy(&s->drained);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* ---- the producer, on a database thread ---- */

/* Rows per FETCH: a round trip per ~70 kB of NDJSON, and a bounded result in memory. */
#define EXPORT_FETCH_ROWS 1000
#define EXPORT_STR_(x) #x
#define EXPORT_STR(x) EXPORT_STR_(x)
#define EXPORT_FETCH_SQL "FETCH FORWARD " EXPORT_STR(EXPORT_FETCH_ROWS) " FROM export_readings"

/*
 * One cursor per sensor, in the order of their ids: each walks the primary key (sensor, ts) of
 * every partition, already in time order. A single join of sensors and readings would make the
 * planner sort the whole export before the first row (measured: a second for 500,000 rows,
 * and unbounded work for more). Row-level security limits both queries to the bound account.
 */
static const char sensors_sql[] = "SELECT sid, id FROM sensors ORDER BY id";
static const char cursor_sql[] = "DECLARE export_readings NO SCROLL CURSOR FOR"
                                 " SELECT extract(epoch FROM ts)::bigint, value FROM readings"
                                 " WHERE sensor = $1::bigint ORDER BY ts";

/* One NDJSON line's object, reused from row to row: {"sensor", "ts", "value"}. */
typedef struct export_line {
    json_t *obj, *sensor, *ts, *value;
} export_line_t;

static int line_init(export_line_t *l)
{
    l->sensor = json_string("");
    l->ts = json_integer(0);
    l->value = json_real(0);
    l->obj = json_object();
    if (l->sensor == NULL || l->ts == NULL || l->value == NULL || l->obj == NULL ||
        json_object_set(l->obj, "sensor", l->sensor) != 0 ||
        json_object_set(l->obj, "ts", l->ts) != 0 || json_object_set(l->obj, "value", l->value))
        return -1;
    return 0;
}

static void line_dispose(export_line_t *l)
{
    json_decref(l->obj);
    json_decref(l->sensor);
    json_decref(l->ts);
    json_decref(l->value);
}

/* Appends row i of r (ts, value) of sensor id to out, as CSV or as an NDJSON line. Returns 0,
 * or -1 (not encodable). */
static int format_row(export_line_t *l, bool csv, const char *id, const PGresult *r, int i,
                      struct evbuffer *out)
{
    const char *ts = PQgetvalue(r, i, 0), *value = PQgetvalue(r, i, 1);
    char text[256];

    if (csv) {
        /* The sensor id is hex and the others are numbers: nothing to quote. */
        evbuffer_add(out, id, strlen(id));
        evbuffer_add(out, ",", 1);
        evbuffer_add(out, ts, (size_t)PQgetlength(r, i, 0));
        evbuffer_add(out, ",", 1);
        evbuffer_add(out, value, (size_t)PQgetlength(r, i, 1));
        evbuffer_add(out, "\n", 1);
        return 0;
    }
    json_integer_set(l->ts, (json_int_t)strtoll(ts, NULL, 10));
    /* PostgreSQL prints the shortest text that reads back as the same double, and so does
     * jansson. A NaN or an infinity (only SQL can store one) has no JSON number: null. */
    double v = strtod(value, NULL);
    json_t *number = isfinite(v) && json_real_set(l->value, v) == 0 ? l->value : json_null();
    if (json_object_set(l->obj, "value", number) != 0)
        return -1;
    size_t n = json_dumpb(l->obj, text, sizeof(text) - 1, JSON_COMPACT);
    if (n == 0 || n > sizeof(text) - 1)
        return -1;
    text[n] = '\n';
    evbuffer_add(out, text, n + 1);
    return 0;
}

/* The producer's state: what it writes, and how far it got. */
typedef struct export_run {
    api_job_t *job;
    PGconn *pg;
    export_line_t line;
    struct evbuffer *out;
    unsigned long long rows, bytes;
    bool gone; /* the client went away */
} export_run_t;

/* Hands what is formatted to the stream; sets x->gone when the client has gone away. */
static void push(export_run_t *x)
{
    x->bytes += evbuffer_get_length(x->out);
    if (evbuffer_get_length(x->out) > 0 && api_stream_write(x->job->stream, x->out) != 0)
        x->gone = true;
}

/* Streams the readings of one sensor. Returns 0 (x->gone set if the client went away), or -1
 * with the job's error answer set and the transaction rolled back. */
static int export_sensor(export_run_t *x, const char *sid, const char *id)
{
    PGresult *r = NULL;
    int n = EXPORT_FETCH_ROWS;

    if (json_string_set(x->line.sensor, id) != 0) {
        api_job_error(x->job, 500, "internal", "a sensor id could not be encoded");
        goto fail;
    }
    r = PQexecParams(x->pg, cursor_sql, 1, NULL, &sid, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        api_db_fail(x->job, x->pg, "opening an export cursor");
        goto fail;
    }
    while (n == EXPORT_FETCH_ROWS && !x->gone) {
        PQclear(r);
        r = PQexec(x->pg, EXPORT_FETCH_SQL);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            api_db_fail(x->job, x->pg, "exporting readings");
            goto fail;
        }
        n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            if (format_row(&x->line, (x->job->range.format == API_FMT_CSV), id, r, i, x->out) !=
                0) {
                api_job_error(x->job, 500, "internal", "a reading could not be encoded");
                goto fail;
            }
        }
        x->rows += (unsigned long long)n;
        push(x);
    }
    PQclear(r);
    r = PQexec(x->pg, "CLOSE export_readings");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        api_db_fail(x->job, x->pg, "closing an export cursor");
        goto fail;
    }
    PQclear(r);
    return 0;
fail:
    PQclear(r);
    /* api_db_fail has rolled back already; an encoding failure has not. */
    if (!mh_pg_conn_lost(x->pg) && PQtransactionStatus(x->pg) != PQTRANS_IDLE) {
        r = PQexec(x->pg, "ROLLBACK");
        PQclear(r);
    }
    return -1;
}

void api_run_export(api_job_t *job, PGconn *pg)
{
    export_run_t x = {.job = job, .pg = pg, .out = evbuffer_new()};
    PGresult *sensors = NULL;
    long long account = -1;

    if (x.out == NULL || line_init(&x.line) != 0) {
        api_job_error(job, 500, "internal", "out of memory");
        goto done;
    }
    account = api_db_begin_snapshot_as(job, pg);
    if (account < 0)
        goto done;
    /* A cursor over a big sensor costs enough for PostgreSQL to JIT-compile it: 0.8 s before
     * the first row of 500,000 (measured), against 1 ms without, for plain index scans. */
    sensors = PQexec(pg, "SET LOCAL jit = off");
    if (PQresultStatus(sensors) != PGRES_COMMAND_OK) {
        api_db_fail(job, pg, "SET jit");
        goto done;
    }
    PQclear(sensors);
    sensors = PQexec(pg, sensors_sql);
    if (PQresultStatus(sensors) != PGRES_TUPLES_OK) {
        api_db_fail(job, pg, "listing the sensors to export");
        goto done;
    }
    if (job->range.format == API_FMT_CSV)
        evbuffer_add(x.out, "sensor,ts,value\n", 16);
    for (int i = 0; i < PQntuples(sensors) && !x.gone; i++)
        if (export_sensor(&x, PQgetvalue(sensors, i, 0), PQgetvalue(sensors, i, 1)) != 0)
            goto done;
    /* What is left: an empty CSV export's header, say. */
    if (!x.gone)
        push(&x);
    if (x.gone) {
        PGresult *r = PQexec(pg, "ROLLBACK");
        PQclear(r);
        mh_log(MH_LOG_INFO, "api: export of account %lld to %s stopped: the client went away",
               account, job->peer);
        goto done;
    }
    if (api_db_commit(job, pg) != 0)
        goto done;
    job->status = 200;
    mh_log(MH_LOG_INFO, "api: export of account %lld to %s: %llu readings, %llu bytes", account,
           job->peer, x.rows, x.bytes);
done:
    PQclear(sensors);
    line_dispose(&x.line);
    if (x.out != NULL)
        evbuffer_free(x.out);
}
