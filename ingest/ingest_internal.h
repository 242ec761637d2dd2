#ifndef ING_INTERNAL_H
#define ING_INTERNAL_H

/*
 * meterhub-ingest internals shared by its files.
 *
 * Threads: the main thread loads the configuration, owns the listeners' setup, the directory
 * refresher and the ops endpoint. Each worker thread owns its event_base, evhttp, listener
 * socket (SO_REUSEPORT), Redis connection, directory reference and connection list; nothing
 * on a worker's hot path is shared except the rate-limit table (striped locks) and metrics
 * (relaxed atomics, one block per worker).
 */

#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <hiredis/async.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "batch.h"
#include "common/config.h"
#include "common/pgasync.h"
#include "common/queue.h"
#include "directory.h"
#include "ratelimit.h"

typedef struct ing_conf {
    char *listen_addr;
    long listen_port;
    long workers;
    char *tls_cert;
    char *tls_key;
    char *client_ca;
    char *ops_addr;
    long ops_port;
    long idle_timeout_s;
    long max_body_bytes;
    long max_readings;
    long max_future_skew_s;
    long max_age_s;
    long rate_per_s;
    long rate_burst;
    long max_backlog;
    long max_inflight;
    long directory_refresh_ms;
    char *log_level;
    char *firmware_store; /* content-addressed image store; empty: offer no firmware */
    long upgrade_timeout_ms;
} ing_conf_t;

typedef struct ing_pg_conf {
    char *conninfo;
} ing_pg_conf_t;

typedef struct ing_settings {
    ing_conf_t ingest;
    ing_pg_conf_t pg;
    mh_redis_conf_t redis;
} ing_settings_t;

/* Fills sections[3] describing `s` (ingest, postgres, redis). */
void ing_settings_sections(ing_settings_t *s, mh_cfg_section_t *sections);
/* Refuses unsafe or inconsistent combinations. Returns 0 or -1 with err filled. */
int ing_settings_validate(const ing_settings_t *s, char *err, size_t errlen);

/* HTTP statuses counted in metrics; anything else counts as "other". */
enum {
    ING_ST_200,
    ING_ST_206,
    ING_ST_400,
    ING_ST_403,
    ING_ST_404,
    ING_ST_405,
    ING_ST_409,
    ING_ST_413,
    ING_ST_415,
    ING_ST_416,
    ING_ST_429,
    ING_ST_500,
    ING_ST_503,
    ING_ST_OTHER,
    ING_NSTATUS
};

#define ING_LAT_BUCKETS 12

typedef struct ing_metrics {
    atomic_uint_fast64_t requests[ING_NSTATUS];
    atomic_uint_fast64_t readings_accepted;
    atomic_uint_fast64_t batches_accepted;
    atomic_uint_fast64_t heartbeats_accepted;
    atomic_uint_fast64_t foreign_sensor_posts;
    atomic_uint_fast64_t revoked_connections_closed;
    atomic_uint_fast64_t connections_open;
    atomic_uint_fast64_t connections_total;
    atomic_uint_fast64_t redis_errors;
    atomic_uint_fast64_t redis_lat_bucket[ING_LAT_BUCKETS];
    atomic_uint_fast64_t redis_lat_sum_us;
    atomic_uint_fast64_t redis_lat_count;
    atomic_uint_fast64_t firmware_offers;     /* heartbeat answers carrying an offer */
    atomic_uint_fast64_t firmware_reports;    /* outcome reports recorded */
    atomic_uint_fast64_t firmware_downloads;  /* 200/206 image responses */
    atomic_uint_fast64_t firmware_bytes;      /* image bytes in those responses */
    atomic_uint_fast64_t firmware_refused;    /* downloads refused: not offered */
    atomic_uint_fast64_t upgrade_pg_failures; /* offer or download checks PostgreSQL missed */
} ing_metrics_t;

typedef struct ing_server ing_server_t;
typedef struct ing_worker ing_worker_t;
typedef struct ing_conn ing_conn_t;
typedef struct ing_upgrade ing_upgrade_t;

