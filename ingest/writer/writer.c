#include "writer_internal.h"

#include "common/alloc.h"
#include "common/log.h"
#include "proto/meterhub.pb-c.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * Readings per statement. A read of batch_size large entries is split into statements of about
 * this size, so that a statement's arrays stay small and it does not hold row locks for long.
 * Measured on 2 cores: rows/s is flat (200-270k, noisy) from 2,000 to 20,000 rows per
 * statement and lower at 1,000 or 50,000.
 */
#define WR_MAX_STATEMENT_READINGS 10000

/* How often shard 0 makes sure next months' readings partitions exist. */
#define WR_PARTITIONS_EVERY_MS (6 * 3600 * 1000L)

#define WR_ID_MAX 64 /* stream ids are "<ms>-<seq>", at most 41 characters */

/* One outage of a server: logged when it starts and when it ends, not at every attempt. */
typedef struct wr_outage {
    bool down;
    int64_t since_ms;
    uint64_t attempts;
} wr_outage_t;

struct wr_writer {
    const wr_conf_t *conf;
    const mh_redis_conf_t *redis;
    long shard;
    char *consumer;
    char stream_key[MH_QUEUE_KEY_MAX];
    char dead_key[MH_QUEUE_KEY_MAX];

    pthread_t thread;
    bool started;
    pthread_mutex_t lock; /* with cond: lets a stop request cut a backoff sleep short */
    pthread_cond_t cond;
    atomic_bool stop;

    /* Owned by the shard's thread once started. */
    redisContext *rc;
    wr_store_t *store;
    redisReply *reply; /* the read or claim reply the entries borrow from */
    wr_entries_t entries;
    wr_batch_t batch;
    bool reading_pending; /* re-reading our own pending entries, from pending_cursor */
    char pending_cursor[WR_ID_MAX];
    char claim_cursor[WR_ID_MAX];
    int64_t next_claim_ms;
    int64_t next_partitions_ms;
    int64_t last_write_ms;
    wr_backoff_t pg_backoff, redis_backoff;
    wr_outage_t pg_outage, redis_outage;
    const char **argv; /* XACK/XDEL argument vectors, grown as needed */
    size_t *argvlen;
    size_t argcap;

    wr_metrics_t metrics;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- entries (pure) ---- */

void wr_entry_set_dead(wr_entry_t *e, const char *reason)
{
    if (e->reason == NULL)
        e->reason = mh_strdup(reason);
}

void wr_entries_clear(wr_entries_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i].reason);
    e->n = 0;
}

void wr_entries_dispose(wr_entries_t *e)
{
    wr_entries_clear(e);
    free(e->v);
    memset(e, 0, sizeof(*e));
}

size_t wr_entries_count_ids(const wr_entries_t *e)
{
    size_t n = 0;
    for (size_t i = 0; i < e->n; i++)
        if (i == 0 || e->v[i].id != e->v[i - 1].id)
            n++;
    return n;
}

static wr_entry_t *entries_push(wr_entries_t *e)
{
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 64;
        e->v = mh_realloc(e->v, e->cap * sizeof(*e->v));
    }
    wr_entry_t *x = &e->v[e->n++];
    memset(x, 0, sizeof(*x));
    return x;
}

int wr_parse_entries(const redisReply *list, wr_entries_t *out)
{
    if (list == NULL || list->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < list->elements; i++) {
        const redisReply *item = list->element[i];
        /* XAUTOCLAIM before Redis 7 returns nil for an entry deleted while pending: there is
         * no id to acknowledge, and nothing to store. */
        if (item->type == REDIS_REPLY_NIL)
            continue;
        if (item->type != REDIS_REPLY_ARRAY || item->elements != 2 ||
            item->element[0]->type != REDIS_REPLY_STRING)
            return -1;
        const redisReply *fields = item->element[1];
        if (fields->type != REDIS_REPLY_NIL && fields->type != REDIS_REPLY_ARRAY)
            return -1;
        if (fields->type == REDIS_REPLY_NIL) {
            wr_entry_t *x = entries_push(out);
            x->id = item->element[0]->str;
            x->deleted = true;
            continue;
        }
        /* One wr_entry_t per field "e": ingest puts the batches one worker accepted in one
         * loop turn into one stream entry. They share the id; each is stored, or
         * dead-lettered, on its own. An entry without any "e" is one payload-less entry
         * (dead-lettered as such). */
        size_t before = out->n;
        for (size_t f = 0; f + 1 < fields->elements; f += 2) {
            const redisReply *k = fields->element[f], *v = fields->element[f + 1];
            if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
                k->len == strlen(MH_QUEUE_FIELD) && memcmp(k->str, MH_QUEUE_FIELD, k->len) == 0) {
                wr_entry_t *x = entries_push(out);
                x->id = item->element[0]->str;
                x->payload = v->str;
                x->payload_len = v->len;
            }
        }
        if (out->n == before)
            entries_push(out)->id = item->element[0]->str;
    }
    return 0;
}

