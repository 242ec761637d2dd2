/*
 * A worker thread: its event base drives a slice of the fleet. Each device is a small state
 * machine woken by one timer: generate the readings that are due, then, if nothing is in
 * flight and no backoff is running, send the next request (a heartbeat that is due, else the
 * next sensor's batch of the current post round). A device never has more than one request
 * in flight, so a sensor's batches are sent, and acknowledged, in time order.
 *
 * Everything a callback of evhttp does is record the outcome and arm the device's timer at
 * zero: connections are freed and requests made only from the timer, never from inside
 * evhttp's own callbacks (where freeing the connection would pull it from under evhttp).
 */
#include "device-sim/sim_internal.h"

#include "common/alloc.h"
#include "common/evloop.h"
#include "common/log.h"
#include "device-sim/backoff.h"
#include "device-sim/bad.h"
#include "device-sim/batch.h"
#include "device-sim/download.h"
#include "device-sim/meter.h"
#include "device-sim/profile.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* How often a worker checks the deadline and the stop flag. */
#define SIM_TICK_MS 100
/* Backoff after a failure: 250 ms doubling to 30 s, full jitter (device-sim/backoff.h). */
#define SIM_BACKOFF_BASE_MS 250
#define SIM_BACKOFF_CAP_MS 30000
/* Refusals logged per worker; the rest are only counted (the summary lists them by code). */
#define SIM_LOG_REFUSALS 10
/* Longest Retry-After honoured: a server asking for more is treated as asking for this. */
#define SIM_RETRY_AFTER_MAX_S 3600
/* Mixed-bad: what a malformed device sends (cut short: not JSON), and how far ahead the clock
 * of a future-clock device runs (far beyond any max_future_skew_s). */
static const char malformed_body[] = "{\"measurements\": [[1764115200, 12";
#define SIM_BAD_CLOCK_AHEAD_S 86400
/* A heartbeat body (device-sim/meter.h): versions, ids and reasons are bounded and short. */
#define SIM_HEARTBEAT_MAX 512
/* Firmware: how often a meter waiting for the log looks again, and the pause after a failed
 * download attempt (times the attempts so far). */
#define SIM_LOG_POLL_MS 100
#define SIM_DOWNLOAD_RETRY_MS 500

typedef struct sim_sensor {
    sim_profile_t profile;
    sim_buffer_t buf;
    /* The pending batch was sent at least once without a definite answer (no response, a
     * timeout, a 5xx): it may be stored even if it is never acknowledged. */
    bool uncertain;
    /* The pending batch met a retryable answer (429, 5xx, no answer): its first timestamp and
     * size, to prove that the retry resends exactly that batch. */
    bool resend;
    int64_t resend_first_ts;
    size_t resend_n;
} sim_sensor_t;

typedef enum sim_req_kind {
    SIM_REQ_NONE,
    SIM_REQ_BATCH,
    SIM_REQ_HEARTBEAT,
} sim_req_kind_t;

typedef struct sim_device {
    sim_worker_t *w;
    const sim_fleet_device_t *fd; /* borrowed from the fleet */
    uint32_t index;               /* in the fleet */
    sim_sensor_t *sensors;
    size_t nsensors;
    struct event *timer;
    struct evhttp_connection *evcon;
    bool evcon_dead;     /* closed or failed: free and replace before the next request */
    bool evcon_answered; /* a response came on this connection (handshake counted) */
    bool nodelay;        /* TCP_NODELAY set on its socket */
    sim_conn_tls_t tls;  /* resume mode's session; whether the last handshake resumed */
    sim_req_kind_t in_flight;
    size_t in_flight_sensor;
    bool in_flight_retry; /* the request resends something */
    enum evhttp_request_error last_error;
    bool last_error_set;
    uint64_t sent_us;
    sim_backoff_t backoff;
    uint64_t retry_at_ms; /* no request before this (backoff) */
    /* The last answer carried Retry-After: the next request must not leave before this. */
    bool retry_after_set;
    uint64_t retry_after_until_ms;
    bool draining;      /* storm: its backlog is not yet delivered */
    sim_bad_kind_t bad; /* mixed-bad: how this device misbehaves; SIM_BAD_NONE when good */
    bool stopped;       /* revoked (403 device_revoked): a meter must never post again */
    bool active;        /* ramp: switched on (always true in the other scenarios) */
    uint64_t next_k;    /* index of the next reading to generate */
    uint64_t phase_ms;  /* timed mode: offset of this device's readings */
    uint64_t next_post_ms, next_hb_ms;
    bool hb_due, round_active;
    size_t round_pos;
    /* Firmware (device-sim/meter.h). The offer of the last heartbeat answer waits in offer
     * for device_wake; the download has a connection of its own, made for each request. */
    sim_meter_t meter;
    bool hb_reported;                       /* the heartbeat in flight carries the report */
    char last_offer[MH_RELEASE_ID_LEN + 1]; /* the release last offered: each counted once */
    json_t *offer;                          /* owned; NULL: none waiting */
    bool settled;                           /* expected meter: an outcome was acknowledged */
    struct evhttp_connection *dl_evcon;
    sim_conn_tls_t dl_tls;
    sim_download_t *dl; /* owned; allocated by the first download request */
    bool dl_ended;      /* the request ended: dl->result waits for device_wake */
    uint64_t dl_at_ms;  /* DOWNLOAD: no request before this */
    bool dl_drop_used;  /* --download-drop-after cut its one download */
} sim_device_t;

struct sim_worker {
    sim_run_t *run;
    unsigned index;
    pthread_t thread;
    bool started;
    atomic_bool done;
    struct event_base *base;
    SSL_CTX *ssl_ctx;
    struct event *tick;
    sim_device_t *devices;
    size_t ndevices;
    size_t in_flight; /* devices with a request in flight */
    bool stopping;
    uint64_t stopping_since_ms;
    char *body; /* request body scratch, sized for a full batch */
    size_t body_len;
    unsigned refusals_logged;
    unsigned unexpected_logged; /* mixed-bad: unexpected answers logged */
    size_t activated;           /* ramp: the run's active count last acted upon */
    int64_t max_ts;             /* newest timestamp generated; INT64_MIN before the first */
    int rc;
    pthread_mutex_t lock; /* guards stats */
    sim_stats_t stats;
    sim_ack_log_t acked, unanswered;
};

static void device_wake(evutil_socket_t fd, short what, void *arg);

void sim_ack_log_add(sim_ack_log_t *log, uint32_t device, uint32_t sensor, int64_t ts, double value)
{
    if (log->n == log->alloc) {
        log->alloc = log->alloc ? log->alloc * 2 : 1024;
        log->v = mh_realloc(log->v, log->alloc * sizeof(*log->v));
    }
    log->v[log->n++] = (sim_ack_t){device, sensor, ts, value};
}

