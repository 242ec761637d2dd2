/*
 * The worker's Redis connection: hiredis async on the worker's event base. The batches a worker
 * accepts in one event-loop turn are grouped by shard, and each group is one EVALSHA of the
 * accept script and one stream entry; hiredis pipelines the commands on the one connection.
 * hiredis 0.14 has no command timeout, so each command carries its own timer.
 */
#include "ingest_internal.h"

#include "common/alloc.h"
#include "common/log.h"

#include <hiredis/adapters/libevent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* accept_script[]: ingest/accept.lua, which documents its arguments and its answer. */
#include "ingest/accept_script.h"

/* Arguments before the batches: EVALSHA sha numkeys stream last backlog n. */
#define GROUP_HEAD_ARGS 7

/* A request waiting for its group's answer. */
typedef struct ing_qwait {
    ing_redisq_cb cb;
    void *arg;
} ing_qwait_t;

/*
 * The batches of one shard collected in one loop turn, and then the command carrying them.
 * Arguments live in one arena (offsets, since it grows) until the command is sent.
 */
struct ing_qgroup {
    ing_worker_t *w;
    long shard;
    size_t n;
    ing_qwait_t *waits;
    size_t waits_cap;
    char *arena;
    size_t arena_len, arena_cap;
    size_t *off, *len;
    size_t nargs, args_cap;
    struct event *timer;
    bool done;
    struct timespec start;
};

static void schedule_reconnect(ing_worker_t *w);

static uint64_t usec_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (uint64_t)(t1.tv_sec - t0->tv_sec) * 1000000u +
           (uint64_t)((t1.tv_nsec - t0->tv_nsec) / 1000);
}

static void group_free(ing_qgroup_t *g)
{
    if (g == NULL)
        return;
    if (g->timer != NULL)
        event_free(g->timer);
    free(g->waits);
    free(g->arena);
    free(g->off);
    free(g->len);
    free(g);
}

static void group_add_arg(ing_qgroup_t *g, const char *s, size_t n)
{
    if (g->nargs == g->args_cap) {
        g->args_cap = g->args_cap ? g->args_cap * 2 : 64;
        g->off = mh_realloc(g->off, g->args_cap * sizeof(*g->off));
        g->len = mh_realloc(g->len, g->args_cap * sizeof(*g->len));
    }
    if (g->arena_len + n > g->arena_cap) {
        size_t cap = g->arena_cap ? g->arena_cap : 1024;
        while (cap < g->arena_len + n)
            cap *= 2;
        g->arena = mh_realloc(g->arena, cap);
        g->arena_cap = cap;
    }
    if (n > 0)
        memcpy(g->arena + g->arena_len, s, n);
    g->off[g->nargs] = g->arena_len;
    g->len[g->nargs] = n;
    g->nargs++;
    g->arena_len += n;
}