int wr_parse_read_reply(const redisReply *r, wr_entries_t *out)
{
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_NIL)
        return 0; /* BLOCK timed out */
    if (r->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *stream = r->element[i];
        if (stream->type != REDIS_REPLY_ARRAY || stream->elements != 2)
            return -1;
        if (wr_parse_entries(stream->element[1], out) != 0)
            return -1;
    }
    return 0;
}

int wr_parse_claim_reply(const redisReply *r, char *cursor, size_t cursorlen, wr_entries_t *out)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= cursorlen)
        return -1;
    memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
    /* A third element (Redis 7) lists ids deleted while pending; Redis has already removed
     * them from the pending list, so there is nothing to do with them. */
    return wr_parse_entries(r->element[1], out);
}

/* ---- decoding (pure) ---- */

int wr_decode_entry(const char *payload, size_t len, wr_batch_t *b, char *reason, size_t reasonlen)
{
    Meterhub__QueueEntry *q = NULL;

    if (len > WR_ENTRY_MAX_BYTES) {
        snprintf(reason, reasonlen, "entry too large (%zu bytes)", len);
        goto fail;
    }
    q = meterhub__queue_entry__unpack(NULL, len, (const uint8_t *)payload);
    if (q == NULL) {
        snprintf(reason, reasonlen, "not a meterhub.QueueEntry protobuf");
        goto fail;
    }
    switch (q->body_case) {
    case METERHUB__QUEUE_ENTRY__BODY_BATCH: {
        const Meterhub__SensorBatch *sb = q->batch;
        if (sb->sensor == 0 || sb->sensor > (uint64_t)INT64_MAX) {
            snprintf(reason, reasonlen, "invalid sensor %" PRIu64, sb->sensor);
            goto fail;
        }
        if (sb->n_ts != sb->n_value) {
            snprintf(reason, reasonlen, "sensor %" PRIu64 ": %zu timestamps but %zu values",
                     sb->sensor, sb->n_ts, sb->n_value);
            goto fail;
        }
        for (size_t i = 0; i < sb->n_value; i++) {
            if (!isfinite(sb->value[i])) {
                snprintf(reason, reasonlen, "sensor %" PRIu64 ": value %zu is not finite",
                         sb->sensor, i);
                goto fail;
            }
        }
        for (size_t i = 0; i < sb->n_ts; i++)
            wr_batch_add_reading(b, (int64_t)sb->sensor, sb->ts[i], sb->value[i]);
        break;
    }
    case METERHUB__QUEUE_ENTRY__BODY_HEARTBEAT: {
        const Meterhub__Heartbeat *hb = q->heartbeat;
        if (hb->device == 0 || hb->device > (uint64_t)INT64_MAX) {
            snprintf(reason, reasonlen, "invalid device %" PRIu64, hb->device);
            goto fail;
        }
        wr_batch_add_heartbeat(b, (int64_t)hb->device, hb->ts, hb->firmware_version,
                               hb->remote_upgrade);
        break;
    }
    default:
        snprintf(reason, reasonlen, "entry holds neither a sensor batch nor a heartbeat");
        goto fail;
    }
    meterhub__queue_entry__free_unpacked(q, NULL);
    return 0;
fail:
    if (q != NULL)
        meterhub__queue_entry__free_unpacked(q, NULL);
    return -1;
}

