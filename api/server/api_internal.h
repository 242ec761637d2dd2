#ifndef API_INTERNAL_H
#define API_INTERNAL_H

/*
 * meterhub-api: the people-facing HTTPS JSON API. One event-loop thread serves HTTP (server
 * TLS; people are not asked for client certificates); PostgreSQL work runs on a pool of
 * threads, each with its own connection, so that no query ever blocks the loop. A request
 * becomes a job: parsed and checked on the loop, run on a database thread (token check, the
 * account bound to the transaction for row-level security, the statements), answered on the
 * loop.
 */

#include "common/config.h"
#include "common/password.h"
#include "common/provision.h"
#include "units.h"

#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* [api] section. Strings owned by the configuration (mh_config_dispose). */
typedef struct api_conf {
    long db_threads;
    long idle_timeout_s;
    char *listen_addr;
    long listen_port;
    char *log_level;
    long login_failures_per_account;
    long login_failures_per_address;
    long login_window_s;
    long max_body_bytes;
    char *ops_addr;
    long ops_port;
    char *pki_dir;
    bool self_registration;
    long token_default_ttl_s;
    long token_max_ttl_s;
    char *tls_cert;
    char *tls_key;
} api_conf_t;

typedef struct api_pg_conf {
    char *conninfo;
} api_pg_conf_t;

typedef struct api_settings {
    api_conf_t api;
    api_pg_conf_t pg;
} api_settings_t;

#define API_NSECTIONS 2
void api_settings_sections(api_settings_t *s, mh_cfg_section_t *sections);
int api_settings_validate(const api_settings_t *s, char *err, size_t errlen);

typedef struct api_server api_server_t;
typedef struct api_job api_job_t;
typedef struct api_stream api_stream_t;

/* Runs on a database thread with that thread's connection (borrowed). Sets the job's answer. */
typedef void (*api_job_run_fn)(api_job_t *job, PGconn *pg);

typedef enum api_scope { API_SCOPE_NONE, API_SCOPE_READ, API_SCOPE_MANAGE } api_scope_t;

/* How a read is answered. */
typedef enum api_read_format {
    API_FMT_JSON,       /* {"sensor": ..., "points": [[ts, value|null], ...], "next_from"} */
    API_FMT_CSV,        /* "ts,value" lines after a header, an empty value for a gap */
    API_FMT_FLUKSO,     /* [[ts, value|"nan"], ...] */
    API_FMT_FLUKSO_CSV, /* "ts,value" lines, "nan" for a gap, no header */
} api_read_format_t;

/*
 * One request on its way through the database. Owned by whoever holds it: the loop until
 * api_db_submit, the pool until the answer is queued back, then the loop, which frees it.
 */
struct api_job {
    api_server_t *srv;
    struct evhttp_request *req;
    api_job_run_fn run;
    /* In, set on the loop. */
    api_scope_t need;         /* a bearer token with at least this scope; NONE: no token */
    bool anonymous_ok;        /* no token at all is allowed too (public data) */
    char token[MH_TOKEN_MAX]; /* the bearer token as sent ("" if none); wiped after use */
    json_t *in;               /* the request body (owned), or NULL */
    long long id;             /* a numeric path argument */
    char path_id[33];         /* a 32-hex path argument ("" for a list) */
    char sub_id[33];          /* a second one, e.g. the release of an approval */
    struct {
        int64_t after; /* entries after this log seq */
        long limit;    /* at most this many */
    } page;
    struct {
        int64_t from, to;      /* [from, to), Unix seconds */
        int resolution;        /* api_resolution_t */
        bool resolution_given; /* else the finest allowed no finer than resolution */
        long limit;            /* most points */
        int format;            /* api_read_format_t */
        char unit[16];         /* the unit asked for; "": the sensor's own */
    } range;
    char username[65];    /* login, registration */
    char peer[64];        /* the client's address, for login limits */
    api_stream_t *stream; /* a streamed answer (owned; export), or NULL */
    /* Out, set on the database thread. */
    int status;            /* HTTP status; 0: not answered (500) */
    json_t *out;           /* response body (owned); NULL: none (204) */
    size_t dump_flags;     /* extra json_dumps flags for out, e.g. JSON_REAL_PRECISION */
    char *text;            /* or a text body (owned, malloc), e.g. CSV */
    const char *text_type; /* its Content-Type */
    const char *err_code;  /* error answer: code, and message in err_msg */
    char err_msg[256];
    int retry_after;   /* seconds, when > 0 */
    bool login_failed; /* a wrong username or password: counts against the limits */
    bool login_ok;
    bool address_used; /* a registration attempt: counts against the address's limit */
    api_job_t *next;
};