static void group_add_fmt(ing_qgroup_t *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void group_add_fmt(ing_qgroup_t *g, const char *fmt, ...)
{
    char buf[48];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    group_add_arg(g, buf, n < 0 ? 0 : (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* Answers every request of the group once; later calls do nothing. */
static void group_finish(ing_qgroup_t *g, const redisReply *reply, ing_qstatus_t failed)
{
    ing_worker_t *w = g->w;
    ing_qresult_t res = {.status = failed, .backlog = -1, .detail = NULL};
    bool ok_shape = false;

    if (g->done)
        return;
    g->done = true;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "MHBACKLOG", 9) == 0) {
            res.status = ING_Q_BACKLOG;
        } else {
            res.status = ING_Q_ERROR;
            res.detail = reply->str;
            atomic_fetch_add_explicit(&w->metrics.redis_errors, 1, memory_order_relaxed);
            mh_log(MH_LOG_ERROR, "worker %d: redis refused %zu entries: %s", w->index, g->n,
                   reply->str);
            if (strncmp(reply->str, "NOSCRIPT", 8) == 0 && w->redis.ac != NULL)
                redisAsyncDisconnect(w->redis.ac); /* reconnect reloads the script */
        }
    } else if (reply != NULL) {
        ok_shape = reply->type == REDIS_REPLY_ARRAY && reply->elements == g->n + 2 &&
                   reply->element[1]->type == REDIS_REPLY_INTEGER;
        for (size_t k = 0; ok_shape && k < g->n; k++)
            ok_shape = reply->element[k + 2]->type == REDIS_REPLY_STRING;
        if (!ok_shape) {
            res.status = ING_Q_ERROR;
            atomic_fetch_add_explicit(&w->metrics.redis_errors, 1, memory_order_relaxed);
            mh_log(MH_LOG_ERROR, "worker %d: unexpected reply to the accept script", w->index);
        } else {
            res.backlog = reply->element[1]->integer;
        }
    }
    for (size_t k = 0; k < g->n; k++) {
        if (ok_shape) {
            const redisReply *v = reply->element[k + 2];
            res.status = v->len == 0 ? ING_Q_ACCEPTED : ING_Q_DECREASE;
            res.detail = v->len > 0 ? v->str + 1 : NULL;
        }
        g->waits[k].cb(w, g->waits[k].arg, &res);
    }
}

static void group_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    ing_qgroup_t *g = arg;
    atomic_fetch_add_explicit(&g->w->metrics.redis_errors, 1, memory_order_relaxed);
    group_finish(g, NULL, ING_Q_UNAVAILABLE);
}

static void group_reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    ing_qgroup_t *g = privdata;
    ing_worker_t *w = g->w;
    const redisReply *reply = r;
    w->redis.inflight -= (long)g->n;
    if (!g->done) {
        ing_metrics_observe_redis(&w->metrics, usec_since(&g->start));
        if (reply == NULL)
            atomic_fetch_add_explicit(&w->metrics.redis_errors, 1, memory_order_relaxed);
        group_finish(g, reply, ING_Q_UNAVAILABLE);
    }
    group_free(g);
}

/* Sends the shard's group, or answers it as unavailable. The group leaves w->redis.pending. */
static void group_send(ing_worker_t *w, long shard)
{
    const ing_settings_t *cfg = w->srv->cfg;
    ing_qgroup_t *g = w->redis.pending[shard];
    char stream[MH_QUEUE_KEY_MAX], last[MH_QUEUE_KEY_MAX], backlog[24], n[24];
    const char **argv = NULL;
    size_t *argvlen = NULL;

    if (g == NULL)
        return;
    w->redis.pending[shard] = NULL;
    if (!w->redis.ready || w->redis.ac == NULL)
        goto fail;
    mh_queue_key(stream, cfg->redis.prefix, shard, MH_QKEY_STREAM);
    mh_queue_key(last, cfg->redis.prefix, shard, MH_QKEY_LAST);
    snprintf(backlog, sizeof(backlog), "%ld", cfg->ingest.max_backlog);
    snprintf(n, sizeof(n), "%zu", g->n);
    size_t argc = GROUP_HEAD_ARGS + g->nargs;
    argv = mh_malloc(argc * sizeof(*argv));
    argvlen = mh_malloc(argc * sizeof(*argvlen));
    const char *head[GROUP_HEAD_ARGS] = {"EVALSHA", w->redis.sha, "2", stream, last, backlog, n};
    for (size_t i = 0; i < GROUP_HEAD_ARGS; i++) {
        argv[i] = head[i];
        argvlen[i] = strlen(head[i]);
    }
    for (size_t i = 0; i < g->nargs; i++) {
        argv[GROUP_HEAD_ARGS + i] = g->arena + g->off[i];
        argvlen[GROUP_HEAD_ARGS + i] = g->len[i];
    }
    clock_gettime(CLOCK_MONOTONIC, &g->start);
    g->timer = evtimer_new(w->base, group_timeout_cb, g);
    struct timeval tv = {cfg->redis.timeout_ms / 1000, (cfg->redis.timeout_ms % 1000) * 1000};
    if (g->timer == NULL || evtimer_add(g->timer, &tv) != 0)
        goto fail;
    if (redisAsyncCommandArgv(w->redis.ac, group_reply_cb, g, (int)argc, argv, argvlen) != REDIS_OK)
        goto fail;
    free(argv);
    free(argvlen);
    return;
fail:
    free(argv);
    free(argvlen);
    w->redis.inflight -= (long)g->n;
    group_finish(g, NULL, ING_Q_UNAVAILABLE);
    group_free(g);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    ing_worker_t *w = arg;
    w->redis.flush_scheduled = false;
    for (long s = 0; s < w->srv->cfg->redis.shards; s++)
        group_send(w, s);
}