size_t wr_fill_batch(wr_entries_t *e, size_t from, wr_batch_t *b, size_t max_readings)
{
    char reason[256];
    size_t i;

    for (i = from; i < e->n && b->nreadings < max_readings; i++) {
        wr_entry_t *x = &e->v[i];
        if (x->deleted || x->reason != NULL)
            continue;
        if (x->payload == NULL) {
            wr_entry_set_dead(x, "no field \"" MH_QUEUE_FIELD "\"");
            continue;
        }
        size_t nr = b->nreadings, nh = b->nheartbeats;
        if (wr_decode_entry(x->payload, x->payload_len, b, reason, sizeof(reason)) != 0) {
            wr_entry_set_dead(x, reason);
            continue;
        }
        /* Over the limit: leave this entry for the next statement, unless it is alone. */
        if (b->nreadings > max_readings && nr + nh > 0) {
            wr_batch_truncate(b, nr, nh);
            break;
        }
    }
    return i;
}

/* ---- backoff (pure) ---- */

void wr_backoff_reset(wr_backoff_t *b)
{
    b->next_ms = WR_BACKOFF_MIN_MS;
}

void wr_backoff_init(wr_backoff_t *b, uint64_t seed)
{
    b->rng = seed != 0 ? seed : 0x9E3779B97F4A7C15ull;
    wr_backoff_reset(b);
}

long wr_backoff_next(wr_backoff_t *b)
{
    /* xorshift64: jitter only needs to keep restarted writers from retrying in lockstep. */
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    long d = b->next_ms;
    long delay = d / 2 + (long)(b->rng % (uint64_t)(d - d / 2 + 1));
    b->next_ms = d * 2 > WR_BACKOFF_MAX_MS ? WR_BACKOFF_MAX_MS : d * 2;
    return delay;
}

/* ---- shard thread ---- */

static bool stopping(wr_writer_t *w)
{
    return atomic_load_explicit(&w->stop, memory_order_relaxed);
}

/* Sleeps ms unless a stop is requested first. Returns true when stopping. */
static bool writer_sleep(wr_writer_t *w, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->lock);
    while (!stopping(w) && pthread_cond_timedwait(&w->cond, &w->lock, &until) == 0)
        ;
    pthread_mutex_unlock(&w->lock);
    return stopping(w);
}

static void outage_fail(wr_writer_t *w, wr_outage_t *o, const char *server, const char *msg)
{
    o->attempts++;
    if (o->down)
        return;
    o->down = true;
    o->since_ms = now_ms();
    mh_log(MH_LOG_WARN, "shard %ld: %s unavailable: %s; retrying with backoff", w->shard, server,
           msg);
}

static void outage_ok(wr_writer_t *w, wr_outage_t *o, const char *server)
{
    if (!o->down)
        return;
    mh_log(MH_LOG_INFO, "shard %ld: %s is back after %.1f s (%" PRIu64 " failed attempts)",
           w->shard, server, (double)(now_ms() - o->since_ms) / 1000.0, o->attempts);
    o->down = false;
    o->attempts = 0;
}

static void release_reply(wr_writer_t *w)
{
    wr_entries_clear(&w->entries);
    if (w->reply != NULL)
        freeReplyObject(w->reply);
    w->reply = NULL;
}

static void redis_drop(wr_writer_t *w)
{
    if (w->rc != NULL)
        redisFree(w->rc);
    w->rc = NULL;
    atomic_store_explicit(&w->metrics.redis_up, false, memory_order_relaxed);
}

/*
 * Records a failed Redis command: r is its reply (an error) or NULL when the connection broke,
 * in which case the connection is dropped. Frees r.
 */
static void redis_failed(wr_writer_t *w, redisReply *r, const char *what)
{
    char msg[256];
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        snprintf(msg, sizeof(msg), "%s: %s", what, r->str);
    else if (r != NULL)
        snprintf(msg, sizeof(msg), "%s: unexpected reply type %d", what, r->type);
    else
        snprintf(msg, sizeof(msg), "%s: %s", what,
                 w->rc != NULL && w->rc->errstr[0] ? w->rc->errstr : "connection lost");
    if (r == NULL || (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0))
        redis_drop(w); /* reconnecting recreates the group */
    if (r != NULL)
        freeReplyObject(r);
    wr_metrics_add(&w->metrics.redis_errors, 1);
    outage_fail(w, &w->redis_outage, "redis", msg);
}

