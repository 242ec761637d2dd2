/*
 * meterhub-queue-feed: puts synthetic QueueEntry messages on the queue streams, as ingest
 * would, for the writer's tests and benchmarks.
 *
 * For each sensor sid given, readings i = 0 .. N-1 have ts = start + i * step and
 * value = sid + i * value_step (exact in binary floating point with the default 0.5 step, so
 * sums can be compared exactly). They are cut into entries of at most per_entry readings, and
 * each entry goes to the stream of the sensor's shard (mh_queue_shard), pipelined.
 * Extra entries for fault tests: --garbage (not a protobuf), --bad-ts (a timestamp PostgreSQL
 * cannot represent), --mismatch (ts and value arrays of different lengths), --heartbeat DID.
 * Prints {"entries": E, "readings": R, "seconds": S} on stdout.
 */
#include "common/alloc.h"
#include "common/queue.h"
#include "proto/meterhub.pb-c.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FEED_PIPELINE 64

typedef struct feed {
    mh_redis_conf_t redis;
    uint64_t *sids;
    size_t nsids;
    int64_t start;
    int64_t step;
    long readings;
    long per_entry;
    double value_step;
    long garbage;
    long bad_ts;
    long mismatch;
    uint64_t *heartbeats;
    size_t nheartbeats;
    double rate; /* entries per second; 0: as fast as possible */

    redisContext *rc;
    long inflight;
    uint64_t entries, nreadings;
    double t0;
} feed_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: meterhub-queue-feed [options]\n"
            "  --host H --port P [--user U --password-file F]   Redis (127.0.0.1:6379)\n"
            "  --prefix P (mh)  --shards N (4)                  queue layout, as the writer's\n"
            "  --sids 1,2,...     sensors to feed\n"
            "  --start TS         first timestamp (default: now - readings * step)\n"
            "  --step S           seconds between readings (1)\n"
            "  --readings N       readings per sensor (1000)\n"
            "  --per-entry K      readings per entry (1000)\n"
            "  --value-step V     value = sid + i * V (0.5)\n"
            "  --garbage N        N entries that are not protobuf (shard of the first sid, or 0)\n"
            "  --bad-ts N         N entries with a timestamp out of PostgreSQL's range\n"
            "  --mismatch N       N entries whose ts and value arrays differ in length\n"
            "  --heartbeat D,...  one heartbeat per device did (firmware \"1.2.3\")\n"
            "  --rate R           at most R entries per second\n");
}

static int parse_list(const char *s, uint64_t **out, size_t *n)
{
    char *copy = mh_strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(tok, &end, 10);
        if (errno != 0 || *end != '\0' || v == 0) {
            fprintf(stderr, "meterhub-queue-feed: bad id '%s'\n", tok);
            free(copy);
            return -1;
        }
        *out = mh_realloc(*out, (*n + 1) * sizeof(**out));
        (*out)[(*n)++] = v;
    }
    free(copy);
    return 0;
}

/* Reads the replies of all pipelined commands. */
static int drain(feed_t *f)
{
    for (; f->inflight > 0; f->inflight--) {
        redisReply *r = NULL;
        if (redisGetReply(f->rc, (void **)&r) != REDIS_OK) {
            fprintf(stderr, "meterhub-queue-feed: redis: %s\n", f->rc->errstr);
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "meterhub-queue-feed: XADD: %s\n", r->str);
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(r);
    }
    return 0;
}

static int xadd(feed_t *f, long shard, const void *payload, size_t len)
{
    char key[MH_QUEUE_KEY_MAX];
    mh_queue_key(key, f->redis.prefix, shard, MH_QKEY_STREAM);
    const char *argv[] = {"XADD", key, "*", MH_QUEUE_FIELD, payload};
    size_t argvlen[] = {4, strlen(key), 1, strlen(MH_QUEUE_FIELD), len};
    if (f->rate > 0) {
        double due = f->t0 + (double)f->entries / f->rate;
        double wait = due - now_s();
        if (wait > 0) {
            if (drain(f) != 0)
                return -1;
            usleep((useconds_t)(wait * 1e6));
        }
    }
    if (redisAppendCommandArgv(f->rc, 5, argv, argvlen) != REDIS_OK)
        return -1;
    f->entries++;
    if (++f->inflight >= FEED_PIPELINE)
        return drain(f);
    return 0;
}