static void auth_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    ing_worker_t *w = privdata;
    const redisReply *reply = r;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        mh_log(MH_LOG_ERROR, "worker %d: redis AUTH refused: %s", w->index, reply->str);
        redisAsyncDisconnect(ac);
    }
}

static void script_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    ing_worker_t *w = privdata;
    const redisReply *reply = r;
    if (reply == NULL)
        return;
    if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
        mh_log(MH_LOG_ERROR, "worker %d: redis SCRIPT LOAD failed: %s", w->index,
               reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        redisAsyncDisconnect(ac);
        return;
    }
    memcpy(w->redis.sha, reply->str, 40);
    w->redis.sha[40] = '\0';
    w->redis.ready = true;
    w->redis.backoff_ms = 0;
    if (w->redis.down_logged)
        mh_log(MH_LOG_INFO, "worker %d: redis connection restored", w->index);
    w->redis.down_logged = false;
}

static void mark_down(ing_worker_t *w, const char *why)
{
    w->redis.ac = NULL;
    w->redis.ready = false;
    if (!w->redis.down_logged) {
        mh_log(MH_LOG_WARN, "worker %d: redis unavailable (%s); answering 503 until it returns",
               w->index, why);
        w->redis.down_logged = true;
    }
    schedule_reconnect(w);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    ing_worker_t *w = ac->data;
    if (status != REDIS_OK)
        mark_down(w, ac->errstr); /* hiredis frees the context after this returns */
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    ing_worker_t *w = ac->data;
    if (w->redis.ac == ac)
        mark_down(w, status == REDIS_OK ? "disconnected" : ac->errstr);
}

static int redis_connect(ing_worker_t *w)
{
    const mh_redis_conf_t *rc = &w->srv->cfg->redis;
    char err[256];
    char *password = NULL;
    redisAsyncContext *ac = redisAsyncConnect(rc->host, (int)rc->port);
    if (ac == NULL || ac->err) {
        mark_down(w, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return -1;
    }
    ac->data = w;
    w->redis.ac = ac;
    if (redisLibeventAttach(ac, w->base) != REDIS_OK) {
        w->redis.ac = NULL;
        redisAsyncFree(ac);
        mark_down(w, "cannot attach to event loop");
        return -1;
    }
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    password = mh_redis_password(rc, err, sizeof(err));
    if (password == NULL && err[0] != '\0')
        mh_log(MH_LOG_ERROR, "worker %d: %s", w->index, err);
    if (password != NULL) {
        if (rc->user != NULL)
            redisAsyncCommand(ac, auth_cb, w, "AUTH %s %s", rc->user, password);
        else
            redisAsyncCommand(ac, auth_cb, w, "AUTH %s", password);
        explicit_bzero(password, strlen(password));
        free(password);
    }
    redisAsyncCommand(ac, script_cb, w, "SCRIPT LOAD %s", accept_script);
    return 0;
}

static void reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    ing_worker_t *w = arg;
    if (w->redis.ac == NULL)
        redis_connect(w);
}

static void schedule_reconnect(ing_worker_t *w)
{
    int ms = w->redis.backoff_ms ? w->redis.backoff_ms * 2 : 100;
    if (ms > 2000)
        ms = 2000;
    w->redis.backoff_ms = ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(w->redis.reconnect_ev, &tv);
}