static int redis_connect(wr_writer_t *w)
{
    char err[256];
    redisReply *r = NULL;
    /* Blocking reads wait up to block_ms on top of the command timeout. */
    long t = w->redis->timeout_ms + w->conf->block_ms;
    struct timeval tv = {t / 1000, (t % 1000) * 1000};

    w->rc = mh_redis_connect(w->redis, err, sizeof(err));
    if (w->rc == NULL)
        goto fail;
    if (redisSetTimeout(w->rc, tv) != REDIS_OK) {
        snprintf(err, sizeof(err), "cannot set the socket timeout");
        goto fail;
    }
    r = redisCommand(w->rc, "XGROUP CREATE %s %s 0 MKSTREAM", w->stream_key, MH_QUEUE_GROUP);
    if (r == NULL) {
        snprintf(err, sizeof(err), "XGROUP CREATE: %s", w->rc->errstr);
        goto fail;
    }
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        snprintf(err, sizeof(err), "XGROUP CREATE: %s", r->str);
        goto fail;
    }
    freeReplyObject(r);
    /* After a (re)connect, first re-read what this consumer was given and did not
     * acknowledge. */
    w->reading_pending = true;
    snprintf(w->pending_cursor, sizeof(w->pending_cursor), "0");
    wr_backoff_reset(&w->redis_backoff);
    outage_ok(w, &w->redis_outage, "redis");
    atomic_store_explicit(&w->metrics.redis_up, true, memory_order_relaxed);
    return 0;
fail:
    if (r != NULL)
        freeReplyObject(r);
    redis_drop(w);
    wr_metrics_add(&w->metrics.redis_errors, 1);
    outage_fail(w, &w->redis_outage, "redis", err);
    return -1;
}

static void ensure_partitions(wr_writer_t *w)
{
    char err[256];
    if (w->shard != 0 || now_ms() < w->next_partitions_ms)
        return;
    w->next_partitions_ms = now_ms() + WR_PARTITIONS_EVERY_MS;
    int created = wr_store_ensure_partitions(w->store, err, sizeof(err));
    if (created < 0)
        mh_log(MH_LOG_WARN, "shard %ld: cannot create readings partitions: %s", w->shard, err);
    else if (created > 0)
        mh_log(MH_LOG_INFO, "shard %ld: created %d readings partitions", w->shard, created);
}

static int pg_connect(wr_writer_t *w)
{
    char err[512];
    if (wr_store_connect(w->store, err, sizeof(err)) != 0) {
        atomic_store_explicit(&w->metrics.postgres_up, false, memory_order_relaxed);
        wr_metrics_add(&w->metrics.postgres_errors, 1);
        outage_fail(w, &w->pg_outage, "postgres", err);
        return -1;
    }
    atomic_store_explicit(&w->metrics.postgres_up, true, memory_order_relaxed);
    w->last_write_ms = now_ms();
    ensure_partitions(w);
    return 0;
}

/*
 * Writes b, retrying through connection losses and transient errors. Returns WR_STORE_OK or
 * WR_STORE_DATA (err filled), or WR_STORE_LOST when a stop was requested before the batch
 * could be stored.
 */
static wr_store_status_t store_retrying(wr_writer_t *w, wr_batch_t *b, wr_store_result_t *res,
                                        char *err, size_t errlen)
{
    for (;;) {
        if (wr_store_connected(w->store) || pg_connect(w) == 0) {
            uint64_t t0 = now_us();
            wr_store_status_t st = wr_store_write(w->store, b, res, err, errlen);
            if (st == WR_STORE_OK)
                wr_metrics_observe_commit(&w->metrics, now_us() - t0);
            if (st == WR_STORE_OK || st == WR_STORE_DATA) {
                w->last_write_ms = now_ms();
                wr_backoff_reset(&w->pg_backoff);
                outage_ok(w, &w->pg_outage, "postgres");
                return st;
            }
            if (st == WR_STORE_LOST)
                atomic_store_explicit(&w->metrics.postgres_up, false, memory_order_relaxed);
            wr_metrics_add(&w->metrics.postgres_errors, 1);
            outage_fail(w, &w->pg_outage, "postgres", err);
        }
        if (writer_sleep(w, wr_backoff_next(&w->pg_backoff)))
            return WR_STORE_LOST;
    }
}

static void count_stored(wr_writer_t *w, uint64_t readings, uint64_t heartbeats,
                         const wr_store_result_t *res)
{
    wr_metrics_add(&w->metrics.batches_committed, 1);
    wr_metrics_add(&w->metrics.readings_read, readings);
    wr_metrics_add(&w->metrics.readings_inserted, res->inserted);
    wr_metrics_add(&w->metrics.heartbeats, heartbeats);
}