void sim_ack_log_dispose(sim_ack_log_t *log)
{
    free(log->v);
    memset(log, 0, sizeof(*log));
}

static uint64_t now_ms(const sim_worker_t *w)
{
    return (sim_mono_us() - w->run->t0_mono_us) / 1000u;
}

static void schedule(sim_device_t *d, uint64_t at_ms)
{
    uint64_t now = now_ms(d->w);
    uint64_t delay = at_ms > now ? at_ms - now : 0;
    struct timeval tv = {(time_t)(delay / 1000u), (suseconds_t)(delay % 1000u) * 1000};
    evtimer_add(d->timer, &tv);
}

static bool closed_loop(const sim_worker_t *w)
{
    return w->run->opts->post_every_s == 0;
}

static bool storm(const sim_worker_t *w)
{
    return w->run->opts->scenario == SIM_SCENARIO_STORM;
}

/* Counts a completed request; before the whole fleet of a storm has recovered, also as one of
 * the storm's. Under w->lock. */
static void count_request(sim_worker_t *w)
{
    sim_stats_count_request(&w->stats, sim_mono_us() - w->run->t0_mono_us);
    if (atomic_load(&w->run->storm_pending) > 0)
        w->stats.storm_requests++;
}

/* When reading k falls due, in ms since the start. Closed loop and storm: as soon as its
 * timestamp is not in the future (a storm's backlog is due at once); timed: on the device's
 * own phase within each interval. */
static uint64_t reading_due_ms(const sim_device_t *d, uint64_t k)
{
    const sim_run_t *run = d->w->run;
    uint64_t interval_ms = (uint64_t)run->opts->interval_s * 1000u;
    if (!closed_loop(d->w) && !storm(d->w))
        return d->phase_ms + k * interval_ms;
    double ts = (double)run->start_ts + (double)k * run->opts->interval_s;
    double ms = (ts - run->t0_wall) * 1000.0;
    return ms <= 0 ? 0 : (uint64_t)ceil(ms);
}

static size_t max_buffered(const sim_device_t *d)
{
    size_t m = 0;
    for (size_t s = 0; s < d->nsensors; s++)
        if (d->sensors[s].buf.len > m)
            m = d->sensors[s].buf.len;
    return m;
}

/* Generates every reading due by now (closed loop: only until some sensor holds a full
 * batch, so that simulated time does not run ahead of what is posted; a storm's backlog is
 * generated whole: the meters held it through the outage). */
static void generate(sim_device_t *d, uint64_t now)
{
    sim_worker_t *w = d->w;
    const sim_options_t *o = w->run->opts;
    uint64_t generated = 0, overflow = 0, backlog = 0;

    while (reading_due_ms(d, d->next_k) <= now) {
        if (closed_loop(w) && !storm(w) && max_buffered(d) >= o->batch)
            break;
        int64_t ts = w->run->start_ts + (int64_t)(d->next_k * o->interval_s);
        bool in_backlog = storm(w) && ts <= w->run->storm_end_ts;
        if (ts > w->max_ts)
            w->max_ts = ts;
        for (size_t s = 0; s < d->nsensors; s++) {
            double v;
            if (!sim_profile_next(&d->sensors[s].profile, ts, &v))
                continue;
            generated++;
            if (in_backlog)
                backlog++;
            if (sim_buffer_push(&d->sensors[s].buf, ts, v) != 0)
                overflow++;
        }
        d->next_k++;
    }
    if (generated > 0) {
        pthread_mutex_lock(&w->lock);
        w->stats.readings_generated += generated;
        w->stats.readings_overflow += overflow;
        w->stats.backlog_readings += backlog;
        pthread_mutex_unlock(&w->lock);
    }
}

/* Storm: once no sensor holds a reading of the backlog any more (each was acknowledged, or
 * refused for good, or never kept for want of room), the device has recovered and goes on as
 * in steady: a timed device posts again every --post-every from now. */
static void check_drained(sim_device_t *d, uint64_t now)
{
    sim_worker_t *w = d->w;
    if (!d->draining)
        return;
    for (size_t s = 0; s < d->nsensors; s++) {
        const sim_buffer_t *b = &d->sensors[s].buf;
        if (b->len > 0 && sim_buffer_at(b, 0)->ts <= w->run->storm_end_ts)
            return;
    }
    d->draining = false;
    if (!closed_loop(w))
        d->next_post_ms = now + (uint64_t)w->run->opts->post_every_s * 1000u;
    uint64_t at_us = sim_mono_us() - w->run->t0_mono_us;
    pthread_mutex_lock(&w->lock);
    w->stats.storm_recovered++;
    if (at_us > w->stats.recovery_max_us)
        w->stats.recovery_max_us = at_us;
    pthread_mutex_unlock(&w->lock);
    atomic_fetch_sub(&w->run->storm_pending, 1);
}

/* Called as a request leaves: whether it honours the last Retry-After. */
static void note_retry_after(sim_device_t *d, uint64_t now)
{
    sim_worker_t *w = d->w;
    if (!d->retry_after_set)
        return;
    d->retry_after_set = false;
    pthread_mutex_lock(&w->lock);
    w->stats.retry_after_waits++;
    if (now < d->retry_after_until_ms)
        w->stats.retry_after_early++;
    pthread_mutex_unlock(&w->lock);
}

/* Takes the budget of one request; false when the run must stop. */
static bool take_request_budget(sim_worker_t *w)
{
    sim_run_t *run = w->run;
    if (atomic_load(&run->stop))
        return false;
    uint64_t max = run->opts->max_requests;
    if (max > 0 && atomic_fetch_add(&run->requests_started, 1) >= max) {
        atomic_store(&run->stop, true);
        return false;
    }
    return true;
}

static void drop_connection(sim_device_t *d)
{
    if (d->evcon == NULL)
        return;
    struct evhttp_connection *evcon = d->evcon;
    /* Cleared first: sim_conn_free runs the close callback, which must not see it as ours. */
    d->evcon = NULL;
    if (d->evcon_answered) {
        pthread_mutex_lock(&d->w->lock);
        d->w->stats.connected--;
        pthread_mutex_unlock(&d->w->lock);
    }
    sim_conn_free(evcon);
    d->evcon_dead = false;
    d->evcon_answered = false;
    d->nodelay = false;
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    sim_device_t *d = arg;
    if (evcon == d->evcon)
        d->evcon_dead = true;
}

static void on_request_error(enum evhttp_request_error err, void *arg)
{
    sim_device_t *d = arg;
    d->last_error = err;
    d->last_error_set = true;
}

/* Ingest answers without Nagle on its side; the simulator's request (headers and body may
 * leave in separate TLS records) must not wait for a delayed ACK either. */
static void set_nodelay(sim_device_t *d)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(d->evcon);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    int one = 1;
    if (fd < 0 || d->nodelay)
        return;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
        mh_log(MH_LOG_WARN, "device %s: TCP_NODELAY: %s", d->fd->id, strerror(errno));
    d->nodelay = true;
}