/* Database pool (db.c). */
int api_db_start(api_server_t *srv);
void api_db_stop(api_server_t *srv);
/* Queues the job (taking it). Its answer is sent from the loop thread when it is done. */
void api_db_submit(api_server_t *srv, api_job_t *job);

/* Sets an error answer on the job: status, code (a static string) and message. */
void api_job_error(api_job_t *job, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * For run functions: checks the job's bearer token, then opens a transaction with the token's
 * account bound (meterhub.account) for row-level security. Returns the account id, or -1 with
 * the job's error answer set (401, 403, 503) and no transaction open. A job that allows
 * anonymous callers and sent no token gets a transaction with no account bound, and 0.
 */
long long api_db_begin_as(api_job_t *job, PGconn *pg);
/*
 * Runs a statement of n text parameters (NULL: SQL NULL) in the open transaction. Returns the
 * result (owned), or NULL after api_db_fail.
 */
PGresult *api_db_exec(api_job_t *job, PGconn *pg, const char *sql, int n, const char *const *values,
                      const char *what);
/*
 * PQexecParams through a statement prepared once per connection (by the address of sql, which
 * must be a string of static storage whose text never changes), for the statements of every
 * request. Falls back to PQexecParams when it cannot prepare. Returns the result (owned).
 */
PGresult *api_db_exec_cached(PGconn *pg, const char *sql, int n, const char *const *values,
                             const int *lengths, const int *formats);
/* The same, in a REPEATABLE READ READ ONLY transaction: one snapshot for a long read. */
long long api_db_begin_snapshot_as(api_job_t *job, PGconn *pg);
/*
 * Opens a new (read-write) transaction bound to account, which an earlier api_db_begin_as of
 * the same job returned (its token is wiped by then). Returns 0, or -1 with a 503 answer set.
 */
int api_db_bind(api_job_t *job, PGconn *pg, long long account);
/* Commits; on failure sets a 503 answer and returns -1. */
int api_db_commit(api_job_t *job, PGconn *pg);
/* Rolls back whatever is open and sets a 503 answer, logging the server's message. */
void api_db_fail(api_job_t *job, PGconn *pg, const char *what);

/* Failed-login limits (limits.c). Loop thread only. */
typedef struct api_limits api_limits_t;
api_limits_t *api_limits_new(long per_account, long per_address, long window_s);
void api_limits_free(api_limits_t *l);
/* 0 if a login for this username from this address may be tried now; else seconds to wait. */
int api_limits_check(api_limits_t *l, const char *username, const char *peer, int64_t now);
void api_limits_failed(api_limits_t *l, const char *username, const char *peer, int64_t now);
void api_limits_succeeded(api_limits_t *l, const char *username, int64_t now);
/* The same for the address alone, and one attempt counted against it alone: registrations,
 * which are no username's failures. */
int api_limits_check_address(api_limits_t *l, const char *peer, int64_t now);
void api_limits_address_used(api_limits_t *l, const char *peer, int64_t now);

typedef struct api_metrics {
    atomic_uint_fast64_t requests[6]; /* 2xx, 400, 401, 403, 404, other */
    atomic_uint_fast64_t logins_ok, logins_failed, logins_limited;
    atomic_uint_fast64_t db_errors;
    atomic_uint_fast64_t exports[3]; /* api_export_outcome_t */
    atomic_uint_fast64_t export_bytes;
} api_metrics_t;

typedef enum api_export_outcome {
    API_EXPORT_COMPLETE,    /* sent whole */
    API_EXPORT_CLIENT_GONE, /* the client went away first */
    API_EXPORT_FAILED,      /* the database failed: refused, or cut off mid-stream */
} api_export_outcome_t;

struct api_server {
    const api_settings_t *cfg; /* borrowed */
    struct event_base *base;
    SSL_CTX *ssl_ctx;
    struct evhttp *http;
    api_limits_t *limits;
    mh_device_ca_t *device_ca; /* from api.pki_dir; NULL: registration answers 503 */
    api_metrics_t metrics;
    /* Pool (db.c). */
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    api_job_t *queue_head, *queue_tail; /* waiting for a thread */
    api_job_t *done_head, *done_tail;   /* answered, waiting for the loop */
    struct event *done_ev;
    bool stopping;
    atomic_int db_ready; /* threads with a live connection */
    int exports;         /* streams in progress; loop thread */
};

/*
 * A streamed answer (export.c): produced on a database thread, written by the loop thread as
 * chunked HTTP. At most API_STREAM_HIGH_WATER bytes wait between the two (plus one write):
 * the producer sleeps in api_stream_write until the socket has taken them.
 *
 * The job owns the stream. Nothing is sent before the first data, so that a job failing early
 * (401, 503) still gets an ordinary error answer; once the 200 and its headers are out, a
 * failure can only cut the connection, so that the client sees an incomplete chunked body
 * rather than a short one that looks whole.
 */
#define API_STREAM_HIGH_WATER (1024 * 1024)

/* Loop thread. A stream for req (borrowed; answered through the stream from now on) with the
 * answer's content type (a static string). Watches the connection for the client going away. */
api_stream_t *api_stream_new(api_server_t *srv, struct evhttp_request *req, const char *type);
/* Database thread. Moves all of data into the stream, first waiting while too much is queued.
 * Returns 0, or -1 when the client has gone away: stop producing. */
int api_stream_write(api_stream_t *s, struct evbuffer *data);
/*
 * Loop thread, once the producer is done with s: complete says whether it produced everything.
 * Sends what is left and ends the answer (complete), or cuts the connection (not complete, the
 * answer begun), or releases a request whose client went away. s is freed, at once or, when a
 * chunk is still being written, once it is (the end of the answer follows it). Returns false
 * only when nothing was sent and the client is still there: the caller answers req itself.
 */
bool api_stream_end(api_stream_t *s, bool complete);
/* After the loop has stopped (shutdown): frees s, answering nothing. */
void api_stream_free(api_stream_t *s);

/* routes.c */
void api_routes_handle(struct evhttp_request *req, void *arg);
/* A job for req with run and the scope it needs (owned by the caller until submitted). */
api_job_t *api_job_new(api_server_t *srv, struct evhttp_request *req, api_job_run_fn run,
                       api_scope_t need);
/* Copies the bearer token of the Authorization header into the job; false after answering
 * 401 for a malformed header. No header leaves the token empty. */
bool api_take_token(api_server_t *srv, struct evhttp_request *req, api_job_t *job);
/* Answers status with a JSON error body {"error": code, "message": message}. */
void api_send_error(api_server_t *srv, struct evhttp_request *req, int status, const char *code,
                    const char *message, int retry_after);
/* True for a 32-hex public id. */
bool api_hex_id(const char *s);
/* A whole decimal number in [min, max], or false. */
bool api_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);

