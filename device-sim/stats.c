#include "device-sim/stats.h"

#include <inttypes.h>
#include <string.h>

void sim_stats_init(sim_stats_t *s)
{
    memset(s, 0, sizeof(*s));
    sim_hist_init(&s->latency);
}

void sim_stats_add_error(sim_stats_t *s, int status, const char *code)
{
    if (code == NULL || code[0] == '\0')
        code = "-";
    for (size_t i = 0; i < s->nerrors; i++) {
        if (s->errors[i].status == status && strcmp(s->errors[i].code, code) == 0) {
            s->errors[i].n++;
            return;
        }
    }
    if (s->nerrors == SIM_ERRORS_MAX) {
        s->errors_unnamed++;
        return;
    }
    sim_error_count_t *e = &s->errors[s->nerrors++];
    e->status = status;
    snprintf(e->code, sizeof(e->code), "%s", code);
    e->n = 1;
}

void sim_stats_merge(sim_stats_t *dst, const sim_stats_t *src)
{
    dst->requests += src->requests;
    dst->ok += src->ok;
    dst->heartbeats_ok += src->heartbeats_ok;
    for (size_t i = 0; i < SIM_STATUS_MAX; i++)
        dst->by_status[i] += src->by_status[i];
    dst->readings_generated += src->readings_generated;
    dst->readings_acked += src->readings_acked;
    dst->readings_refused += src->readings_refused;
    dst->readings_overflow += src->readings_overflow;
    dst->retries += src->retries;
    dst->bytes_sent += src->bytes_sent;
    dst->bytes_received += src->bytes_received;
    dst->handshakes += src->handshakes;
    dst->resumed += src->resumed;
    dst->conn_errors += src->conn_errors;
    dst->timeouts += src->timeouts;
    dst->connected += src->connected;
    for (size_t i = 0; i < src->nerrors; i++) {
        const sim_error_count_t *e = &src->errors[i];
        size_t j = 0;
        while (j < dst->nerrors &&
               !(dst->errors[j].status == e->status && strcmp(dst->errors[j].code, e->code) == 0))
            j++;
        if (j < dst->nerrors)
            dst->errors[j].n += e->n;
        else if (dst->nerrors < SIM_ERRORS_MAX)
            dst->errors[dst->nerrors++] = *e;
        else
            dst->errors_unnamed += e->n;
    }
    dst->errors_unnamed += src->errors_unnamed;
    sim_hist_merge(&dst->latency, &src->latency);
}

static double ms(uint64_t usec)
{
    return (double)usec / 1000.0;
}

/* "429:12 503:3 conn:1", or "-" when nothing failed. */
static void failures_text(char *buf, size_t len, const sim_stats_t *s)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (int st = 300; st < SIM_STATUS_MAX && pos < len; st++) {
        if (s->by_status[st] == 0)
            continue;
        int n =
            snprintf(buf + pos, len - pos, "%s%d:%" PRIu64, pos ? " " : "", st, s->by_status[st]);
        if (n < 0)
            return;
        pos += (size_t)n;
    }
    if (s->by_status[0] > 0 && pos < len) {
        int n = snprintf(buf + pos, len - pos, "%sconn:%" PRIu64, pos ? " " : "", s->by_status[0]);
        if (n > 0)
            pos += (size_t)n;
    }
    if (pos == 0)
        snprintf(buf, len, "-");
}

void sim_stats_progress(char *buf, size_t buflen, double elapsed, double dt, const sim_stats_t *cur,
                        const sim_stats_t *prev)
{
    char fails[256];
    failures_text(fails, sizeof(fails), cur);
    if (dt <= 0)
        dt = 1;
    snprintf(buf, buflen,
             "%7.1fs  conn %" PRId64 "  req/s %.0f  readings/s %.0f  ok %" PRIu64
             "  errors %s  p50 %.2f ms  p99 %.2f ms",
             elapsed, cur->connected, (double)(cur->requests - prev->requests) / dt,
             (double)(cur->readings_acked - prev->readings_acked) / dt, cur->ok, fails,
             ms(sim_hist_quantile(&cur->latency, 0.50)),
             ms(sim_hist_quantile(&cur->latency, 0.99)));
}