int ing_redisq_start(ing_worker_t *w)
{
    w->redis.pending = mh_calloc((size_t)w->srv->cfg->redis.shards, sizeof(*w->redis.pending));
    w->redis.reconnect_ev = event_new(w->base, -1, 0, reconnect_cb, w);
    w->redis.flush_ev = event_new(w->base, -1, 0, flush_cb, w);
    if (w->redis.reconnect_ev == NULL || w->redis.flush_ev == NULL)
        return -1;
    redis_connect(w);
    return 0;
}

void ing_redisq_stop(ing_worker_t *w)
{
    /* Groups not sent yet are answered 503 (not ready below), then the ones sent: freeing the
     * context runs their callbacks with a NULL reply. */
    w->redis.ready = false;
    if (w->redis.pending != NULL)
        for (long s = 0; s < w->srv->cfg->redis.shards; s++)
            group_send(w, s);
    if (w->redis.ac != NULL) {
        redisAsyncContext *ac = w->redis.ac;
        w->redis.ac = NULL;
        redisAsyncFree(ac);
    }
    if (w->redis.reconnect_ev != NULL)
        event_free(w->redis.reconnect_ev);
    w->redis.reconnect_ev = NULL;
    if (w->redis.flush_ev != NULL)
        event_free(w->redis.flush_ev);
    w->redis.flush_ev = NULL;
    free(w->redis.pending);
    w->redis.pending = NULL;
}

int ing_redisq_accept(ing_worker_t *w, long shard, uint64_t counter_sid, const uint8_t *entry,
                      size_t entry_len, const ing_batch_t *counter_batch, ing_redisq_cb cb,
                      void *arg)
{
    const ing_settings_t *cfg = w->srv->cfg;
    size_t npairs = counter_batch ? counter_batch->n : 0;

    if (!w->redis.ready || w->redis.ac == NULL || w->redis.inflight >= cfg->ingest.max_inflight ||
        shard < 0 || shard >= cfg->redis.shards)
        return -1;

    ing_qgroup_t *g = w->redis.pending[shard];
    if (g == NULL) {
        g = mh_calloc(1, sizeof(*g));
        g->w = w;
        g->shard = shard;
        w->redis.pending[shard] = g;
    }
    if (g->n == g->waits_cap) {
        g->waits_cap = g->waits_cap ? g->waits_cap * 2 : 8;
        g->waits = mh_realloc(g->waits, g->waits_cap * sizeof(*g->waits));
    }
    g->waits[g->n++] = (ing_qwait_t){cb, arg};
    w->redis.inflight++;

    group_add_arg(g, (const char *)entry, entry_len);
    if (npairs > 0) {
        group_add_fmt(g, "%llu", (unsigned long long)counter_sid);
        group_add_fmt(g, "%lld", (long long)counter_batch->ts[npairs - 1]);
        group_add_fmt(g, "%.17g", counter_batch->value[npairs - 1]);
        group_add_fmt(g, "%zu", npairs);
        for (size_t k = 0; k < npairs; k++) {
            group_add_fmt(g, "%lld", (long long)counter_batch->ts[k]);
            group_add_fmt(g, "%.17g", counter_batch->value[k]);
        }
    } else {
        for (int k = 0; k < 3; k++)
            group_add_arg(g, "", 0);
        group_add_arg(g, "0", 1);
    }

    /* A full group leaves at once; otherwise at the end of this loop turn, after every other
     * callback that is ready now (event_active appends to the active queue). */
    if (g->n >= ING_QGROUP_MAX_BATCHES || g->arena_len >= ING_QGROUP_MAX_BYTES) {
        group_send(w, shard);
    } else if (!w->redis.flush_scheduled) {
        w->redis.flush_scheduled = true;
        event_active(w->redis.flush_ev, EV_TIMEOUT, 0);
    }
    return 0;
}
