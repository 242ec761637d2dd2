#include "writer_internal.h"

#include <inttypes.h>
#include <string.h>

const double wr_commit_bounds[WR_COMMIT_NBUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
};

void wr_metrics_init(wr_metrics_t *m)
{
    memset(m, 0, sizeof(*m));
    atomic_init(&m->pending, -1);
    atomic_init(&m->backlog, -1);
    atomic_init(&m->postgres_up, false);
    atomic_init(&m->redis_up, false);
}

void wr_metrics_observe_commit(wr_metrics_t *m, uint64_t usec)
{
    size_t b = 0;
    while (b < WR_COMMIT_NBUCKETS && (double)usec > wr_commit_bounds[b] * 1e6)
        b++;
    wr_metrics_add(&m->commit_buckets[b], 1);
    wr_metrics_add(&m->commit_usec_sum, usec);
    wr_metrics_add(&m->commit_count, 1);
}

typedef struct counter_desc {
    const char *name;
    const char *help;
    size_t offset; /* of an atomic_uint_fast64_t in wr_metrics_t */
} counter_desc_t;

#define COUNTER(field, help)                                                                       \
    {                                                                                              \
        "meterhub_writer_" #field "_total", help, offsetof(wr_metrics_t, field)                    \
    }

static const counter_desc_t counters[] = {
    COUNTER(entries_read, "Stream entries read or claimed."),
    COUNTER(entries_claimed, "Stream entries claimed from idle consumers."),
    COUNTER(readings_read, "Readings in the entries written."),
    COUNTER(readings_inserted, "Readings stored as new rows."),
    COUNTER(heartbeats, "Heartbeats in the entries written."),
    COUNTER(batches_committed, "Write transactions committed."),
    COUNTER(dead_lettered, "Entries sent to the dead-letter stream."),
    COUNTER(postgres_errors, "Failed PostgreSQL connects and statements."),
    COUNTER(redis_errors, "Failed Redis connects and commands."),
};

static uint64_t counter_get(const wr_metrics_t *m, const counter_desc_t *c)
{
    return wr_metrics_get((const atomic_uint_fast64_t *)((const char *)m + c->offset));
}