static const char *verify_name(sim_verify_state_t st)
{
    switch (st) {
    case SIM_VERIFY_NOT_RUN:
        return "not run";
    case SIM_VERIFY_PASSED:
        return "passed";
    case SIM_VERIFY_FAILED:
        return "failed";
    case SIM_VERIFY_ERROR:
        return "error";
    }
    return "?";
}

void sim_stats_print_summary(FILE *f, const sim_stats_t *s, const sim_report_t *r)
{
    double t = r->elapsed_s > 0 ? r->elapsed_s : 1;
    const sim_hist_t *h = &s->latency;
    char fails[512];

    failures_text(fails, sizeof(fails), s);
    fprintf(f, "meterhub-sim: %s scenario, %zu devices, %zu sensors, %u threads, %s connections\n",
            r->scenario, r->devices, r->sensors, r->threads, r->mode);
    if (r->post_every_s == 0)
        fprintf(f, "  closed loop, up to %u readings per sensor per post, interval %u s\n",
                r->batch, r->interval_s);
    else
        fprintf(f, "  a post every %u s, a reading every %u s\n", r->post_every_s, r->interval_s);
    fprintf(f, "  duration       %.2f s\n", r->elapsed_s);
    fprintf(f,
            "  requests       %" PRIu64 " (%.1f/s), 2xx %" PRIu64 ", heartbeats ok %" PRIu64
            ", retries %" PRIu64 "\n",
            s->requests, (double)s->requests / t, s->ok, s->heartbeats_ok, s->retries);
    fprintf(f,
            "  readings       acked %" PRIu64 " (%.1f/s), generated %" PRIu64 ", refused %" PRIu64
            ", overflow %" PRIu64 "\n",
            s->readings_acked, (double)s->readings_acked / t, s->readings_generated,
            s->readings_refused, s->readings_overflow);
    fprintf(f, "  latency ms     p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  mean %.2f\n",
            ms(sim_hist_quantile(h, 0.5)), ms(sim_hist_quantile(h, 0.9)),
            ms(sim_hist_quantile(h, 0.99)), ms(sim_hist_quantile(h, 0.999)), ms(h->max),
            sim_hist_mean(h) / 1000.0);
    fprintf(f, "  errors         %s\n", fails);
    for (size_t i = 0; i < s->nerrors; i++)
        fprintf(f, "                 %d %s: %" PRIu64 "\n", s->errors[i].status, s->errors[i].code,
                s->errors[i].n);
    fprintf(f,
            "  tls            handshakes %" PRIu64 ", resumed %" PRIu64
            ", connection errors %" PRIu64 " (timeouts %" PRIu64 ")\n",
            s->handshakes, s->resumed, s->conn_errors, s->timeouts);
    fprintf(f, "  bytes          sent %" PRIu64 ", received %" PRIu64 " (bodies)\n", s->bytes_sent,
            s->bytes_received);
    fprintf(f, "  verify         %s", verify_name(r->verify.state));
    if (r->verify.state == SIM_VERIFY_PASSED || r->verify.state == SIM_VERIFY_FAILED)
        fprintf(f,
                ": acked %" PRIu64 ", missing %" PRIu64 ", extra %" PRIu64
                ", unanswered but stored %" PRIu64 " (waited %.1f s)",
                r->verify.acked, r->verify.missing, r->verify.extra, r->verify.unanswered_stored,
                r->verify.wait_s);
    fputc('\n', f);
}