/* read_routes.c: GET /v1/sensors/{id}/readings and Flukso's GET /sensor/{id}. */
void api_get_readings(api_server_t *srv, struct evhttp_request *req, const char *id);
void api_get_flukso(api_server_t *srv, struct evhttp_request *req, const char *id);
/* Counts an answer's status in the metrics. Loop thread. */
void api_count_status(api_server_t *srv, int status);
/* Sends the job's answer and frees the job. Loop thread. */
void api_job_answer(api_job_t *job);
void api_metrics_render(struct evbuffer *out, void *arg);
bool api_health_render(struct evbuffer *out, void *arg);

/* handlers.c: run functions. */
void api_run_login(api_job_t *job, PGconn *pg);
void api_run_tokens_list(api_job_t *job, PGconn *pg);
void api_run_token_delete(api_job_t *job, PGconn *pg);
void api_run_me(api_job_t *job, PGconn *pg);
void api_run_devices_read(api_job_t *job, PGconn *pg);
void api_run_sensors_read(api_job_t *job, PGconn *pg);
void api_run_device_revoke(api_job_t *job, PGconn *pg);
void api_run_readings(api_job_t *job, PGconn *pg);
void api_run_sharing_get(api_job_t *job, PGconn *pg);
void api_run_sharing_put(api_job_t *job, PGconn *pg);
void api_run_audit(api_job_t *job, PGconn *pg);
/*
 * In the open transaction: the device (sensor) with public id `id` as GET /v1/devices/{id}
 * (/v1/sensors/{id}) answers it, into *out (owned). Returns 1; 0 when the bound account has no
 * such row; -1 after api_db_fail. Set job->dump_flags to API_DEVICE_DUMP_FLAGS when answering
 * a device.
 */
