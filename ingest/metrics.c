/* Prometheus text rendering of the workers' counters, and the health answer. Main thread. */
#include "ingest_internal.h"

#include <event2/buffer.h>
#include <stddef.h>
#include <stdio.h>
#include <openssl/ssl.h>
#include <string.h>

/* Upper bounds of the Redis latency buckets, microseconds. */
static const uint64_t lat_bounds_us[ING_LAT_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000};

static const int status_codes[ING_NSTATUS] = {200, 206, 400, 403, 404, 405, 409,
                                              413, 415, 416, 429, 500, 503, 0};

void ing_metrics_observe_redis(ing_metrics_t *m, uint64_t usec)
{
    for (int i = 0; i < ING_LAT_BUCKETS; i++) {
        if (usec <= lat_bounds_us[i]) {
            atomic_fetch_add_explicit(&m->redis_lat_bucket[i], 1, memory_order_relaxed);
            break;
        }
    }
    atomic_fetch_add_explicit(&m->redis_lat_sum_us, usec, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->redis_lat_count, 1, memory_order_relaxed);
}

static uint64_t sum_field(const ing_server_t *srv, size_t offset)
{
    uint64_t s = 0;
    for (int i = 0; i < srv->nworkers; i++) {
        const atomic_uint_fast64_t *f =
            (const atomic_uint_fast64_t *)((const char *)&srv->workers[i].metrics + offset);
        s += atomic_load_explicit(f, memory_order_relaxed);
    }
    return s;
}

#define METRIC(name) sum_field(srv, offsetof(ing_metrics_t, name))

static void counter(struct evbuffer *out, const char *name, const char *help, uint64_t v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                        (unsigned long long)v);
}

static void gauge(struct evbuffer *out, const char *name, const char *help, long long v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, v);
}