json_t *sim_stats_json(const sim_stats_t *s, const sim_report_t *r)
{
    double t = r->elapsed_s > 0 ? r->elapsed_s : 1;
    const sim_hist_t *h = &s->latency;
    json_t *statuses = json_object();
    json_t *errors = json_array();
    char key[16];

    for (int st = 1; st < SIM_STATUS_MAX; st++) {
        if (s->by_status[st] == 0)
            continue;
        snprintf(key, sizeof(key), "%d", st);
        json_object_set_new(statuses, key, json_integer((json_int_t)s->by_status[st]));
    }
    if (s->by_status[0] > 0)
        json_object_set_new(statuses, "no_answer", json_integer((json_int_t)s->by_status[0]));
    for (size_t i = 0; i < s->nerrors; i++)
        json_array_append_new(errors,
                              json_pack("{s:i, s:s, s:I}", "status", s->errors[i].status, "error",
                                        s->errors[i].code, "count", (json_int_t)s->errors[i].n));
    /* json_pack's "I" needs a json_int_t for each 64-bit count. */
    json_t *o = json_pack(
        "{s:s, s:s, s:f, s:I, s:I, s:i, s:{s:i, s:i, s:i}}", "scenario", r->scenario, "connections",
        r->mode, "duration_s", r->elapsed_s, "devices", (json_int_t)r->devices, "sensors",
        (json_int_t)r->sensors, "threads", (int)r->threads, "settings", "post_every_s",
        (int)r->post_every_s, "interval_s", (int)r->interval_s, "batch", (int)r->batch);
    json_object_set_new(o, "requests",
                        json_pack("{s:I, s:I, s:I, s:I, s:f}", "total", (json_int_t)s->requests,
                                  "ok", (json_int_t)s->ok, "heartbeats_ok",
                                  (json_int_t)s->heartbeats_ok, "retries", (json_int_t)s->retries,
                                  "per_s", (double)s->requests / t));
    json_object_set_new(
        o, "readings",
        json_pack("{s:I, s:I, s:I, s:I, s:f}", "acked", (json_int_t)s->readings_acked, "generated",
                  (json_int_t)s->readings_generated, "refused", (json_int_t)s->readings_refused,
                  "overflow", (json_int_t)s->readings_overflow, "acked_per_s",
                  (double)s->readings_acked / t));
    json_object_set_new(
        o, "latency_ms",
        json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I}", "p50", ms(sim_hist_quantile(h, 0.5)),
                  "p90", ms(sim_hist_quantile(h, 0.9)), "p99", ms(sim_hist_quantile(h, 0.99)),
                  "p99_9", ms(sim_hist_quantile(h, 0.999)), "max", ms(h->max), "min",
                  ms(h->total ? h->min : 0), "mean", sim_hist_mean(h) / 1000.0, "count",
                  (json_int_t)h->total));
    json_object_set_new(o, "statuses", statuses);
    json_object_set_new(o, "errors", errors);
    json_object_set_new(o, "errors_unnamed", json_integer((json_int_t)s->errors_unnamed));
    json_object_set_new(o, "tls",
                        json_pack("{s:I, s:I, s:I, s:I}", "handshakes", (json_int_t)s->handshakes,
                                  "resumed", (json_int_t)s->resumed, "connection_errors",
                                  (json_int_t)s->conn_errors, "timeouts", (json_int_t)s->timeouts));
    json_object_set_new(o, "bytes",
                        json_pack("{s:I, s:I}", "sent", (json_int_t)s->bytes_sent, "received",
                                  (json_int_t)s->bytes_received));
    json_t *v = json_pack("{s:s}", "result", verify_name(r->verify.state));
    if (r->verify.state == SIM_VERIFY_PASSED || r->verify.state == SIM_VERIFY_FAILED) {
        json_object_set_new(v, "acked", json_integer((json_int_t)r->verify.acked));
        json_object_set_new(v, "missing", json_integer((json_int_t)r->verify.missing));
        json_object_set_new(v, "extra", json_integer((json_int_t)r->verify.extra));
        json_object_set_new(v, "unanswered_stored",
                            json_integer((json_int_t)r->verify.unanswered_stored));
        json_object_set_new(v, "wait_s", json_real(r->verify.wait_s));
    }
    json_object_set_new(o, "verify", v);
    return o;
}