int api_device_read_one(api_job_t *job, PGconn *pg, const char *id, json_t **out);
int api_sensor_read_one(api_job_t *job, PGconn *pg, const char *id, json_t **out);
/* A timestamptz column as ISO 8601 UTC text, in SQL. */
#define ISO_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* A device's location has two decimals: printed with jansson's default 17 digits, 50.85
 * would read 50.850000000000001. */
#define API_DEVICE_DUMP_FLAGS JSON_REAL_PRECISION(15)

/*
 * devices.c: registering and changing devices and sensors. A check runs on the loop thread on
 * the request body before any job exists: 0, or -1 with a message for a 400 in msg. It may
 * rewrite the body into what the run function expects (e.g. coordinates already rounded).
 */
typedef int (*api_check_fn)(json_t *in, char *msg, size_t msglen);
int api_device_register_check(json_t *in, char *msg, size_t msglen);
int api_device_patch_check(json_t *in, char *msg, size_t msglen);
int api_sensor_patch_check(json_t *in, char *msg, size_t msglen);
void api_run_device_register(api_job_t *job, PGconn *pg);
void api_run_device_patch(api_job_t *job, PGconn *pg);
void api_run_sensor_patch(api_job_t *job, PGconn *pg);
void api_run_erase(api_job_t *job, PGconn *pg);
void api_run_register(api_job_t *job, PGconn *pg);

/*
 * firmware.c: the public release log. A release as every answer shows it (GET /v1/firmware,
 * a device's offer): the columns API_RELEASE_COLUMNS selects, from releases r joined to
 * release_keys k, followed by the three columns of its log entry (seq, prev, hash), which the
 * caller picks: the public log's, or the entry recorded at publish that an offer carries.
 */
#define API_RELEASE_PUBLISHED_AT ISO_UTC("r.published_at")
#define API_RELEASE_COLUMNS                                                                        \
    "r.id, r.version, r.hardware, r.size, r.image_sha256, r.manifest_sha256,"                      \
    " translate(encode(r.manifest, 'base64'), E'\\n', ''),"                                        \
    " translate(encode(r.signature, 'base64'), E'\\n', ''), r.key_id, k.fingerprint,"              \
    " extract(epoch FROM r.issued_at)::bigint, extract(epoch FROM r.expires_at)::bigint,"          \
    " r.notes, " API_RELEASE_PUBLISHED_AT
#define API_RELEASE_NCOLUMNS 17
/* The release of row's columns col .. col + API_RELEASE_NCOLUMNS - 1 (owned). */
json_t *api_release_json(const PGresult *r, int row, int col);
/*
 * GET /v1/firmware[?after=SEQ][&limit=N] (release NULL; the query is checked here) and
 * GET /v1/firmware/{release} (a 32-hex id). Loop thread; answers through a job.
 */
void api_get_firmware(api_server_t *srv, struct evhttp_request *req, const char *release);

/*
 * upgrades.c: a device's upgrades (GET and PUT /v1/devices/{id}/upgrades) and approvals
 * (POST /v1/devices/{id}/upgrades/{release}/approve), as its owner.
 */
int api_upgrade_consent_check(json_t *in, char *msg, size_t msglen);
void api_run_upgrades_get(api_job_t *job, PGconn *pg);
void api_run_upgrades_put(api_job_t *job, PGconn *pg);
void api_run_upgrade_approve(api_job_t *job, PGconn *pg);

/* export.c: GET /v1/export, streamed into job->stream (job->range.csv: CSV, else NDJSON). */
void api_run_export(api_job_t *job, PGconn *pg);

#endif