void wr_metrics_render(struct evbuffer *out, wr_writer_t *const *writers, size_t n)
{
    for (size_t c = 0; c < sizeof(counters) / sizeof(counters[0]); c++) {
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n", counters[c].name,
                            counters[c].help, counters[c].name);
        for (size_t i = 0; i < n; i++)
            evbuffer_add_printf(out, "%s{shard=\"%ld\"} %" PRIu64 "\n", counters[c].name,
                                wr_writer_shard(writers[i]),
                                counter_get(wr_writer_metrics(writers[i]), &counters[c]));
    }

    evbuffer_add_printf(out, "# HELP meterhub_writer_readings_duplicate_total Readings that "
                             "were already stored (read - inserted).\n"
                             "# TYPE meterhub_writer_readings_duplicate_total counter\n");
    for (size_t i = 0; i < n; i++) {
        const wr_metrics_t *m = wr_writer_metrics(writers[i]);
        /* Read inserted first: both only grow, and read is bumped no later than inserted. */
        uint64_t ins = wr_metrics_get(&m->readings_inserted);
        uint64_t rd = wr_metrics_get(&m->readings_read);
        evbuffer_add_printf(out,
                            "meterhub_writer_readings_duplicate_total{shard=\"%ld\"} %" PRIu64 "\n",
                            wr_writer_shard(writers[i]), rd > ins ? rd - ins : 0);
    }

    evbuffer_add_printf(out, "# HELP meterhub_writer_commit_seconds Latency of the write "
                             "statement (one transaction).\n"
                             "# TYPE meterhub_writer_commit_seconds histogram\n");
    for (size_t i = 0; i < n; i++) {
        const wr_metrics_t *m = wr_writer_metrics(writers[i]);
        long shard = wr_writer_shard(writers[i]);
        uint64_t cum = 0;
        for (size_t b = 0; b < WR_COMMIT_NBUCKETS; b++) {
            cum += wr_metrics_get(&m->commit_buckets[b]);
            evbuffer_add_printf(out,
                                "meterhub_writer_commit_seconds_bucket{shard=\"%ld\",le=\"%g\"} "
                                "%" PRIu64 "\n",
                                shard, wr_commit_bounds[b], cum);
        }
        cum += wr_metrics_get(&m->commit_buckets[WR_COMMIT_NBUCKETS]);
        evbuffer_add_printf(out,
                            "meterhub_writer_commit_seconds_bucket{shard=\"%ld\",le=\"+Inf\"} "
                            "%" PRIu64 "\n"
                            "meterhub_writer_commit_seconds_sum{shard=\"%ld\"} %.6f\n"
                            "meterhub_writer_commit_seconds_count{shard=\"%ld\"} %" PRIu64 "\n",
                            shard, cum, shard, (double)wr_metrics_get(&m->commit_usec_sum) / 1e6,
                            shard, wr_metrics_get(&m->commit_count));
    }

    static const char *const gauges[][2] = {
        {"pending", "Entries delivered to writers and not yet acknowledged (XPENDING)."},
        {"backlog", "Entries in the stream (XLEN): not yet stored, or stored and being "
                    "acknowledged."},
    };
    for (size_t g = 0; g < 2; g++) {
        evbuffer_add_printf(out, "# HELP meterhub_writer_%s %s\n# TYPE meterhub_writer_%s gauge\n",
                            gauges[g][0], gauges[g][1], gauges[g][0]);
        for (size_t i = 0; i < n; i++) {
            const wr_metrics_t *m = wr_writer_metrics(writers[i]);
            int64_t v =
                atomic_load_explicit(g == 0 ? &m->pending : &m->backlog, memory_order_relaxed);
            if (v >= 0)
                evbuffer_add_printf(out, "meterhub_writer_%s{shard=\"%ld\"} %" PRId64 "\n",
                                    gauges[g][0], wr_writer_shard(writers[i]), v);
        }
    }

    evbuffer_add_printf(out, "# HELP meterhub_writer_up Whether the shard's connection to the "
                             "server is live.\n# TYPE meterhub_writer_up gauge\n");
    for (size_t i = 0; i < n; i++) {
        const wr_metrics_t *m = wr_writer_metrics(writers[i]);
        long shard = wr_writer_shard(writers[i]);
        evbuffer_add_printf(out,
                            "meterhub_writer_up{shard=\"%ld\",server=\"postgres\"} %d\n"
                            "meterhub_writer_up{shard=\"%ld\",server=\"redis\"} %d\n",
                            shard, atomic_load_explicit(&m->postgres_up, memory_order_relaxed),
                            shard, atomic_load_explicit(&m->redis_up, memory_order_relaxed));
    }
}

bool wr_health_render(struct evbuffer *out, wr_writer_t *const *writers, size_t n)
{
    bool all = true;
    evbuffer_add_printf(out, "{\"shards\": [");
    for (size_t i = 0; i < n; i++) {
        const wr_metrics_t *m = wr_writer_metrics(writers[i]);
        bool pg = atomic_load_explicit(&m->postgres_up, memory_order_relaxed);
        bool rd = atomic_load_explicit(&m->redis_up, memory_order_relaxed);
        all = all && pg && rd;
        evbuffer_add_printf(out, "%s{\"shard\": %ld, \"postgres\": %s, \"redis\": %s}",
                            i ? ", " : "", wr_writer_shard(writers[i]), pg ? "true" : "false",
                            rd ? "true" : "false");
    }
    evbuffer_add_printf(out, "], \"status\": \"%s\"}\n", all ? "ok" : "unavailable");
    return all;
}
