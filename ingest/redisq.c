/*
 * The worker's Redis connection: hiredis async on the worker's event base. Every accepted
 * request is one EVALSHA of the accept script; hiredis pipelines them on the one connection,
 * which is what makes the queue cheap (see DESIGN.md). hiredis 0.14 has no command timeout,
 * so each command carries its own timer.
 */
#include "ingest_internal.h"

#include "common/alloc.h"
#include "common/log.h"

#include <hiredis/adapters/libevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * KEYS[1] stream, KEYS[2] counter state hash.
 * ARGV[1] max backlog, ARGV[2] entry, ARGV[3] sensor sid ("" for heartbeats and gauges),
 * ARGV[4] newest ts, ARGV[5] its value, ARGV[6..] ts/value pairs in time order (counters).
 * Refuses with MHBACKLOG when the stream is full and MHDECREASE when the first reading newer
 * than the stored one is smaller; otherwise records the newest counter reading and XADDs, all
 * atomically, so every worker and node sees one consistent counter state.
 */
static const char accept_script[] =
    "local len = redis.call('XLEN', KEYS[1])\n"
    "if len >= tonumber(ARGV[1]) then\n"
    "  return redis.error_reply('MHBACKLOG stream backlog is full')\n"
    "end\n"
    "if ARGV[3] ~= '' then\n"
    "  local last = redis.call('HGET', KEYS[2], ARGV[3])\n"
    "  local newest = tonumber(ARGV[4])\n"
    "  if last then\n"
    "    local sp = string.find(last, ' ', 1, true)\n"
    "    local lts = tonumber(string.sub(last, 1, sp - 1))\n"
    "    local lval = tonumber(string.sub(last, sp + 1))\n"
    "    for i = 6, #ARGV, 2 do\n"
    "      if tonumber(ARGV[i]) > lts then\n"
    "        if tonumber(ARGV[i + 1]) < lval then\n"
    "          return redis.error_reply('MHDECREASE ' .. ARGV[i] .. ' ' .. last)\n"
    "        end\n"
    "        break\n"
    "      end\n"
    "    end\n"
    "    if newest > lts then\n"
    "      redis.call('HSET', KEYS[2], ARGV[3], ARGV[4] .. ' ' .. ARGV[5])\n"
    "    end\n"
    "  else\n"
    "    redis.call('HSET', KEYS[2], ARGV[3], ARGV[4] .. ' ' .. ARGV[5])\n"
    "  end\n"
    "end\n"
    "local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[2])\n"
    "return {id, len + 1}\n";

typedef struct ing_rq {
    ing_worker_t *w;
    ing_redisq_cb cb;
    void *arg;
    struct event *timer;
    bool done;
    struct timespec start;
} ing_rq_t;

static void schedule_reconnect(ing_worker_t *w);

static uint64_t usec_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (uint64_t)(t1.tv_sec - t0->tv_sec) * 1000000u +
           (uint64_t)((t1.tv_nsec - t0->tv_nsec) / 1000);
}

static void rq_finish(ing_rq_t *rq, const redisReply *reply, const char *errstr)
{
    if (rq->done)
        return;
    rq->done = true;
    rq->cb(rq->w, rq->arg, reply, errstr);
}

static void rq_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    ing_rq_t *rq = arg;
    atomic_fetch_add_explicit(&rq->w->metrics.redis_errors, 1, memory_order_relaxed);
    rq_finish(rq, NULL, "redis timeout");
}

static void rq_reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    ing_rq_t *rq = privdata;
    ing_worker_t *w = rq->w;
    const redisReply *reply = r;
    w->redis.inflight--;
    if (!rq->done) {
        ing_metrics_observe_redis(&w->metrics, usec_since(&rq->start));
        if (reply == NULL)
            atomic_fetch_add_explicit(&w->metrics.redis_errors, 1, memory_order_relaxed);
        rq_finish(rq, reply, reply ? NULL : (ac->errstr[0] ? ac->errstr : "redis disconnected"));
    }
    event_free(rq->timer);
    free(rq);
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
    w->redis.reconnect_ev = event_new(w->base, -1, 0, reconnect_cb, w);
    if (w->redis.reconnect_ev == NULL)
        return -1;
    redis_connect(w);
    return 0;
}