void ing_metrics_render(struct evbuffer *out, void *arg)
{
    const ing_server_t *srv = arg;

    evbuffer_add_printf(out, "# HELP meterhub_ingest_requests_total Requests by HTTP status.\n"
                             "# TYPE meterhub_ingest_requests_total counter\n");
    for (int s = 0; s < ING_NSTATUS; s++) {
        uint64_t v = sum_field(srv, offsetof(ing_metrics_t, requests) +
                                        (size_t)s * sizeof(atomic_uint_fast64_t));
        if (status_codes[s])
            evbuffer_add_printf(out, "meterhub_ingest_requests_total{status=\"%d\"} %llu\n",
                                status_codes[s], (unsigned long long)v);
        else
            evbuffer_add_printf(out, "meterhub_ingest_requests_total{status=\"other\"} %llu\n",
                                (unsigned long long)v);
    }
    counter(out, "meterhub_ingest_readings_accepted_total", "Readings queued (2xx).",
            METRIC(readings_accepted));
    counter(out, "meterhub_ingest_batches_accepted_total", "Batches queued (2xx).",
            METRIC(batches_accepted));
    counter(out, "meterhub_ingest_heartbeats_accepted_total", "Heartbeats queued (2xx).",
            METRIC(heartbeats_accepted));
    counter(out, "meterhub_ingest_foreign_sensor_posts_total",
            "Posts to a sensor of another device (403).", METRIC(foreign_sensor_posts));
    counter(out, "meterhub_ingest_revoked_connections_closed_total",
            "Open connections closed because their device was revoked.",
            METRIC(revoked_connections_closed));
    counter(out, "meterhub_ingest_connections_total", "TLS connections accepted.",
            METRIC(connections_total));
    gauge(out, "meterhub_ingest_connections_open", "TLS connections open.",
          (long long)METRIC(connections_open));
    counter(out, "meterhub_ingest_redis_errors_total", "Redis timeouts, disconnects and errors.",
            METRIC(redis_errors));
    counter(out, "meterhub_ingest_firmware_offers_total", "Heartbeat answers carrying an offer.",
            METRIC(firmware_offers));
    counter(out, "meterhub_ingest_firmware_reports_total", "Upgrade outcome reports recorded.",
            METRIC(firmware_reports));
    counter(out, "meterhub_ingest_firmware_downloads_total", "Image responses (200 and 206).",
            METRIC(firmware_downloads));
    counter(out, "meterhub_ingest_firmware_bytes_total", "Image bytes in those responses.",
            METRIC(firmware_bytes));
    counter(out, "meterhub_ingest_firmware_refused_total",
            "Downloads refused: the device holds no open offer (403).", METRIC(firmware_refused));
    counter(out, "meterhub_ingest_upgrade_pg_failures_total",
            "Offer and download checks PostgreSQL could not answer.", METRIC(upgrade_pg_failures));

    evbuffer_add_printf(out, "# HELP meterhub_ingest_tls_handshake_failures_total TLS alerts "
                             "sent, by reason.\n"
                             "# TYPE meterhub_ingest_tls_handshake_failures_total counter\n");
    for (int d = 0; d < 256; d++) {
        uint64_t v = atomic_load_explicit(&srv->tls_alerts[d], memory_order_relaxed);
        if (v == 0)
            continue;
        const char *reason = ing_tls_alert_name(d);
        if (strcmp(reason, "other") == 0)
            evbuffer_add_printf(out,
                                "meterhub_ingest_tls_handshake_failures_total{reason=\"alert_%d\"} "
                                "%llu\n",
                                d, (unsigned long long)v);
        else
            evbuffer_add_printf(out,
                                "meterhub_ingest_tls_handshake_failures_total{reason=\"%s\"} "
                                "%llu\n",
                                reason, (unsigned long long)v);
    }

    evbuffer_add_printf(out, "# HELP meterhub_ingest_redis_latency_seconds Time from command to "
                             "reply.\n# TYPE meterhub_ingest_redis_latency_seconds histogram\n");
    uint64_t cum = 0;
    for (int b = 0; b < ING_LAT_BUCKETS; b++) {
        cum += sum_field(srv, offsetof(ing_metrics_t, redis_lat_bucket) +
                                  (size_t)b * sizeof(atomic_uint_fast64_t));
        evbuffer_add_printf(out, "meterhub_ingest_redis_latency_seconds_bucket{le=\"%g\"} %llu\n",
                            (double)lat_bounds_us[b] / 1e6, (unsigned long long)cum);
    }
    uint64_t count = METRIC(redis_lat_count);
    evbuffer_add_printf(out,
                        "meterhub_ingest_redis_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "meterhub_ingest_redis_latency_seconds_sum %.6f\n"
                        "meterhub_ingest_redis_latency_seconds_count %llu\n",
                        (unsigned long long)count, (double)METRIC(redis_lat_sum_us) / 1e6,
                        (unsigned long long)count);

    evbuffer_add_printf(out, "# HELP meterhub_ingest_backlog Stream entries not yet stored, as "
                             "last seen by this node.\n# TYPE meterhub_ingest_backlog gauge\n");
    for (long s = 0; s < srv->cfg->redis.shards; s++)
        evbuffer_add_printf(
            out, "meterhub_ingest_backlog{shard=\"%ld\"} %lld\n", s,
            (long long)atomic_load_explicit(&srv->backlog[s], memory_order_relaxed));
    gauge(out, "meterhub_ingest_directory_loaded", "1 once the device directory is loaded.",
          atomic_load(&srv->dir_loaded) ? 1 : 0);
}

bool ing_health_render(struct evbuffer *out, void *arg)
{
    const ing_server_t *srv = arg;
    int ready = 0;
    for (int i = 0; i < srv->nworkers; i++)
        ready += srv->workers[i].redis.ready ? 1 : 0; /* racy read of a flag: fine for health */
    bool dir = atomic_load(&srv->dir_loaded);
    bool ok = dir && ready == srv->nworkers;
    evbuffer_add_printf(out,
                        "{\"status\":\"%s\",\"directory\":%s,\"redis_workers_ready\":%d,"
                        "\"workers\":%d}\n",
                        ok ? "ok" : "degraded", dir ? "true" : "false", ready, srv->nworkers);
    return ok;
}