static void on_response(struct evhttp_request *req, void *arg);

/* Sends one request; body is borrowed (copied into the request). Returns 0, or -1 when it
 * could not even be queued (counted as a connection error; the device backs off). */
static int send_request(sim_device_t *d, sim_req_kind_t kind, size_t sensor, const char *path,
                        const char *body, size_t len)
{
    sim_worker_t *w = d->w;
    const sim_options_t *o = w->run->opts;
    struct evhttp_request *req = NULL;

    if (d->evcon == NULL) {
        /* A wrong-CA device presents the throwaway CA's certificate for its own key. The copy
         * only lives for the call: the SSL object takes its own references. */
        sim_fleet_device_t id = *d->fd;
        if (d->bad == SIM_BAD_WRONG_CA)
            id.cert = w->run->bad->cert[d->index];
        d->evcon = sim_conn_new(w->base, w->ssl_ctx, w->run, &id, &d->tls, o->timeout_s);
        if (d->evcon == NULL)
            goto fail;
        evhttp_connection_set_closecb(d->evcon, on_close, d);
    }
    req = evhttp_request_new(on_response, d);
    if (req == NULL)
        goto fail;
    evhttp_request_set_error_cb(req, on_request_error);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (evhttp_add_header(h, "Host", w->run->host_header) != 0 ||
        evhttp_add_header(h, "Content-Type", "application/json") != 0 ||
        (o->conn_mode != SIM_CONN_KEEPALIVE && evhttp_add_header(h, "Connection", "close") != 0) ||
        evbuffer_add(evhttp_request_get_output_buffer(req), body, len) != 0)
        goto fail;
    d->in_flight = kind;
    d->in_flight_sensor = sensor;
    d->last_error_set = false;
    d->sent_us = sim_mono_us();
    w->in_flight++;
    if (evhttp_make_request(d->evcon, req, EVHTTP_REQ_POST, path) != 0) {
        /* evhttp has already failed the request through on_response (it owned it then). */
        req = NULL;
        if (d->in_flight != SIM_REQ_NONE) {
            d->in_flight = SIM_REQ_NONE;
            w->in_flight--;
        }
        d->evcon_dead = true;
        goto fail;
    }
    set_nodelay(d);
    pthread_mutex_lock(&w->lock);
    w->stats.bytes_sent += len;
    pthread_mutex_unlock(&w->lock);
    return 0;
fail:
    if (req != NULL)
        evhttp_request_free(req);
    mh_log(MH_LOG_WARN, "device %s: could not send a request to %s", d->fd->id, path);
    return -1;
}

/* The next action of a device whose turn it is; returns true if a request went out. */
static bool start_next(sim_device_t *d, uint64_t now)
{
    sim_worker_t *w = d->w;
    const sim_options_t *o = w->run->opts;
    char path[16 + MH_ID_LEN];

    bool eager = closed_loop(w) || d->draining;

    if (d->stopped)
        return false;
    if (d->hb_due) {
        char hb[SIM_HEARTBEAT_MAX];
        int hblen = sim_meter_heartbeat_body(&d->meter, hb, sizeof(hb));
        if (hblen < 0) {
            /* Not reachable with the bounded fields; never send a body we cannot vouch for. */
            mh_log(MH_LOG_ERROR, "device %s: heartbeat does not encode", d->fd->id);
            d->hb_due = false;
            return false;
        }
        if (!take_request_budget(w))
            return false;
        note_retry_after(d, now);
        snprintf(path, sizeof(path), "/device/%s", d->fd->id);
        d->hb_reported = d->meter.report_pending;
        if (send_request(d, SIM_REQ_HEARTBEAT, 0, path, hb, (size_t)hblen) != 0)
            goto failed;
        if (d->hb_reported) {
            pthread_mutex_lock(&w->lock);
            w->stats.upg.reports_sent++;
            pthread_mutex_unlock(&w->lock);
        }
        return true;
    }
    for (int pass = 0; pass < 2; pass++) {
        if (!d->round_active) {
            if (eager && max_buffered(d) > 0) {
                d->round_active = true;
                d->round_pos = 0;
            } else if (!closed_loop(w) && now >= d->next_post_ms) {
                uint64_t every = (uint64_t)o->post_every_s * 1000u;
                /* A device that fell behind skips the posts it missed, it does not burst. */
                while (d->next_post_ms <= now)
                    d->next_post_ms += every;
                d->round_active = true;
                d->round_pos = 0;
            } else {
                return false;
            }
        }
        while (d->round_pos < d->nsensors && d->sensors[d->round_pos].buf.len == 0)
            d->round_pos++;
        if (d->round_pos < d->nsensors)
            break;
        d->round_active = false;
        /* Closed loop (and a storm's drain): the round is over; the next one starts at once
         * with fresh readings. */
        if (eager)
            generate(d, now);
        else
            return false;
    }
    if (!d->round_active)
        return false;
    sim_sensor_t *s = &d->sensors[d->round_pos];
    size_t n = sim_buffer_take(&s->buf, o->batch);
    const sim_fleet_device_t *owner = d->fd;
    if (s->resend) {
        s->resend = false;
        if (n != s->resend_n || sim_buffer_at(&s->buf, 0)->ts != s->resend_first_ts) {
            mh_log(MH_LOG_ERROR, "device %s: the retry of a batch is not the same batch",
                   d->fd->id);
            pthread_mutex_lock(&w->lock);
            w->stats.retry_changed++;
            pthread_mutex_unlock(&w->lock);
        }
    }
    int len = d->bad == SIM_BAD_FUTURE
                  ? sim_batch_json_shifted(&s->buf, SIM_BAD_CLOCK_AHEAD_S, w->body, w->body_len)
                  : sim_batch_json(&s->buf, w->body, w->body_len);
    if (len < 0) {
        /* Not reachable with the profiles' finite values; never send a body we cannot vouch
         * for. */
        mh_log(MH_LOG_ERROR, "device %s: batch of %zu readings does not encode", d->fd->id, n);
        sim_buffer_drop_pending(&s->buf);
        return false;
    }
    if (!take_request_budget(w))
        return false;
    if (d->bad == SIM_BAD_MALFORMED) {
        len = (int)(sizeof(malformed_body) - 1);
        memcpy(w->body, malformed_body, sizeof(malformed_body));
    }
    if (d->bad == SIM_BAD_OTHER_SENSOR) {
        /* The same position among the victim's sensors, or its last one. */
        owner = &w->run->fleet->devices[w->run->bad->victim[d->index]];
        snprintf(
            path, sizeof(path), "/sensor/%s",
            owner->sensor_ids[d->round_pos < owner->nsensors ? d->round_pos : owner->nsensors - 1]);
    } else {
        snprintf(path, sizeof(path), "/sensor/%s", owner->sensor_ids[d->round_pos]);
    }
    note_retry_after(d, now);
    if (send_request(d, SIM_REQ_BATCH, d->round_pos, path, w->body, (size_t)len) != 0)
        goto failed;
    return true;
failed:
    pthread_mutex_lock(&w->lock);
    count_request(w);
    w->stats.by_status[0]++;
    w->stats.conn_errors++;
    pthread_mutex_unlock(&w->lock);
    drop_connection(d);
    d->retry_at_ms = now + sim_backoff_next(&d->backoff, 0);
    return false;
}