static int send_entry(feed_t *f, long shard, const Meterhub__QueueEntry *q)
{
    size_t len = meterhub__queue_entry__get_packed_size(q);
    uint8_t *buf = mh_malloc(len ? len : 1);
    meterhub__queue_entry__pack(q, buf);
    int rc = xadd(f, shard, buf, len);
    free(buf);
    return rc;
}

static int send_batch(feed_t *f, uint64_t sid, const int64_t *ts, size_t nts, const double *v,
                      size_t nv)
{
    Meterhub__QueueEntry q = METERHUB__QUEUE_ENTRY__INIT;
    Meterhub__SensorBatch sb = METERHUB__SENSOR_BATCH__INIT;
    sb.sensor = sid;
    sb.device = sid;
    sb.n_ts = nts;
    sb.ts = (int64_t *)ts;
    sb.n_value = nv;
    sb.value = (double *)v;
    sb.received = (int64_t)time(NULL);
    q.body_case = METERHUB__QUEUE_ENTRY__BODY_BATCH;
    q.batch = &sb;
    return send_entry(f, mh_queue_shard(sid, f->redis.shards), &q);
}

static int feed_readings(feed_t *f)
{
    int64_t *ts = mh_malloc((size_t)f->per_entry * sizeof(*ts));
    double *v = mh_malloc((size_t)f->per_entry * sizeof(*v));
    int rc = -1;

    /* Interleave sensors entry by entry, as a fleet would. */
    for (long base = 0; base < f->readings; base += f->per_entry) {
        long n = f->readings - base < f->per_entry ? f->readings - base : f->per_entry;
        for (size_t s = 0; s < f->nsids; s++) {
            for (long i = 0; i < n; i++) {
                ts[i] = f->start + (base + i) * f->step;
                v[i] = (double)f->sids[s] + (double)(base + i) * f->value_step;
            }
            if (send_batch(f, f->sids[s], ts, (size_t)n, v, (size_t)n) != 0)
                goto done;
            f->nreadings += (uint64_t)n;
        }
    }
    rc = 0;
done:
    free(ts);
    free(v);
    return rc;
}

static int feed_faults(feed_t *f)
{
    uint64_t sid = f->nsids > 0 ? f->sids[0] : 1;
    long shard = f->nsids > 0 ? mh_queue_shard(sid, f->redis.shards) : 0;
    int64_t ts[2] = {(int64_t)1e15, f->start};
    double v[2] = {1.0, 2.0};

    for (long i = 0; i < f->garbage; i++)
        if (xadd(f, shard, "\xff\xff garbage", 10) != 0)
            return -1;
    for (long i = 0; i < f->bad_ts; i++)
        if (send_batch(f, sid, ts, 1, v, 1) != 0)
            return -1;
    for (long i = 0; i < f->mismatch; i++)
        if (send_batch(f, sid, ts + 1, 1, v, 2) != 0)
            return -1;
    for (size_t i = 0; i < f->nheartbeats; i++) {
        Meterhub__QueueEntry q = METERHUB__QUEUE_ENTRY__INIT;
        Meterhub__Heartbeat hb = METERHUB__HEARTBEAT__INIT;
        hb.device = f->heartbeats[i];
        hb.ts = (int64_t)time(NULL);
        hb.firmware_version = "1.2.3";
        hb.remote_upgrade = 1;
        q.body_case = METERHUB__QUEUE_ENTRY__BODY_HEARTBEAT;
        q.heartbeat = &hb;
        if (send_entry(f, mh_queue_shard(hb.device, f->redis.shards), &q) != 0)
            return -1;
    }
    return 0;
}