/*
 * Stores entries [from, to), whose rows are in w->batch. When the server refuses the data,
 * stores them one by one and marks those it still refuses as dead, with its message.
 * Returns 0, or -1 when stopping before everything was stored.
 */
static int store_group(wr_writer_t *w, size_t from, size_t to)
{
    char err[512], reason[256];
    wr_store_result_t res;
    uint64_t nr = w->batch.nreadings, nh = w->batch.nheartbeats;
    uint64_t t0 = now_us();

    wr_store_status_t st = store_retrying(w, &w->batch, &res, err, sizeof(err));
    if (st == WR_STORE_OK) {
        count_stored(w, nr, nh, &res);
        mh_log(MH_LOG_DEBUG,
               "shard %ld: stored %" PRIu64 " readings (%" PRIu64 " new), %" PRIu64
               " heartbeats in %.1f ms",
               w->shard, nr, res.inserted, nh, (double)(now_us() - t0) / 1000.0);
        return 0;
    }
    if (st != WR_STORE_DATA)
        return -1;
    mh_log(MH_LOG_INFO, "shard %ld: batch refused (%s); storing its %zu entries one by one",
           w->shard, err, to - from);
    for (size_t i = from; i < to; i++) {
        wr_entry_t *x = &w->entries.v[i];
        if (x->deleted || x->reason != NULL)
            continue;
        wr_batch_reset(&w->batch);
        if (wr_decode_entry(x->payload, x->payload_len, &w->batch, reason, sizeof(reason)) != 0) {
            wr_entry_set_dead(x, reason); /* not reached: it decoded a moment ago */
            continue;
        }
        nr = w->batch.nreadings;
        nh = w->batch.nheartbeats;
        st = store_retrying(w, &w->batch, &res, err, sizeof(err));
        if (st == WR_STORE_OK)
            count_stored(w, nr, nh, &res);
        else if (st == WR_STORE_DATA)
            wr_entry_set_dead(x, err);
        else
            return -1;
    }
    return 0;
}

static void reserve_argv(wr_writer_t *w, size_t n)
{
    if (n <= w->argcap)
        return;
    w->argcap = n;
    w->argv = mh_realloc(w->argv, n * sizeof(*w->argv));
    w->argvlen = mh_realloc(w->argvlen, n * sizeof(*w->argvlen));
}

/*
 * Sends the dead entries to the dead-letter stream, then acknowledges and deletes every entry
 * of the reply. Returns 0, or -1 after redis_failed(). Dead letters already sent are not sent
 * again when the acknowledgement is retried.
 */