void ing_redisq_stop(ing_worker_t *w)
{
    if (w->redis.ac != NULL) {
        redisAsyncContext *ac = w->redis.ac;
        w->redis.ac = NULL;
        /* Pending callbacks run now with a NULL reply and answer their requests with 503. */
        redisAsyncFree(ac);
    }
    w->redis.ready = false;
    if (w->redis.reconnect_ev != NULL)
        event_free(w->redis.reconnect_ev);
    w->redis.reconnect_ev = NULL;
}

int ing_redisq_accept(ing_worker_t *w, long shard, uint64_t counter_sid, const uint8_t *entry,
                      size_t entry_len, const ing_batch_t *counter_batch, ing_redisq_cb cb,
                      void *arg)
{
    const ing_settings_t *cfg = w->srv->cfg;
    char stream[MH_QUEUE_KEY_MAX], last[MH_QUEUE_KEY_MAX], backlog[24], sid[24];
    char newest_ts[24] = "", newest_val[32] = "";
    size_t npairs = counter_batch ? counter_batch->n : 0;
    size_t argc = 10 + 2 * npairs;
    const char **argv = NULL;
    size_t *argvlen = NULL;
    char *numbuf = NULL;
    ing_rq_t *rq = NULL;

    if (!w->redis.ready || w->redis.ac == NULL || w->redis.inflight >= cfg->ingest.max_inflight)
        return -1;

    mh_queue_key(stream, cfg->redis.prefix, shard, MH_QKEY_STREAM);
    mh_queue_key(last, cfg->redis.prefix, shard, MH_QKEY_LAST);
    snprintf(backlog, sizeof(backlog), "%ld", cfg->ingest.max_backlog);
    sid[0] = '\0';
    if (counter_batch != NULL && npairs > 0) {
        snprintf(sid, sizeof(sid), "%llu", (unsigned long long)counter_sid);
        snprintf(newest_ts, sizeof(newest_ts), "%lld", (long long)counter_batch->ts[npairs - 1]);
        snprintf(newest_val, sizeof(newest_val), "%.17g", counter_batch->value[npairs - 1]);
    }

    argv = mh_malloc(argc * sizeof(*argv));
    argvlen = mh_malloc(argc * sizeof(*argvlen));
    size_t i = 0;
#define ARG(s, l) (argv[i] = (s), argvlen[i] = (l), i++)
    ARG("EVALSHA", 7);
    ARG(w->redis.sha, 40);
    ARG("2", 1);
    ARG(stream, strlen(stream));
    ARG(last, strlen(last));
    ARG(backlog, strlen(backlog));
    ARG((const char *)entry, entry_len);
    ARG(sid, strlen(sid));
    ARG(newest_ts, strlen(newest_ts));
    /* newest value is ARGV[5]; pairs follow from ARGV[6]. */
    if (npairs > 0) {
        numbuf = mh_malloc(npairs * 56 + 32);
        char *p = numbuf;
        ARG(newest_val, strlen(newest_val));
        for (size_t k = 0; k < npairs; k++) {
            int n = snprintf(p, 24, "%lld", (long long)counter_batch->ts[k]);
            ARG(p, (size_t)n);
            p += n + 1;
            n = snprintf(p, 32, "%.17g", counter_batch->value[k]);
            ARG(p, (size_t)n);
            p += n + 1;
        }
    } else {
        ARG("", 0);
    }
#undef ARG

    rq = mh_calloc(1, sizeof(*rq));
    rq->w = w;
    rq->cb = cb;
    rq->arg = arg;
    clock_gettime(CLOCK_MONOTONIC, &rq->start);
    rq->timer = evtimer_new(w->base, rq_timeout_cb, rq);
    struct timeval tv = {cfg->redis.timeout_ms / 1000, (cfg->redis.timeout_ms % 1000) * 1000};
    if (rq->timer == NULL || evtimer_add(rq->timer, &tv) != 0)
        goto fail;
    if (redisAsyncCommandArgv(w->redis.ac, rq_reply_cb, rq, (int)i, argv, argvlen) != REDIS_OK)
        goto fail;
    w->redis.inflight++;
    free(argv);
    free(argvlen);
    free(numbuf);
    return 0;
fail:
    if (rq != NULL && rq->timer != NULL)
        event_free(rq->timer);
    free(rq);
    free(argv);
    free(argvlen);
    free(numbuf);
    return -1;
}
