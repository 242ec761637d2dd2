#ifndef SIM_INTERNAL_H
#define SIM_INTERNAL_H

/*
 * What the parts of meterhub-sim share: the run (read-only once the workers start, except
 * the atomics), the per-thread workers, the TLS client side and the logs of acknowledged
 * readings that --verify checks.
 *
 * Threading: main.c builds the run and the workers, starts them, and only reads a worker's
 * statistics through sim_worker_snapshot (under the worker's lock) until it has joined it;
 * after the join, everything of the worker may be read.
 */

#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "device-sim/fleet.h"
#include "device-sim/options.h"
#include "device-sim/release_log.h"
#include "device-sim/stats.h"

#include <pthread.h>

/*
 * Firmware upgrades, shared by the workers (device-sim/meter.h): the meters' pinned key and
 * settings, read-only once the workers start; the copy of the public release log, which the
 * main thread extends (fetching it again when a worker asks) under log_lock while the workers
 * read it; the campaign's progress, in atomics.
 */
typedef struct sim_upgrade_run {
    bool enabled;           /* a key and a log are loaded: meters with the flag on take offers */
    EVP_PKEY *key;          /* the pinned release public key (owned by main) */
    const uint8_t *flag;    /* per device of the run: remote_upgrade on; NULL: all off */
    const uint8_t *consent; /* per device: on --expect-consent; NULL: no list */
    sim_release_log_t log;  /* guarded by log_lock */
    pthread_rwlock_t log_lock;
    bool log_refetch;                      /* the log comes from the API: it can be fetched again */
    atomic_uint_fast64_t log_asked;        /* refetches asked for; each ask gets the next number */
    atomic_uint_fast64_t log_served;       /* every ask up to this one was followed by a fetch */
    atomic_bool log_fetch_ok;              /* how the last fetch went */
    size_t expected;                       /* meters with the flag on and consent */
    atomic_size_t pending;                 /* of them, those without an acknowledged outcome */
    atomic_size_t installed;               /* of them, those that installed */
    atomic_uint_fast64_t all_installed_us; /* since the start, when the last of them did */
} sim_upgrade_run_t;

typedef struct sim_run {
    const sim_options_t *opts;
    const sim_fleet_t *fleet;
    size_t ndevices; /* the first ndevices of the fleet */
    char host[256];  /* of the target, without brackets */
    uint16_t port;
    bool host_is_ip;
    char host_header[300];
    double t0_wall;      /* wall clock at the start, seconds */
    uint64_t t0_mono_us; /* monotonic clock at the start */
    uint64_t warmup_us;  /* latencies of requests sent before t0 + this are not recorded */
    int64_t start_ts;    /* timestamp of every device's first reading */
    atomic_bool stop;    /* no new requests (duration, --max-requests, signal) */
    atomic_uint_fast64_t requests_started;
    /* Storm: readings with timestamps up to storm_end_ts are the backlog (start_ts is then
     * storm_end_ts - outage); storm_pending counts the devices that have not yet delivered
     * all of theirs. */
    int64_t storm_end_ts;
    atomic_size_t storm_pending;
    const struct sim_bad *bad; /* mixed-bad: who misbehaves and how (borrowed); else NULL */
    /* Ramp: device d runs once rank[d] < active (ranks interleave the workers' slices, so
     * every thread gets its share of each step); rank NULL: every device runs. */
    const uint32_t *rank;
    atomic_size_t active;
    /* Where the fleet's counters stand in PostgreSQL (sim_counters_load): sensor s of device d
     * at [d * counters_stride + s], NaN when nothing is stored; NULL: start from the profiles. */
    const double *counters;
    size_t counters_stride;
    sim_upgrade_run_t upgrade;
} sim_run_t;

/* Microseconds of CLOCK_MONOTONIC. */
uint64_t sim_mono_us(void);

/* ---- acknowledged readings, for --verify -------------------------------------------------- */

typedef struct sim_ack {
    uint32_t device; /* index in the fleet */
    uint32_t sensor; /* index in the device */
    int64_t ts;
    double value;
} sim_ack_t;

typedef struct sim_ack_log {
    sim_ack_t *v;
    size_t n, alloc;
} sim_ack_log_t;

void sim_ack_log_add(sim_ack_log_t *log, uint32_t device, uint32_t sensor, int64_t ts,
                     double value);
void sim_ack_log_dispose(sim_ack_log_t *log);

/* ---- TLS client (conn.c) ------------------------------------------------------------------ */

/* A client context: TLS 1.2+, the server verified against ca_file. Owned (SSL_CTX_free), or
 * NULL (logged). One per worker thread. */
SSL_CTX *sim_tls_ctx_new(const char *ca_file);

/* What a device's connections report and keep of TLS. Owned by the device; it must outlive
 * every connection made with it. */
typedef struct sim_conn_tls {
    bool resume;          /* resume mode: offer `session`, keep each new one */
    SSL_SESSION *session; /* owned reference, or NULL */
    bool resumed;         /* the last completed handshake resumed a session */
} sim_conn_tls_t;

/*
 * A new HTTP connection to the target over TLS with the device's certificate and key. tls
 * (borrowed) receives, at the end of the handshake, whether it was resumed; in resume mode the
 * connection offers tls->session and every session the server hands out replaces it. The
 * connection is not opened until the first request. timeout_s bounds connect, handshake and
 * each request. Returns an owned connection (sim_conn_free) or NULL (logged). Worker thread.
 */
struct evhttp_connection *sim_conn_new(struct event_base *base, SSL_CTX *ctx, const sim_run_t *run,
                                       const sim_fleet_device_t *dev, sim_conn_tls_t *tls,
                                       unsigned timeout_s);

/* The SSL of a connection, borrowed; NULL if none. */
SSL *sim_conn_ssl(struct evhttp_connection *evcon);

/* Sends close_notify (best effort, so that the session stays resumable) and frees the
 * connection, its bufferevent, SSL and socket. Never from inside one of its own callbacks.
 * NULL is a no-op. */
void sim_conn_free(struct evhttp_connection *evcon);

/* ---- workers (worker.c) ------------------------------------------------------------------- */

typedef struct sim_worker sim_worker_t;

/* A worker for devices [first, first + count) of the fleet, with its own event base and TLS
 * context. Returns an owned worker, or NULL (logged). Main thread. */
sim_worker_t *sim_worker_new(sim_run_t *run, unsigned index, size_t first, size_t count);
/* Starts its thread. Returns 0 or -1 (logged). */
int sim_worker_start(sim_worker_t *w);
/* True once the worker's loop has ended (every request answered or abandoned). */
bool sim_worker_done(sim_worker_t *w);
/* Waits for the thread. Returns the worker's status: 0, or -1 after a run-time error. */
int sim_worker_join(sim_worker_t *w);
/* A copy of the worker's statistics, taken under its lock. Any thread. */
void sim_worker_snapshot(sim_worker_t *w, sim_stats_t *out);
/* After the join: the readings acknowledged, and those sent without a definite answer and
 * never acknowledged (they may or may not be stored). Borrowed. */
const sim_ack_log_t *sim_worker_acked(const sim_worker_t *w);
const sim_ack_log_t *sim_worker_unanswered(const sim_worker_t *w);
/* After the join: the newest timestamp the worker generated (INT64_MIN if none). */
int64_t sim_worker_max_ts(const sim_worker_t *w);
/* Stops the thread if running and frees everything. NULL is a no-op. */
void sim_worker_free(sim_worker_t *w);

#endif