static int send_acks(wr_writer_t *w)
{
    size_t ndead = 0;
    redisReply *r = NULL, *failed = NULL;

    for (size_t i = 0; i < w->entries.n; i++) {
        wr_entry_t *x = &w->entries.v[i];
        if (x->reason == NULL)
            continue;
        const char *argv[] = {
            "XADD",   w->dead_key, "*",   MH_QUEUE_FIELD, x->payload ? x->payload : "",
            "reason", x->reason,   "src", x->id};
        size_t argvlen[9];
        for (int a = 0; a < 9; a++)
            argvlen[a] = strlen(argv[a]);
        argvlen[4] = x->payload ? x->payload_len : 0;
        if (redisAppendCommandArgv(w->rc, 9, argv, argvlen) != REDIS_OK)
            goto conn_fail;
        ndead++;
    }
    /* Read every reply, so the connection stays in step even if one XADD failed. */
    for (size_t i = 0, got = 0; got < ndead; i++) {
        wr_entry_t *x = &w->entries.v[i];
        if (x->reason == NULL)
            continue;
        got++;
        if (redisGetReply(w->rc, (void **)&r) != REDIS_OK)
            goto conn_fail;
        if (r->type != REDIS_REPLY_STRING) {
            if (failed == NULL)
                failed = r;
            else
                freeReplyObject(r);
            continue;
        }
        freeReplyObject(r);
        mh_log(MH_LOG_WARN, "shard %ld: dead-lettered entry %s to %s: %s", w->shard, x->id,
               w->dead_key, x->reason);
        wr_metrics_add(&w->metrics.dead_lettered, 1);
        /* Sent: a retry of the acknowledgement must not send it again. */
        free(x->reason);
        x->reason = NULL;
    }
    r = NULL;
    if (failed != NULL) {
        redis_failed(w, failed, "XADD dead-letter");
        return -1;
    }

    size_t n = 0;
    reserve_argv(w, w->entries.n + 3);
    w->argv[0] = "XACK";
    w->argv[1] = w->stream_key;
    w->argv[2] = MH_QUEUE_GROUP;
    /* The payloads of one stream entry are adjacent and share its id: list it once. */
    for (size_t i = 0; i < w->entries.n; i++)
        if (i == 0 || w->entries.v[i].id != w->entries.v[i - 1].id)
            w->argv[3 + n++] = w->entries.v[i].id;
    for (size_t i = 0; i < n + 3; i++)
        w->argvlen[i] = strlen(w->argv[i]);
    if (redisAppendCommandArgv(w->rc, (int)(n + 3), w->argv, w->argvlen) != REDIS_OK)
        goto conn_fail;
    /* XDEL key id...: the same vector shifted by one. */
    w->argv[1] = "XDEL";
    w->argvlen[1] = 4;
    w->argv[2] = w->stream_key;
    w->argvlen[2] = strlen(w->stream_key);
    if (redisAppendCommandArgv(w->rc, (int)(n + 2), w->argv + 1, w->argvlen + 1) != REDIS_OK)
        goto conn_fail;
    for (int k = 0; k < 2; k++) {
        if (redisGetReply(w->rc, (void **)&r) != REDIS_OK)
            goto conn_fail;
        if (r->type != REDIS_REPLY_INTEGER) {
            if (k == 0) {
                redisReply *rest = NULL;
                if (redisGetReply(w->rc, (void **)&rest) == REDIS_OK)
                    freeReplyObject(rest);
            }
            redis_failed(w, r, k == 0 ? "XACK" : "XDEL");
            return -1;
        }
        freeReplyObject(r);
        r = NULL;
    }
    return 0;
conn_fail:
    if (failed != NULL)
        freeReplyObject(failed);
    redis_failed(w, NULL, "acknowledge");
    return -1;
}

/* Acknowledges the reply's entries, reconnecting as needed. Returns 0, or -1 when stopping
 * first. */
static int ack_retrying(wr_writer_t *w)
{
    for (;;) {
        if ((w->rc != NULL || redis_connect(w) == 0) && send_acks(w) == 0) {
            wr_backoff_reset(&w->redis_backoff);
            outage_ok(w, &w->redis_outage, "redis");
            return 0;
        }
        if (writer_sleep(w, wr_backoff_next(&w->redis_backoff)))
            return -1;
    }
}

/* Stores and acknowledges the entries of w->reply. Returns 0, or -1 when stopping first. */
static int process_entries(wr_writer_t *w)
{
    size_t i = 0;
    while (i < w->entries.n) {
        wr_batch_reset(&w->batch);
        size_t end = wr_fill_batch(&w->entries, i, &w->batch, WR_MAX_STATEMENT_READINGS);
        if (!wr_batch_empty(&w->batch) && store_group(w, i, end) != 0)
            return -1;
        i = end;
    }
    return ack_retrying(w);
}

static long claim_interval_ms(const wr_writer_t *w)
{
    long ms = w->conf->claim_idle_ms / 2;
    return ms < 1000 ? 1000 : ms > 5000 ? 5000 : ms;
}

static void set_gauge(atomic_int_fast64_t *g, const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        atomic_store_explicit(g, r->integer, memory_order_relaxed);
}

/*
 * Claims entries that other consumers left idle for claim_idle_ms, and refreshes the pending
 * and backlog gauges in the same round trip. Also pings an idle PostgreSQL connection.
 */