/* ---- firmware (device-sim/meter.h) -------------------------------------------------------- */

static bool upgrades(const sim_worker_t *w)
{
    return w->run->upgrade.enabled;
}

/* Whether the owner consented, as far as the run knows (--expect-consent): true without one. */
static bool consented(const sim_device_t *d)
{
    const sim_upgrade_run_t *u = &d->w->run->upgrade;
    return u->consent == NULL || u->consent[d->index];
}

/* One of the meters a campaign waits for: its flag on, and on the consent list. */
static bool expected(const sim_device_t *d)
{
    const sim_upgrade_run_t *u = &d->w->run->upgrade;
    return u->consent != NULL && u->consent[d->index] && d->meter.remote_upgrade;
}

static void drop_dl_connection(sim_device_t *d)
{
    if (d->dl_evcon == NULL)
        return;
    struct evhttp_connection *evcon = d->dl_evcon;
    d->dl_evcon = NULL;
    /* Freeing it frees a pending request without a callback. */
    if (d->dl != NULL && d->dl->in_flight)
        sim_download_forget(d->dl);
    sim_conn_free(evcon);
}

/* What the meter's state machine asks for next (worker thread; may run inside an evhttp
 * callback: it only counts, flags and sets times). */
static void on_step(sim_device_t *d, sim_meter_step_t step, uint64_t now)
{
    sim_worker_t *w = d->w;
    sim_upgrade_run_t *u = &w->run->upgrade;
    sim_meter_t *m = &d->meter;

    switch (step) {
    case SIM_METER_NOTHING:
        return;
    case SIM_METER_REPORT: {
        bool installed = m->report_outcome == SIM_OUTCOME_INSTALLED;
        pthread_mutex_lock(&w->lock);
        if (installed)
            w->stats.upg.installed++;
        else
            w->stats.upg.reasons[m->report_reason]++;
        pthread_mutex_unlock(&w->lock);
        if (installed)
            mh_log(MH_LOG_INFO, "device %s: installed release %s, now runs %s", d->fd->id,
                   m->report_release, m->version);
        else
            mh_log(MH_LOG_INFO, "device %s: %s release %s: %s", d->fd->id,
                   sim_meter_outcome_name(m->report_outcome), m->report_release,
                   sim_upgrade_reason_name(m->report_reason));
        if (installed && expected(d) && atomic_fetch_add(&u->installed, 1) + 1 == u->expected) {
            uint64_t at = sim_mono_us() - w->run->t0_mono_us;
            atomic_store(&u->all_installed_us, at > 0 ? at : 1);
        }
        /* The report goes out with the next heartbeat, now. */
        d->hb_due = true;
        return;
    }
    case SIM_METER_WAIT:
        pthread_mutex_lock(&w->lock);
        w->stats.upg.log_waits++;
        pthread_mutex_unlock(&w->lock);
        if (u->log_refetch) {
            m->log_want = atomic_fetch_add(&u->log_asked, 1) + 1;
            return;
        }
        /* A saved log cannot grow: the entry is not in it. */
        pthread_rwlock_rdlock(&u->log_lock);
        step = sim_meter_log_ready(m, u->key, (int64_t)time(NULL), &u->log, true);
        pthread_rwlock_unlock(&u->log_lock);
        on_step(d, step, now);
        return;
    case SIM_METER_FETCH:
        d->dl_at_ms = now + (uint64_t)m->attempts * SIM_DOWNLOAD_RETRY_MS;
        return;
    case SIM_METER_ABANDON:
        pthread_mutex_lock(&w->lock);
        w->stats.upg.withdrawn++;
        pthread_mutex_unlock(&w->lock);
        return;
    }
}

static int dl_data(void *arg, const uint8_t *buf, size_t len)
{
    sim_device_t *d = arg;
    sim_worker_t *w = d->w;

    if (d->meter.phase != SIM_METER_DOWNLOAD)
        return -1;
    sim_meter_step_t step = sim_meter_data(&d->meter, buf, len);
    if (step != SIM_METER_NOTHING) {
        on_step(d, step, now_ms(w));
        return -1;
    }
    pthread_mutex_lock(&w->lock);
    w->stats.upg.download_bytes += len;
    pthread_mutex_unlock(&w->lock);
    return 0;
}

static void dl_restart(void *arg)
{
    sim_device_t *d = arg;
    sim_meter_restart(&d->meter);
}

static void dl_done(void *arg, const sim_dl_result_t *r)
{
    sim_device_t *d = arg;
    (void)r; /* it is d->dl->result, read in device_wake */
    d->dl_ended = true;
    schedule(d, 0);
}

static const sim_download_cbs_t dl_cbs = {dl_data, dl_restart, dl_done};

/* Sends the next download request of a meter in DOWNLOAD, from what it already has. */
static void start_download(sim_device_t *d, uint64_t now)
{
    sim_worker_t *w = d->w;
    const sim_options_t *o = w->run->opts;
    sim_meter_t *m = &d->meter;
    char path[16 + MH_RELEASE_ID_LEN];
    uint64_t drop = 0;

    /* The meter's own discipline, checked where the request would leave: never without its
     * flag on and an offer it accepted. Not reachable; counted, so the run would fail. */
    if (!m->remote_upgrade || m->phase != SIM_METER_DOWNLOAD || m->work == NULL ||
        !m->work->offer.parsed) {
        pthread_mutex_lock(&w->lock);
        w->stats.upg.download_unasked++;
        pthread_mutex_unlock(&w->lock);
        mh_log(MH_LOG_ERROR, "device %s: a download without an accepted offer: not sent",
               d->fd->id);
        on_step(d, sim_meter_abandon(m), now);
        return;
    }
    drop_dl_connection(d);
    int64_t offset = m->work->image.received, size = m->work->offer.m.size;
    /* Every byte came before the response could end (a chunked body cut before its last
     * chunk): nothing is left to ask for, the image is checked as it is. */
    if (offset == size) {
        on_step(d, sim_meter_complete(m), now);
        return;
    }
    if (o->download_drop_after > 0 && !d->dl_drop_used &&
        (uint64_t)(size - offset) > o->download_drop_after) {
        drop = o->download_drop_after;
        d->dl_drop_used = true;
    }
    snprintf(path, sizeof(path), "/firmware/%s", m->work->offer.release);
    if (d->dl == NULL)
        d->dl = mh_calloc(1, sizeof(*d->dl));
    d->dl_ended = false;
    d->dl_evcon = sim_conn_new(w->base, w->ssl_ctx, w->run, d->fd, &d->dl_tls, o->timeout_s);
    if (d->dl_evcon == NULL || sim_download_start(d->dl, d->dl_evcon, w->run->host_header, path,
                                                  offset, size, drop, &dl_cbs, d) != 0) {
        drop_dl_connection(d);
        on_step(d, sim_meter_attempt_failed(m, false), now);
        return;
    }
    pthread_mutex_lock(&w->lock);
    w->stats.upg.download_requests++;
    if (offset > 0)
        w->stats.upg.download_ranges++;
    if (w->stats.upg.first_download_us == 0)
        w->stats.upg.first_download_us = sim_mono_us() - w->run->t0_mono_us;
    pthread_mutex_unlock(&w->lock);
}