/* One TLS connection of a worker; freed with its SSL object (ex_data free callback). */
struct ing_conn {
    ing_worker_t *worker;
    struct bufferevent *bev; /* borrowed: the connection owns us, not the reverse */
    ing_conn_t *prev, *next;
    uint64_t dir_generation;    /* generation `device` was looked up in */
    const ing_device_t *device; /* borrowed from the worker's snapshot */
    uint64_t did;               /* device of this connection once known; 0 before */
    bool nodelay;               /* TCP_NODELAY set */
    bool waited;                /* its request already waited once for a directory refresh */
    uint8_t fingerprint[MH_FINGERPRINT_LEN]; /* of the certificate `did` was found by */
};

/* A request from a certificate the directory does not know yet, waiting for a refresh: a
 * device provisioned a moment ago must not be refused because ingest polls. */
typedef struct ing_parked {
    struct evhttp_request *req;
    ing_worker_t *worker;
    struct event *timer;
    struct ing_parked *prev, *next;
} ing_parked_t;

/* Batches of one shard waiting for the end of the loop turn (redisq.c). */
typedef struct ing_qgroup ing_qgroup_t;

/* Most batches, and bytes of arguments, in one group: one script call and one stream entry. */
#define ING_QGROUP_MAX_BATCHES 64
#define ING_QGROUP_MAX_BYTES (256 * 1024)

/* Redis state of one worker: one async connection, pipelining its commands. */
typedef struct ing_redis {
    redisAsyncContext *ac; /* NULL while disconnected */
    atomic_bool ready;     /* connected, authenticated and script loaded */
    char sha[41];
    long inflight; /* requests waiting for Redis, sent or not */
    int backoff_ms;
    struct event *reconnect_ev;
    struct event *flush_ev; /* sends the pending groups at the end of a loop turn */
    bool flush_scheduled;
    ing_qgroup_t **pending; /* per shard: the group being collected, or NULL (owned) */
    bool down_logged;
} ing_redis_t;

struct ing_worker {
    int index;
    ing_server_t *srv;
    pthread_t thread;
    struct event_base *base;
    struct evhttp *http;
    struct evconnlistener *listener;
    struct event *tick_ev;
    struct event *stop_ev;
    ing_directory_t *dir; /* owned reference */
    ing_redis_t redis;
    ing_upgrade_t *upg;  /* offers and downloads (upgrade.c, owned); NULL when firmware is off */
    ing_conn_t conns;    /* list head (sentinel) */
    ing_parked_t parked; /* list head (sentinel) */
    ing_metrics_t metrics;
};

struct ing_server {
    const ing_settings_t *cfg; /* borrowed */
    SSL_CTX *ssl_ctx;
    int nworkers;
    ing_worker_t *workers;
    ing_dirhub_t dirhub;
    ing_ratelimit_t *ratelimit;
    ing_limits_t limits;
    atomic_uint_fast64_t tls_alerts[256]; /* handshake alerts we sent, by description */
    atomic_int_fast64_t *backlog;         /* last stream length seen, per shard */
    atomic_bool dir_loaded;
    struct event *refresh_now; /* main thread's refresh event (borrowed); any thread may
                                  activate it */
};

/* server.c */
int ing_server_init(ing_server_t *srv, const ing_settings_t *cfg);
int ing_server_start(ing_server_t *srv);
void ing_server_stop(ing_server_t *srv);
void ing_server_dispose(ing_server_t *srv);
/* The metric label of a TLS alert description. */
const char *ing_tls_alert_name(int desc);
/* The connection state of a request (borrowed), or NULL if it has none. Sets TCP_NODELAY on
 * the connection's first request. Worker thread. */
ing_conn_t *ing_conn_of(struct evhttp_request *req);

/* Wakes every worker to pick up a newly published directory now. Any thread. */
void ing_server_notify_workers(ing_server_t *srv);

/* routes.c: the evhttp callback of every worker (arg: ing_worker_t). */
void ing_routes_handle(struct evhttp_request *req, void *arg);
/* Answers req with body (takes ownership) and counts the status. */
void ing_send_json(ing_worker_t *w, struct evhttp_request *req, int status, json_t *body);
/* Answers req with meterhub's JSON error ({"error", "message", "field"?, "retry_after"?}). */
void ing_send_error(ing_worker_t *w, struct evhttp_request *req, int status, const char *code,
                    const char *field, const char *message, int retry_after);