static int claim_entries(wr_writer_t *w)
{
    redisReply *r[3] = {NULL, NULL, NULL};
    char err[256];

    /* Set first: a claim that keeps failing must not keep the shard from reading. */
    w->next_claim_ms = now_ms() + claim_interval_ms(w);
    if (redisAppendCommand(w->rc, "XAUTOCLAIM %s %s %s %ld %s COUNT %ld", w->stream_key,
                           MH_QUEUE_GROUP, w->consumer, w->conf->claim_idle_ms, w->claim_cursor,
                           w->conf->batch_size) != REDIS_OK ||
        redisAppendCommand(w->rc, "XPENDING %s %s", w->stream_key, MH_QUEUE_GROUP) != REDIS_OK ||
        redisAppendCommand(w->rc, "XLEN %s", w->stream_key) != REDIS_OK) {
        redis_failed(w, NULL, "XAUTOCLAIM");
        return -1;
    }
    for (int k = 0; k < 3; k++) {
        if (redisGetReply(w->rc, (void **)&r[k]) != REDIS_OK) {
            for (int j = 0; j < k; j++)
                freeReplyObject(r[j]);
            redis_failed(w, NULL, "XAUTOCLAIM");
            return -1;
        }
    }
    if (r[0]->type == REDIS_REPLY_ERROR ||
        wr_parse_claim_reply(r[0], w->claim_cursor, sizeof(w->claim_cursor), &w->entries) != 0) {
        wr_entries_clear(&w->entries);
        snprintf(w->claim_cursor, sizeof(w->claim_cursor), "0-0");
        freeReplyObject(r[1]);
        freeReplyObject(r[2]);
        redis_failed(w, r[0], "XAUTOCLAIM");
        return -1;
    }
    w->reply = r[0];
    if (r[1]->type == REDIS_REPLY_ARRAY && r[1]->elements >= 1)
        set_gauge(&w->metrics.pending, r[1]->element[0]);
    set_gauge(&w->metrics.backlog, r[2]);
    freeReplyObject(r[1]);
    freeReplyObject(r[2]);

    /* A cursor other than 0-0 means more pending entries to scan: continue at once. */
    if (strcmp(w->claim_cursor, "0-0") != 0)
        w->next_claim_ms = now_ms();
    if (w->entries.n > 0) {
        wr_metrics_add(&w->metrics.entries_claimed, w->entries.n);
        mh_log(MH_LOG_INFO, "shard %ld: claimed %zu entries idle for over %ld ms", w->shard,
               w->entries.n, w->conf->claim_idle_ms);
    }
    if (now_ms() - w->last_write_ms >= claim_interval_ms(w)) {
        if (wr_store_ping(w->store, err, sizeof(err)) == 0) {
            outage_ok(w, &w->pg_outage, "postgres");
        } else {
            atomic_store_explicit(&w->metrics.postgres_up, false, memory_order_relaxed);
            wr_metrics_add(&w->metrics.postgres_errors, 1);
            outage_fail(w, &w->pg_outage, "postgres", err);
        }
        w->last_write_ms = now_ms();
        ensure_partitions(w);
    }
    return 0;
}

/* Reads the next entries into w->entries (possibly none). Returns 0, or -1 after
 * redis_failed(). */
static int read_entries(wr_writer_t *w)
{
    redisReply *r;

    if (now_ms() >= w->next_claim_ms)
        return claim_entries(w);
    if (w->reading_pending)
        r = redisCommand(w->rc, "XREADGROUP GROUP %s %s COUNT %ld STREAMS %s %s", MH_QUEUE_GROUP,
                         w->consumer, w->conf->batch_size, w->stream_key, w->pending_cursor);
    else
        r = redisCommand(w->rc, "XREADGROUP GROUP %s %s COUNT %ld BLOCK %ld STREAMS %s >",
                         MH_QUEUE_GROUP, w->consumer, w->conf->batch_size, w->conf->block_ms,
                         w->stream_key);
    if (r == NULL || r->type == REDIS_REPLY_ERROR || wr_parse_read_reply(r, &w->entries) != 0) {
        wr_entries_clear(&w->entries);
        redis_failed(w, r, "XREADGROUP");
        return -1;
    }
    w->reply = r;
    if (w->reading_pending) {
        if (w->entries.n == 0)
            w->reading_pending = false; /* our history is empty: on to new entries */
        else
            snprintf(w->pending_cursor, sizeof(w->pending_cursor), "%s",
                     w->entries.v[w->entries.n - 1].id);
    }
    return 0;
}