/* A download request ended (its result in d->dl->result). */
static void download_ended(sim_device_t *d, uint64_t now)
{
    sim_worker_t *w = d->w;
    const sim_dl_result_t *r = &d->dl->result;
    sim_meter_t *m = &d->meter;
    sim_meter_step_t step;

    /* A connection per request: downloads are rare, and a cut one is not reused. */
    drop_dl_connection(d);
    pthread_mutex_lock(&w->lock);
    if (r->status == 200 || r->status == 206) {
        w->stats.upg.served++;
        if (!consented(d))
            w->stats.upg.served_unconsented++;
    }
    if (r->interrupted)
        w->stats.upg.interrupted++;
    if (r->complete && m->phase == SIM_METER_DOWNLOAD) {
        w->stats.upg.downloads++;
        w->stats.upg.last_download_us = sim_mono_us() - w->run->t0_mono_us;
    }
    pthread_mutex_unlock(&w->lock);
    if (m->phase != SIM_METER_DOWNLOAD)
        goto out; /* refused while it came (too long) */
    if (r->too_long)
        step = sim_meter_too_long(m);
    else if (r->interrupted)
        step = sim_meter_attempt_failed(m, true);
    else if (r->complete)
        step = sim_meter_complete(m);
    else if (r->status == 403 || r->status == 404)
        step = sim_meter_abandon(m); /* not_offered: withdrawn, paused, consent gone */
    else {
        mh_log(MH_LOG_DEBUG, "device %s: download of %s: status %d %s, %s", d->fd->id,
               m->work->offer.release, r->status, r->code,
               r->short_close ? "cut short" : "no image");
        step = sim_meter_attempt_failed(m, false);
    }
    on_step(d, step, now);
    /* A refusal that says when to come back (503 image_unavailable) is honoured. */
    if (step == SIM_METER_FETCH && r->retry_after_s > 0 &&
        d->dl_at_ms < now + (uint64_t)r->retry_after_s * 1000u)
        d->dl_at_ms = now + (uint64_t)r->retry_after_s * 1000u;
out:
    if (m->phase != SIM_METER_DOWNLOAD) {
        free(d->dl);
        d->dl = NULL;
    }
}

/* A heartbeat's answer (status > 0): settles the report it carried; the offer of a 2xx answer
 * is counted, and kept for device_wake when the meter may take it. */
static void heartbeat_answered(sim_device_t *d, struct evhttp_request *req, int status)
{
    sim_worker_t *w = d->w;
    sim_upgrade_run_t *u = &w->run->upgrade;
    bool ok = status >= 200 && status < 300;

    if (d->hb_reported) {
        d->hb_reported = false;
        if (sim_meter_report_answered(&d->meter, status)) {
            pthread_mutex_lock(&w->lock);
            if (ok)
                w->stats.upg.reports_acked++;
            else
                w->stats.upg.reports_dropped++;
            pthread_mutex_unlock(&w->lock);
            if (!ok)
                mh_log(MH_LOG_WARN, "device %s: its upgrade report was refused with %d", d->fd->id,
                       status);
            if (expected(d) && !d->settled) {
                d->settled = true;
                atomic_fetch_sub(&u->pending, 1);
            }
        }
    }
    if (!ok)
        return;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    const char *p = n > 0 ? (const char *)evbuffer_pullup(in, (ev_ssize_t)n) : NULL;
    json_t *o = p ? json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL) : NULL;
    json_t *up = json_object_get(o, "upgrade");
    if (json_is_object(up)) {
        const char *rel = json_string_value(json_object_get(up, "release"));
        if (rel == NULL)
            rel = "";
        if (strncmp(rel, d->last_offer, sizeof(d->last_offer)) != 0) {
            snprintf(d->last_offer, sizeof(d->last_offer), "%s", rel);
            pthread_mutex_lock(&w->lock);
            w->stats.upg.offers++;
            if (!d->meter.remote_upgrade)
                w->stats.upg.offers_flag_off++;
            if (!consented(d))
                w->stats.upg.offers_unconsented++;
            pthread_mutex_unlock(&w->lock);
            if (!d->meter.remote_upgrade || !consented(d))
                mh_log(MH_LOG_ERROR, "device %s: offered release %.32s without %s", d->fd->id, rel,
                       d->meter.remote_upgrade ? "its owner's consent" : "its own flag on");
        }
        /* A meter whose flag is off never acts on an offer. */
        if (upgrades(w) && d->meter.remote_upgrade) {
            json_decref(d->offer);
            d->offer = json_incref(up);
        }
    }
    json_decref(o);
}

/* The firmware part of a wake-up: a download that ended, an offer that came, a log refetch
 * that ran, a download to (re)start. */
static void upgrade_wake(sim_device_t *d, uint64_t now)
{
    sim_worker_t *w = d->w;
    sim_upgrade_run_t *u = &w->run->upgrade;
    sim_meter_step_t step;

    if (!upgrades(w))
        return;
    if (d->dl_ended) {
        d->dl_ended = false;
        download_ended(d, now);
    }
    if (d->offer != NULL) {
        json_t *offer = d->offer;
        d->offer = NULL;
        pthread_rwlock_rdlock(&u->log_lock);
        step = sim_meter_offer(&d->meter, offer, u->key, (int64_t)time(NULL), &u->log);
        pthread_rwlock_unlock(&u->log_lock);
        json_decref(offer);
        on_step(d, step, now);
    }
    if (d->meter.phase == SIM_METER_WAIT_LOG && atomic_load(&u->log_served) >= d->meter.log_want) {
        bool fetched = atomic_load(&u->log_fetch_ok);
        pthread_rwlock_rdlock(&u->log_lock);
        step = sim_meter_log_ready(&d->meter, u->key, (int64_t)time(NULL), &u->log, fetched);
        pthread_rwlock_unlock(&u->log_lock);
        on_step(d, step, now);
    }
    if (d->meter.phase == SIM_METER_DOWNLOAD && !(d->dl && d->dl->in_flight) && !d->dl_ended &&
        now >= d->dl_at_ms)
        start_download(d, now);
}