/* The active device of req's client certificate (borrowed from the worker's snapshot), or
 * NULL after answering req (refused, or parked until the next directory refresh). */
const ing_device_t *ing_authenticate(ing_worker_t *w, struct evhttp_request *req);
/* True after answering 429 when d is over its rate. */
bool ing_rate_limited(ing_worker_t *w, struct evhttp_request *req, const ing_device_t *d);

/* A heartbeat as validated by routes.c, copied so it outlives the request's parsing. */
typedef struct ing_heartbeat {
    uint64_t did;
    char device_id[MH_ID_LEN + 1];
    char firmware_version[65];
    bool remote_upgrade;
    int64_t ts; /* ingest's clock at receipt */
    bool has_report;
    char report_release[MH_ID_LEN + 1];
    const char *report_outcome; /* static string: installed, failed or refused */
    char report_reason[201];    /* empty: none */
} ing_heartbeat_t;

/* Queues hb for the writer and answers req with the server time and upgrade (takes
 * ownership; NULL: no offer). */
void ing_queue_heartbeat(ing_worker_t *w, struct evhttp_request *req, const ing_heartbeat_t *hb,
                         json_t *upgrade);

/* upgrade.c: firmware offers and downloads (docs/upgrade.md). Worker thread. */
/* Sets up w->upg (its PostgreSQL connections) when ingest.firmware_store is set. 0 or -1. */
int ing_upgrade_start(ing_worker_t *w);
/* Answers every heartbeat and download still waiting, and frees w->upg. */
void ing_upgrade_stop(ing_worker_t *w);
/* Decides the heartbeat's offer (and records its report) with PostgreSQL, then queues it. */
void ing_upgrade_heartbeat(ing_worker_t *w, struct evhttp_request *req, const ing_heartbeat_t *hb);
/* GET /firmware/<id>. */
void ing_upgrade_download(ing_worker_t *w, struct evhttp_request *req, const char *id,
                          size_t idlen);
/* Handles again every request parked for a directory refresh. Worker thread. */
void ing_routes_unpark_all(ing_worker_t *w);
int ing_metrics_status_index(int status);

/* redisq.c: the worker's Redis connection. Worker thread only. */
typedef enum ing_qstatus {
    ING_Q_ACCEPTED,    /* queued: stored in Redis (and fsynced with appendfsync always) */
    ING_Q_BACKLOG,     /* the shard's stream is full; nothing queued */
    ING_Q_DECREASE,    /* a counter batch would go backwards; nothing queued */
    ING_Q_UNAVAILABLE, /* Redis did not answer in time, or went away */
    ING_Q_ERROR,       /* Redis refused the command */
} ing_qstatus_t;

typedef struct ing_qresult {
    ing_qstatus_t status;
    long long backlog;  /* stream length after the call; -1 when unknown */
    const char *detail; /* DECREASE: the stored "ts value"; ERROR: Redis' message; borrowed for
                           the callback only */
} ing_qresult_t;

typedef void (*ing_redisq_cb)(ing_worker_t *w, void *arg, const ing_qresult_t *res);
int ing_redisq_start(ing_worker_t *w);
void ing_redisq_stop(ing_worker_t *w);
/*
 * Queues one entry (a packed meterhub.QueueEntry, copied) for the accept script: with the
 * shard's other batches of this loop turn, backlog check, counter check (counter_batch, for
 * counter sensors only), XADD. cb is called exactly once: with the batch's verdict, or
 * UNAVAILABLE on timeout or disconnect; usually later, but before this returns when the batch
 * fills its group and the group cannot be sent. Returns 0, or -1 (not ready / too many in
 * flight) without calling cb.
 */
int ing_redisq_accept(ing_worker_t *w, long shard, uint64_t counter_sid, const uint8_t *entry,
                      size_t entry_len, const ing_batch_t *counter_batch, ing_redisq_cb cb,
                      void *arg);

/* metrics.c */
void ing_metrics_render(struct evbuffer *out, void *arg);
bool ing_health_render(struct evbuffer *out, void *arg);
void ing_metrics_observe_redis(ing_metrics_t *m, uint64_t usec);

#endif