static void *writer_main(void *arg)
{
    wr_writer_t *w = arg;

    mh_log(MH_LOG_INFO, "shard %ld: consuming %s as %s/%s", w->shard, w->stream_key, MH_QUEUE_GROUP,
           w->consumer);
    while (!stopping(w)) {
        /* PostgreSQL first: while it is down, entries wait in the stream rather than in our
         * pending list, where a peer would have to claim them. */
        if (!wr_store_connected(w->store) && pg_connect(w) != 0) {
            writer_sleep(w, wr_backoff_next(&w->pg_backoff));
            continue;
        }
        if ((w->rc == NULL && redis_connect(w) != 0) || read_entries(w) != 0) {
            writer_sleep(w, wr_backoff_next(&w->redis_backoff));
            continue;
        }
        wr_backoff_reset(&w->redis_backoff);
        outage_ok(w, &w->redis_outage, "redis");
        size_t nread = wr_entries_count_ids(&w->entries);
        int64_t read_ms = now_ms();
        if (w->entries.n > 0) {
            wr_metrics_add(&w->metrics.entries_read, w->entries.n);
            if (process_entries(w) != 0) {
                mh_log(MH_LOG_WARN,
                       "shard %ld: stopping with %zu entries not acknowledged; they stay "
                       "pending for the next writer",
                       w->shard, w->entries.n);
                break;
            }
        }
        release_reply(w);
        /*
         * A transaction's cost is mostly fixed (commit, WAL flush, one rollup row per sensor
         * and hour), so a shard that keeps up by writing every few entries at once spends most
         * of PostgreSQL's time on overhead. Waiting after a short read lets the stream fill:
         * under load the batches grow to batch_size, at the price of readings reaching
         * PostgreSQL up to batch_wait_ms later. Devices are answered before this, at XADD.
         */
        if (nread > 0 && (long)nread < w->conf->batch_size && !w->reading_pending) {
            int64_t wait = w->conf->batch_wait_ms - (now_ms() - read_ms);
            if (wait > 0)
                writer_sleep(w, (long)wait);
        }
    }
    release_reply(w);
    redis_drop(w);
    wr_store_free(w->store);
    w->store = NULL;
    atomic_store_explicit(&w->metrics.postgres_up, false, memory_order_relaxed);
    mh_log(MH_LOG_INFO, "shard %ld: stopped", w->shard);
    return NULL;
}

/* ---- public ---- */

wr_writer_t *wr_writer_new(const wr_conf_t *conf, const mh_redis_conf_t *redis,
                           const char *conninfo, const char *consumer, long shard)
{
    char app[64];
    pthread_condattr_t ca;
    wr_writer_t *w = mh_calloc(1, sizeof(*w));

    w->conf = conf;
    w->redis = redis;
    w->shard = shard;
    w->consumer = mh_strdup(consumer);
    mh_queue_key(w->stream_key, redis->prefix, shard, MH_QKEY_STREAM);
    mh_queue_key(w->dead_key, redis->prefix, shard, MH_QKEY_DEAD);
    snprintf(app, sizeof(app), "meterhub-writer/%ld", shard);
    w->store = wr_store_new(conninfo, app);
    wr_batch_init(&w->batch);
    wr_metrics_init(&w->metrics);
    wr_backoff_init(&w->pg_backoff, now_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)shard);
    wr_backoff_init(&w->redis_backoff, now_us() * 31 + (uint64_t)shard);
    snprintf(w->claim_cursor, sizeof(w->claim_cursor), "0-0");
    atomic_init(&w->stop, false);
    /* The sleep deadline is on the monotonic clock. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->lock, NULL);
    return w;
}

int wr_writer_start(wr_writer_t *w)
{
    int err = pthread_create(&w->thread, NULL, writer_main, w);
    if (err != 0) {
        mh_log(MH_LOG_ERROR, "shard %ld: cannot start thread: %s", w->shard, strerror(err));
        return -1;
    }
    w->started = true;
    return 0;
}

void wr_writer_stop(wr_writer_t *w)
{
    pthread_mutex_lock(&w->lock);
    atomic_store_explicit(&w->stop, true, memory_order_relaxed);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void wr_writer_free(wr_writer_t *w)
{
    if (w == NULL)
        return;
    if (w->started) {
        wr_writer_stop(w);
        pthread_join(w->thread, NULL);
    }
    release_reply(w);
    redis_drop(w);
    wr_store_free(w->store);
    wr_entries_dispose(&w->entries);
    wr_batch_dispose(&w->batch);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w->argv);
    free(w->argvlen);
    free(w->consumer);
    free(w);
}

const wr_metrics_t *wr_writer_metrics(const wr_writer_t *w)
{
    return &w->metrics;
}

long wr_writer_shard(const wr_writer_t *w)
{
    return w->shard;
}