/* When the firmware part of an idle device wants waking; UINT64_MAX: never. */
static uint64_t upgrade_due(const sim_device_t *d)
{
    if (d->meter.phase == SIM_METER_WAIT_LOG)
        return now_ms(d->w) + SIM_LOG_POLL_MS;
    if (d->meter.phase == SIM_METER_DOWNLOAD && !(d->dl && d->dl->in_flight) && !d->dl_ended)
        return d->dl_at_ms;
    return UINT64_MAX;
}

/* The earliest time something is due for an idle device. */
static uint64_t next_due(const sim_device_t *d)
{
    const sim_options_t *o = d->w->run->opts;
    uint64_t t = reading_due_ms(d, d->next_k);
    if (!closed_loop(d->w) && d->next_post_ms < t)
        t = d->next_post_ms;
    if (o->heartbeat_every_s > 0 && d->next_hb_ms < t)
        t = d->next_hb_ms;
    if (d->retry_at_ms > t)
        t = d->retry_at_ms;
    /* A download runs on its own connection: the batches' backoff does not hold it back. */
    uint64_t fw = upgrade_due(d);
    return fw < t ? fw : t;
}

static void device_wake(evutil_socket_t fd, short what, void *arg)
{
    sim_device_t *d = arg;
    sim_worker_t *w = d->w;
    const sim_options_t *o = w->run->opts;
    uint64_t now = now_ms(w);

    if (d->evcon_dead)
        drop_connection(d);
    if (!w->stopping && !d->stopped && d->active)
        upgrade_wake(d, now);
    /* A stopped (revoked) device sleeps to the end: it neither posts nor needs waking; a
     * device a ramp has not reached yet is woken by on_tick when it is. */
    if (d->in_flight != SIM_REQ_NONE || w->stopping || d->stopped || !d->active)
        return;
    generate(d, now);
    check_drained(d, now);
    if (now < d->retry_at_ms) {
        uint64_t fw = upgrade_due(d);
        schedule(d, fw < d->retry_at_ms ? fw : d->retry_at_ms);
        return;
    }
    if (o->heartbeat_every_s > 0 && now >= d->next_hb_ms) {
        d->hb_due = true;
        while (d->next_hb_ms <= now)
            d->next_hb_ms += (uint64_t)o->heartbeat_every_s * 1000u;
    }
    if (start_next(d, now))
        return;
    if (w->stopping || atomic_load(&w->run->stop))
        return;
    schedule(d, next_due(d));
}

/* The "error" member of an ingest refusal, into code. */
static void error_code(struct evhttp_request *req, char *code, size_t len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    json_t *o = NULL;
    code[0] = '\0';
    if (n > 0 && n <= 65536) {
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)n);
        o = p ? json_loadb(p, n, 0, NULL) : NULL;
    }
    const char *e = json_string_value(json_object_get(o, "error"));
    snprintf(code, len, "%s", e ? e : "-");
    json_decref(o);
}

static uint32_t retry_after(struct evhttp_request *req)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), "Retry-After");
    char *end = NULL;
    if (v == NULL)
        return 0;
    unsigned long s = strtoul(v, &end, 10);
    if (end == v || *end != '\0')
        return 1; /* an HTTP date or garbage: at least come back later */
    return s > SIM_RETRY_AFTER_MAX_S ? SIM_RETRY_AFTER_MAX_S : (uint32_t)s;
}

static void log_refusal(sim_device_t *d, int status, const char *code)
{
    sim_worker_t *w = d->w;
    /* A bad device's refusals are what it asked for; judge() logs the unexpected ones. */
    if (w->refusals_logged >= SIM_LOG_REFUSALS || d->bad != SIM_BAD_NONE)
        return;
    w->refusals_logged++;
    mh_log(MH_LOG_WARN, "device %s: %s refused with %d %s%s", d->fd->id,
           d->in_flight == SIM_REQ_HEARTBEAT ? "heartbeat" : "batch", status, code,
           w->refusals_logged == SIM_LOG_REFUSALS ? " (further refusals only counted)" : "");
}

/* Readings of a sensor's pending batch into a log. */
static void log_pending(sim_device_t *d, size_t s, sim_ack_log_t *log)
{
    const sim_buffer_t *b = &d->sensors[s].buf;
    /* A bad device's readings are never the proof of anything (--verify leaves its sensors
     * out); should one be accepted, it is counted as an unexpected answer instead. */
    if (d->bad != SIM_BAD_NONE)
        return;
    for (size_t i = 0; i < b->pending; i++) {
        const sim_reading_t *r = sim_buffer_at(b, i);
        sim_ack_log_add(log, d->index, (uint32_t)s, r->ts, r->value);
    }
}

/* Mixed-bad: judges an answer (status 0: none) against what the device expects: the refusal
 * of its kind, or for a good device 2xx (429 and 503 are backpressure, retried, for both). A
 * revoked device that got its 403 stops for good, as protocol.md asks of a meter. */
static void judge(sim_device_t *d, struct evhttp_request *req, int status)
{
    sim_worker_t *w = d->w;
    char code[SIM_ERROR_CODE_MAX] = "";

    if (w->run->bad == NULL)
        return;
    if (status == 429 || status == 503) {
        pthread_mutex_lock(&w->lock);
        w->stats.bad_requests[d->bad]++;
        w->stats.bad_deferred[d->bad]++;
        pthread_mutex_unlock(&w->lock);
        return;
    }
    if (status > 0)
        error_code(req, code, sizeof(code));
    bool ok = sim_bad_kind_expected(d->bad, status, code);
    pthread_mutex_lock(&w->lock);
    w->stats.bad_requests[d->bad]++;
    if (ok)
        w->stats.bad_expected[d->bad]++;
    else if (d->bad == SIM_BAD_NONE)
        w->stats.good_failures++;
    else
        w->stats.bad_unexpected[d->bad]++;
    pthread_mutex_unlock(&w->lock);
    if (!ok && w->unexpected_logged < SIM_LOG_REFUSALS) {
        w->unexpected_logged++;
        mh_log(MH_LOG_WARN, "device %s (%s): answered %d %s, expected %s", d->fd->id,
               sim_bad_kind_name(d->bad), status, status > 0 ? code : "(no answer)",
               sim_bad_kind_expect(d->bad));
    }
    if (ok && d->bad == SIM_BAD_REVOKED)
        d->stopped = true;
}