static long parse_long(const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "meterhub-queue-feed: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    enum {
        O_HOST = 256,
        O_PORT,
        O_USER,
        O_PWFILE,
        O_PREFIX,
        O_SHARDS,
        O_SIDS,
        O_START,
        O_STEP,
        O_READINGS,
        O_PER_ENTRY,
        O_VSTEP,
        O_GARBAGE,
        O_BADTS,
        O_MISMATCH,
        O_HB,
        O_RATE
    };
    static const struct option opts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"user", required_argument, NULL, O_USER},
        {"password-file", required_argument, NULL, O_PWFILE},
        {"prefix", required_argument, NULL, O_PREFIX},
        {"shards", required_argument, NULL, O_SHARDS},
        {"sids", required_argument, NULL, O_SIDS},
        {"start", required_argument, NULL, O_START},
        {"step", required_argument, NULL, O_STEP},
        {"readings", required_argument, NULL, O_READINGS},
        {"per-entry", required_argument, NULL, O_PER_ENTRY},
        {"value-step", required_argument, NULL, O_VSTEP},
        {"garbage", required_argument, NULL, O_GARBAGE},
        {"bad-ts", required_argument, NULL, O_BADTS},
        {"mismatch", required_argument, NULL, O_MISMATCH},
        {"heartbeat", required_argument, NULL, O_HB},
        {"rate", required_argument, NULL, O_RATE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    feed_t f = {0};
    char err[256];
    int opt, status = 1;
    bool have_start = false;

    f.redis = (mh_redis_conf_t){
        .host = "127.0.0.1", .port = 6379, .prefix = "mh", .shards = 4, .timeout_ms = 5000};
    f.step = 1;
    f.readings = 1000;
    f.per_entry = 1000;
    f.value_step = 0.5;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case O_HOST:
            f.redis.host = optarg;
            break;
        case O_PORT:
            f.redis.port = parse_long(optarg, 1, 65535);
            break;
        case O_USER:
            f.redis.user = optarg;
            break;
        case O_PWFILE:
            f.redis.password_file = optarg;
            break;
        case O_PREFIX:
            f.redis.prefix = optarg;
            break;
        case O_SHARDS:
            f.redis.shards = parse_long(optarg, 1, 1024);
            break;
        case O_SIDS:
            if (parse_list(optarg, &f.sids, &f.nsids) != 0)
                goto done;
            break;
        case O_START:
            f.start = parse_long(optarg, 0, 4000000000L);
            have_start = true;
            break;
        case O_STEP:
            f.step = parse_long(optarg, 1, 86400);
            break;
        case O_READINGS:
            f.readings = parse_long(optarg, 0, 100000000);
            break;
        case O_PER_ENTRY:
            f.per_entry = parse_long(optarg, 1, 1000000);
            break;
        case O_VSTEP:
            f.value_step = strtod(optarg, NULL);
            break;
        case O_GARBAGE:
            f.garbage = parse_long(optarg, 0, 1000000);
            break;
        case O_BADTS:
            f.bad_ts = parse_long(optarg, 0, 1000000);
            break;
        case O_MISMATCH:
            f.mismatch = parse_long(optarg, 0, 1000000);
            break;
        case O_HB:
            if (parse_list(optarg, &f.heartbeats, &f.nheartbeats) != 0)
                goto done;
            break;
        case O_RATE:
            f.rate = strtod(optarg, NULL);
            break;
        case 'h':
            usage(stdout);
            status = 0;
            goto done;
        default:
            usage(stderr);
            status = 2;
            goto done;
        }
    }
    if (optind != argc) {
        usage(stderr);
        status = 2;
        goto done;
    }
    if (!have_start)
        f.start = (int64_t)time(NULL) - (int64_t)f.readings * f.step;
    f.rc = mh_redis_connect(&f.redis, err, sizeof(err));
    if (f.rc == NULL) {
        fprintf(stderr, "meterhub-queue-feed: %s\n", err);
        goto done;
    }
    f.t0 = now_s();
    if (feed_readings(&f) != 0 || feed_faults(&f) != 0 || drain(&f) != 0)
        goto done;
    printf("{\"entries\": %" PRIu64 ", \"readings\": %" PRIu64 ", \"seconds\": %.3f}\n", f.entries,
           f.nreadings, now_s() - f.t0);
    status = 0;
done:
    if (f.rc != NULL)
        redisFree(f.rc);
    free(f.sids);
    free(f.heartbeats);
    return status;
}