static void on_response(struct evhttp_request *req, void *arg)
{
    sim_device_t *d = arg;
    sim_worker_t *w = d->w;
    const sim_options_t *o = w->run->opts;
    sim_req_kind_t kind = d->in_flight;
    size_t si = d->in_flight_sensor;
    sim_sensor_t *s = kind == SIM_REQ_BATCH ? &d->sensors[si] : NULL;
    uint64_t now_us = sim_mono_us();
    int status = req ? evhttp_request_get_response_code(req) : 0;
    char code[SIM_ERROR_CODE_MAX];
    bool retry = false;
    uint32_t ra = 0;

    if (kind == SIM_REQ_NONE)
        return;
    d->in_flight = SIM_REQ_NONE;
    w->in_flight--;
    judge(d, req, status <= 0 || status >= SIM_STATUS_MAX ? 0 : status);

    pthread_mutex_lock(&w->lock);
    count_request(w);
    if (status <= 0 || status >= SIM_STATUS_MAX) {
        d->hb_reported = false; /* the report stays owed */
        w->stats.by_status[0]++;
        w->stats.conn_errors++;
        if (d->last_error_set && d->last_error == EVREQ_HTTP_TIMEOUT)
            w->stats.timeouts++;
        pthread_mutex_unlock(&w->lock);
        d->evcon_dead = true;
        if (s != NULL)
            s->uncertain = true;
        retry = true;
        goto done;
    }
    w->stats.by_status[status]++;
    if (d->sent_us >= w->run->t0_mono_us + w->run->warmup_us)
        sim_hist_record(&w->stats.latency, now_us - d->sent_us);
    w->stats.bytes_received += evbuffer_get_length(evhttp_request_get_input_buffer(req));
    if (!d->evcon_answered) {
        d->evcon_answered = true;
        w->stats.connected++;
        w->stats.handshakes++;
        if (d->tls.resumed)
            w->stats.resumed++;
    }
    pthread_mutex_unlock(&w->lock);
    if (kind == SIM_REQ_HEARTBEAT)
        heartbeat_answered(d, req, status);

    const char *conn_hdr = evhttp_find_header(evhttp_request_get_input_headers(req), "Connection");
    if (o->conn_mode != SIM_CONN_KEEPALIVE ||
        (conn_hdr && evutil_ascii_strcasecmp(conn_hdr, "close") == 0))
        d->evcon_dead = true;

    if (status >= 200 && status < 300) {
        sim_backoff_reset(&d->backoff);
        pthread_mutex_lock(&w->lock);
        w->stats.ok++;
        if (kind == SIM_REQ_HEARTBEAT) {
            w->stats.heartbeats_ok++;
        } else {
            w->stats.readings_acked += s->buf.pending;
        }
        pthread_mutex_unlock(&w->lock);
        if (kind == SIM_REQ_HEARTBEAT) {
            /* A report reached while this one was out still needs its heartbeat. */
            d->hb_due = d->meter.report_pending;
        } else {
            if (o->verify)
                log_pending(d, si, &w->acked);
            sim_buffer_ack(&s->buf);
            s->uncertain = false;
            d->round_pos++;
        }
        goto done;
    }
    if (status == 429 || status >= 500) {
        /* 429 and 503 say when to come back; any 5xx may or may not have queued the batch. */
        ra = retry_after(req);
        if (status >= 500 && s != NULL)
            s->uncertain = true;
        retry = true;
        goto done;
    }
    /* Any other answer is final for these bytes: count it, give the batch up, go on. */
    error_code(req, code, sizeof(code));
    pthread_mutex_lock(&w->lock);
    sim_stats_add_error(&w->stats, status, code);
    if (s != NULL)
        w->stats.readings_refused += s->buf.pending;
    pthread_mutex_unlock(&w->lock);
    log_refusal(d, status, code);
    if (kind == SIM_REQ_HEARTBEAT) {
        d->hb_due = d->meter.report_pending;
    } else {
        if (o->verify && s->uncertain)
            log_pending(d, si, &w->unanswered);
        sim_buffer_drop_pending(&s->buf);
        s->uncertain = false;
        d->round_pos++;
    }
done:
    if (retry) {
        uint64_t now = now_ms(w);
        pthread_mutex_lock(&w->lock);
        w->stats.retries++;
        pthread_mutex_unlock(&w->lock);
        d->retry_at_ms = now + sim_backoff_next(&d->backoff, ra);
        d->retry_after_set = ra > 0;
        d->retry_after_until_ms = now + (uint64_t)ra * 1000u;
        if (s != NULL && s->buf.pending > 0) {
            s->resend = true;
            s->resend_n = s->buf.pending;
            s->resend_first_ts = sim_buffer_at(&s->buf, 0)->ts;
        }
    }
    /* The rest happens in device_wake, outside evhttp's callback. */
    schedule(d, 0);
}

/* Ramp: switches on the devices the run's active count now reaches. A timed device starts
 * from its next reading, as a meter just switched on would, not with the readings due since
 * the start of the run. */
static void activate(sim_worker_t *w, uint64_t now)
{
    size_t active = atomic_load(&w->run->active);
    uint64_t interval_ms = (uint64_t)w->run->opts->interval_s * 1000u;

    if (w->run->rank == NULL || active == w->activated)
        return;
    w->activated = active;
    for (size_t i = 0; i < w->ndevices; i++) {
        sim_device_t *d = &w->devices[i];
        if (d->active || w->run->rank[d->index] >= active)
            continue;
        d->active = true;
        if (!closed_loop(w) && now > d->phase_ms)
            d->next_k = (now - d->phase_ms + interval_ms - 1) / interval_ms;
        schedule(d, 0);
    }
}

/* Every SIM_TICK_MS: the deadline, the stop flag, the ramp's next step, and the end of the
 * loop once every device is idle (or after a bound, should a request never end). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    sim_worker_t *w = arg;
    const sim_options_t *o = w->run->opts;
    uint64_t now = now_ms(w);

    /* duration_s 0: no deadline (a ramp bounded by its fleet). */
    if (!w->stopping && (atomic_load(&w->run->stop) ||
                         (o->duration_s > 0 && (double)now >= o->duration_s * 1000.0))) {
        atomic_store(&w->run->stop, true);
        w->stopping = true;
        w->stopping_since_ms = now;
    }
    if (!w->stopping) {
        activate(w, now);
        return;
    }
    if (w->in_flight == 0 || now - w->stopping_since_ms > ((uint64_t)o->timeout_s + 2) * 1000u)
        event_base_loopbreak(w->base);
}

static void *worker_main(void *arg)
{
    sim_worker_t *w = arg;
    const sim_options_t *o = w->run->opts;
    struct timeval tick = {0, SIM_TICK_MS * 1000};

    w->tick = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    if (w->tick == NULL || event_add(w->tick, &tick) != 0) {
        mh_log(MH_LOG_ERROR, "worker %u: cannot arm its timer", w->index);
        w->rc = -1;
        goto out;
    }
    for (size_t i = 0; i < w->ndevices; i++)
        schedule(&w->devices[i], 0);
    if (event_base_dispatch(w->base) < 0) {
        mh_log(MH_LOG_ERROR, "worker %u: event loop failed", w->index);
        w->rc = -1;
    }
out:
    /* Whatever is still pending and was sent without a definite answer may be stored. */
    for (size_t i = 0; i < w->ndevices; i++) {
        sim_device_t *d = &w->devices[i];
        for (size_t s = 0; s < d->nsensors; s++) {
            bool flying = d->in_flight == SIM_REQ_BATCH && d->in_flight_sensor == s;
            if (o->verify && d->sensors[s].buf.pending > 0 && (d->sensors[s].uncertain || flying))
                log_pending(d, s, &w->unanswered);
        }
        /* Pending requests are freed with their connection, without a callback. */
        d->in_flight = SIM_REQ_NONE;
        drop_connection(d);
        drop_dl_connection(d);
    }
    w->in_flight = 0;
    atomic_store(&w->done, true);
    return NULL;
}

sim_worker_t *sim_worker_new(sim_run_t *run, unsigned index, size_t first, size_t count)
{
    const sim_options_t *o = run->opts;
    sim_worker_t *w = mh_calloc(1, sizeof(*w));
    uint64_t rng = run->opts->seed ^ (0x5851F42D4C957F2Dull * (index + 1));

    w->run = run;
    w->index = index;
    w->activated = atomic_load(&run->active);
    w->max_ts = INT64_MIN;
    pthread_mutex_init(&w->lock, NULL);
    sim_stats_init(&w->stats);
    w->base = mh_event_base_new();
    if (w->base == NULL) {
        mh_log(MH_LOG_ERROR, "worker %u: event_base_new failed", index);
        goto fail;
    }
    w->ssl_ctx = sim_tls_ctx_new(o->ca_file);
    if (w->ssl_ctx == NULL)
        goto fail;
    w->body_len = sim_batch_json_max(o->batch);
    w->body = mh_malloc(w->body_len);
    w->devices = mh_calloc(count ? count : 1, sizeof(*w->devices));
    w->ndevices = count;
    for (size_t i = 0; i < count; i++) {
        sim_device_t *d = &w->devices[i];
        d->w = w;
        d->tls.resume = o->conn_mode == SIM_CONN_RESUME;
        d->draining = storm(w);
        d->index = (uint32_t)(first + i);
        d->fd = &run->fleet->devices[first + i];
        d->bad = run->bad ? (sim_bad_kind_t)run->bad->kind[d->index] : SIM_BAD_NONE;
        d->active = run->rank == NULL || run->rank[d->index] < atomic_load(&run->active);
        d->nsensors = d->fd->nsensors;
        sim_meter_init(&d->meter, o->firmware_version, o->hardware,
                       run->upgrade.flag != NULL && run->upgrade.flag[d->index]);
        d->sensors = mh_calloc(d->nsensors ? d->nsensors : 1, sizeof(*d->sensors));
        for (size_t s = 0; s < d->nsensors; s++) {
            sim_profile_init(&d->sensors[s].profile, o->seed, d->index, (unsigned)s);
            if (run->counters != NULL)
                sim_profile_continue(&d->sensors[s].profile,
                                     run->counters[d->index * run->counters_stride + s]);
            sim_buffer_init(&d->sensors[s].buf, o->buffer);
        }
        d->timer = evtimer_new(w->base, device_wake, d);
        if (d->timer == NULL) {
            mh_log(MH_LOG_ERROR, "worker %u: evtimer_new failed", index);
            goto fail;
        }
        sim_backoff_init(&d->backoff, o->seed * 1000003u + d->index, SIM_BACKOFF_BASE_MS,
                         SIM_BACKOFF_CAP_MS);
        /* Phases spread the fleet over each period, as real meters switched on at random
         * times would be; drawn from the seed, so a run can be repeated. */
        d->phase_ms = (uint64_t)(sim_rand_unit(&rng) * o->interval_s * 1000.0);
        if (o->post_every_s > 0)
            d->next_post_ms = (uint64_t)(sim_rand_unit(&rng) * o->post_every_s * 1000.0);
        if (o->heartbeat_every_s > 0)
            d->next_hb_ms = (uint64_t)(sim_rand_unit(&rng) * o->heartbeat_every_s * 1000.0);
        /* A bad device only sends what its kind gets refused: never a (valid) heartbeat. */
        if (d->bad != SIM_BAD_NONE)
            d->next_hb_ms = UINT64_MAX;
    }
    return w;
fail:
    sim_worker_free(w);
    return NULL;
}

int sim_worker_start(sim_worker_t *w)
{
    int err = pthread_create(&w->thread, NULL, worker_main, w);
    if (err != 0) {
        mh_log(MH_LOG_ERROR, "worker %u: pthread_create: %s", w->index, strerror(err));
        return -1;
    }
    w->started = true;
    return 0;
}

bool sim_worker_done(sim_worker_t *w)
{
    return atomic_load(&w->done);
}

int sim_worker_join(sim_worker_t *w)
{
    if (w->started) {
        pthread_join(w->thread, NULL);
        w->started = false;
    }
    return w->rc;
}

void sim_worker_snapshot(sim_worker_t *w, sim_stats_t *out)
{
    pthread_mutex_lock(&w->lock);
    *out = w->stats;
    pthread_mutex_unlock(&w->lock);
}

const sim_ack_log_t *sim_worker_acked(const sim_worker_t *w)
{
    return &w->acked;
}

const sim_ack_log_t *sim_worker_unanswered(const sim_worker_t *w)
{
    return &w->unanswered;
}

int64_t sim_worker_max_ts(const sim_worker_t *w)
{
    return w->max_ts;
}

void sim_worker_free(sim_worker_t *w)
{
    if (w == NULL)
        return;
    if (w->started) {
        atomic_store(&w->run->stop, true);
        sim_worker_join(w);
    }
    for (size_t i = 0; i < w->ndevices && w->devices != NULL; i++) {
        sim_device_t *d = &w->devices[i];
        drop_connection(d);
        drop_dl_connection(d);
        if (d->timer != NULL)
            event_free(d->timer);
        SSL_SESSION_free(d->tls.session);
        SSL_SESSION_free(d->dl_tls.session);
        sim_meter_dispose(&d->meter);
        json_decref(d->offer);
        free(d->dl);
        for (size_t s = 0; s < d->nsensors && d->sensors != NULL; s++)
            sim_buffer_dispose(&d->sensors[s].buf);
        free(d->sensors);
    }
    free(w->devices);
    if (w->tick != NULL)
        event_free(w->tick);
    SSL_CTX_free(w->ssl_ctx);
    if (w->base != NULL)
        event_base_free(w->base);
    free(w->body);
    sim_ack_log_dispose(&w->acked);
    sim_ack_log_dispose(&w->unanswered);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
