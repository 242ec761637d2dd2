#include "device-sim/stats.h"

#include <inttypes.h>
#include <string.h>

const char *sim_bad_kind_name(sim_bad_kind_t kind)
{
    switch (kind) {
    case SIM_BAD_NONE:
        return "good";
    case SIM_BAD_WRONG_CA:
        return "wrong-ca";
    case SIM_BAD_REVOKED:
        return "revoked";
    case SIM_BAD_OTHER_SENSOR:
        return "other-sensor";
    case SIM_BAD_MALFORMED:
        return "malformed";
    case SIM_BAD_FUTURE:
        return "future-clock";
    case SIM_BAD_KINDS:
        break;
    }
    return "?";
}

const char *sim_bad_kind_expect(sim_bad_kind_t kind)
{
    switch (kind) {
    case SIM_BAD_NONE:
        return "2xx";
    case SIM_BAD_WRONG_CA:
        return "handshake refused, no answer";
    case SIM_BAD_REVOKED:
        return "403 device_revoked";
    case SIM_BAD_OTHER_SENSOR:
        return "403 not_your_sensor";
    case SIM_BAD_MALFORMED:
        return "400 malformed_json";
    case SIM_BAD_FUTURE:
        return "400 timestamp_in_future";
    case SIM_BAD_KINDS:
        break;
    }
    return "?";
}

bool sim_bad_kind_expected(sim_bad_kind_t kind, int status, const char *code)
{
    switch (kind) {
    case SIM_BAD_NONE:
        return status >= 200 && status < 300;
    case SIM_BAD_WRONG_CA:
        return status == 0;
    case SIM_BAD_REVOKED:
        return status == 403 && strcmp(code, "device_revoked") == 0;
    case SIM_BAD_OTHER_SENSOR:
        return status == 403 && strcmp(code, "not_your_sensor") == 0;
    case SIM_BAD_MALFORMED:
        return status == 400 && strcmp(code, "malformed_json") == 0;
    case SIM_BAD_FUTURE:
        return status == 400 && strcmp(code, "timestamp_in_future") == 0;
    case SIM_BAD_KINDS:
        break;
    }
    return false;
}

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

void sim_stats_count_request(sim_stats_t *s, uint64_t elapsed_us)
{
    uint64_t slot = elapsed_us / (SIM_RATE_SLOT_MS * 1000u);
    s->requests++;
    s->per_slot[slot < SIM_RATE_SLOTS ? slot : SIM_RATE_SLOTS - 1]++;
}

static void upgrade_merge(sim_upgrade_stats_t *d, const sim_upgrade_stats_t *s)
{
    d->offers += s->offers;
    d->offers_flag_off += s->offers_flag_off;
    d->offers_unconsented += s->offers_unconsented;
    d->log_waits += s->log_waits;
    d->download_requests += s->download_requests;
    d->download_ranges += s->download_ranges;
    d->download_unasked += s->download_unasked;
    d->served += s->served;
    d->served_unconsented += s->served_unconsented;
    d->download_bytes += s->download_bytes;
    d->downloads += s->downloads;
    d->interrupted += s->interrupted;
    d->withdrawn += s->withdrawn;
    d->installed += s->installed;
    for (size_t r = 0; r < SIM_UPG_REASONS; r++)
        d->reasons[r] += s->reasons[r];
    d->reports_sent += s->reports_sent;
    d->reports_acked += s->reports_acked;
    d->reports_dropped += s->reports_dropped;
    if (s->first_download_us > 0 &&
        (d->first_download_us == 0 || s->first_download_us < d->first_download_us))
        d->first_download_us = s->first_download_us;
    if (s->last_download_us > d->last_download_us)
        d->last_download_us = s->last_download_us;
}

uint64_t sim_upgrade_refused(const sim_upgrade_stats_t *u)
{
    uint64_t n = 0;
    for (size_t r = SIM_UPG_OK + 1; r < SIM_UPG_REASONS; r++)
        if (!sim_upgrade_reason_is_failure((sim_upgrade_reason_t)r))
            n += u->reasons[r];
    return n;
}

uint64_t sim_upgrade_failed(const sim_upgrade_stats_t *u)
{
    uint64_t n = 0;
    for (size_t r = SIM_UPG_OK + 1; r < SIM_UPG_REASONS; r++)
        if (sim_upgrade_reason_is_failure((sim_upgrade_reason_t)r))
            n += u->reasons[r];
    return n;
}

uint64_t sim_upgrade_violations(const sim_upgrade_stats_t *u)
{
    return u->offers_flag_off + u->offers_unconsented + u->served_unconsented + u->download_unasked;
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
    for (size_t i = 0; i < SIM_RATE_SLOTS; i++)
        dst->per_slot[i] += src->per_slot[i];
    dst->retry_after_waits += src->retry_after_waits;
    dst->retry_after_early += src->retry_after_early;
    dst->retry_changed += src->retry_changed;
    dst->backlog_readings += src->backlog_readings;
    dst->storm_recovered += src->storm_recovered;
    if (src->recovery_max_us > dst->recovery_max_us)
        dst->recovery_max_us = src->recovery_max_us;
    dst->storm_requests += src->storm_requests;
    for (size_t k = 0; k < SIM_BAD_KINDS; k++) {
        dst->bad_requests[k] += src->bad_requests[k];
        dst->bad_expected[k] += src->bad_expected[k];
        dst->bad_unexpected[k] += src->bad_unexpected[k];
        dst->bad_deferred[k] += src->bad_deferred[k];
    }
    dst->good_failures += src->good_failures;
    upgrade_merge(&dst->upg, &src->upg);
}

/* Requests in the busiest second of the run, over sliding windows of one second that lie
 * within the run (the whole run if it lasted less). */
static uint32_t peak_per_s(const sim_stats_t *s, double elapsed_s)
{
    const size_t win = 1000 / SIM_RATE_SLOT_MS;
    size_t slots = (size_t)(elapsed_s * 1000.0 / SIM_RATE_SLOT_MS);
    uint32_t sum = 0, m = 0;
    if (slots > SIM_RATE_SLOTS)
        slots = SIM_RATE_SLOTS;
    if (slots < win)
        slots = win;
    for (size_t i = 0; i < slots; i++) {
        sum += s->per_slot[i];
        if (i >= win)
            sum -= s->per_slot[i - win];
        if (i + 1 >= win && sum > m)
            m = sum;
    }
    return m;
}

/* Storm: the fleet has recovered once every device delivered its backlog. */
static bool storm_recovered(const sim_stats_t *s, const sim_report_t *r)
{
    return s->storm_recovered == r->devices;
}

static double recovery_s(const sim_stats_t *s)
{
    return (double)s->recovery_max_us / 1e6;
}

/* Requests per second until the fleet recovered (over the whole run if it did not). */
static double sustained_per_s(const sim_stats_t *s, const sim_report_t *r)
{
    double t = storm_recovered(s, r) ? recovery_s(s) : r->elapsed_s;
    return t > 0 ? (double)s->storm_requests / t : 0;
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

bool sim_ramp_step_ok(const sim_ramp_step_t *st, double p99_ms)
{
    /* errors <= 1% of requests, in integers. */
    return st->p99_ms <= p99_ms && st->errors * 100 <= st->requests;
}

static const char *ramp_end_name(sim_ramp_end_t e)
{
    switch (e) {
    case SIM_RAMP_END_P99:
        return "p99 over the bound";
    case SIM_RAMP_END_ERRORS:
        return "errors over 1%";
    case SIM_RAMP_END_FLEET:
        return "every device ran within bounds";
    case SIM_RAMP_END_STOPPED:
        return "stopped before the bounds were reached";
    }
    return "?";
}

static double step_rate(const sim_ramp_step_t *st)
{
    return st->seconds > 0 ? (double)st->requests / st->seconds : 0;
}

static void print_ramp(FILE *f, const sim_report_t *r)
{
    fprintf(f,
            "  ramp           a step every %.1f s, bounds p99 %.2f ms and errors 1%%; ended: %s\n",
            r->ramp_every_s, r->ramp_p99_ms, ramp_end_name(r->ramp_end));
    for (size_t i = 0; i < r->nsteps; i++) {
        const sim_ramp_step_t *st = &r->steps[i];
        fprintf(f,
                "    step %3zu     devices %" PRIu32 ", %.1f req/s, p50 %.2f ms, p99 %.2f ms, "
                "errors %" PRIu64 " of %" PRIu64 "%s\n",
                i + 1, st->devices, step_rate(st), st->p50_ms, st->p99_ms, st->errors, st->requests,
                sim_ramp_step_ok(st, r->ramp_p99_ms) ? "" : " (out of bounds)");
    }
    if (r->knee < 0) {
        fprintf(f, "  knee           none: no step was within bounds\n");
        return;
    }
    const sim_ramp_step_t *k = &r->steps[r->knee];
    fprintf(f, "  knee           step %ld: %" PRIu32 " devices, %.1f req/s, p99 %.2f ms\n",
            r->knee + 1, k->devices, step_rate(k), k->p99_ms);
}

static json_t *ramp_json(const sim_report_t *r)
{
    json_t *steps = json_array();
    for (size_t i = 0; i < r->nsteps; i++) {
        const sim_ramp_step_t *st = &r->steps[i];
        json_array_append_new(
            steps, json_pack("{s:i, s:f, s:I, s:f, s:I, s:f, s:f, s:b}", "devices",
                             (int)st->devices, "seconds", st->seconds, "requests",
                             (json_int_t)st->requests, "requests_per_s", step_rate(st), "errors",
                             (json_int_t)st->errors, "p50_ms", st->p50_ms, "p99_ms", st->p99_ms,
                             "within_bounds", sim_ramp_step_ok(st, r->ramp_p99_ms)));
    }
    json_t *knee = json_null();
    if (r->knee >= 0) {
        const sim_ramp_step_t *k = &r->steps[r->knee];
        json_decref(knee);
        knee = json_pack("{s:i, s:i, s:f, s:f}", "step", (int)r->knee + 1, "devices",
                         (int)k->devices, "requests_per_s", step_rate(k), "p99_ms", k->p99_ms);
    }
    return json_pack("{s:f, s:f, s:s, s:o, s:o}", "every_s", r->ramp_every_s, "p99_bound_ms",
                     r->ramp_p99_ms, "ended", ramp_end_name(r->ramp_end), "steps", steps, "knee",
                     knee);
}

/* Whole images per second, between the first download request's answer and the last image. */
static double images_per_s(const sim_upgrade_stats_t *u)
{
    double span = (double)(u->last_download_us - u->first_download_us) / 1e6;
    if (u->downloads == 0)
        return 0;
    return span > 0.001 ? (double)u->downloads / span : (double)u->downloads / 0.001;
}

static void print_upgrade(FILE *f, const sim_stats_t *s, const sim_report_t *r)
{
    const sim_upgrade_stats_t *u = &s->upg;

    fprintf(f, "  upgrade        remote_upgrade on for %zu of %zu meters (fraction %.3g)",
            r->flag_on, r->devices, r->remote_upgrade_fraction);
    if (r->consent_list)
        fprintf(f, ", %zu with consent, %zu expected to install", r->consent_listed, r->expected);
    fputc('\n', f);
    fprintf(f,
            "    offered      %" PRIu64 ", downloaded %" PRIu64 ", installed %" PRIu64
            ", refused %" PRIu64 ", failed %" PRIu64 ", withdrawn %" PRIu64 "\n",
            u->offers, u->downloads, u->installed, sim_upgrade_refused(u), sim_upgrade_failed(u),
            u->withdrawn);
    for (size_t k = SIM_UPG_OK + 1; k < SIM_UPG_REASONS; k++)
        if (u->reasons[k] > 0)
            fprintf(f, "                 %s %s: %" PRIu64 "\n",
                    sim_upgrade_reason_is_failure((sim_upgrade_reason_t)k) ? "failed" : "refused",
                    sim_upgrade_reason_name((sim_upgrade_reason_t)k), u->reasons[k]);
    fprintf(f,
            "    downloads    requests %" PRIu64 " (resumed with Range %" PRIu64
            ", interrupted on purpose %" PRIu64 "), served %" PRIu64 ", %" PRIu64
            " bytes, %.1f images/s\n",
            u->download_requests, u->download_ranges, u->interrupted, u->served, u->download_bytes,
            images_per_s(u));
    fprintf(f,
            "    reports      sent %" PRIu64 ", acknowledged %" PRIu64 ", refused %" PRIu64
            "; log refetch waits %" PRIu64 "\n",
            u->reports_sent, u->reports_acked, u->reports_dropped, u->log_waits);
    if (r->consent_list) {
        fprintf(f, "    campaign     %zu of %zu expected meters reported, %zu installed; ",
                r->settled, r->expected, r->installed_expected);
        if (r->all_installed_s >= 0)
            fprintf(f, "all installed after %.2f s\n", r->all_installed_s);
        else
            fprintf(f, "not all installed\n");
    }
    fprintf(f,
            "    double opt-in offers to meters with the flag off %" PRIu64
            ", without consent %" PRIu64 "; images served without consent %" PRIu64
            "; downloads without an offer %" PRIu64 "%s\n",
            u->offers_flag_off, u->offers_unconsented, u->served_unconsented, u->download_unasked,
            sim_upgrade_violations(u) > 0 ? "  VIOLATED" : "  (held)");
}

static json_t *upgrade_json(const sim_stats_t *s, const sim_report_t *r)
{
    const sim_upgrade_stats_t *u = &s->upg;
    json_t *reasons = json_object();

    for (size_t k = SIM_UPG_OK + 1; k < SIM_UPG_REASONS; k++)
        if (u->reasons[k] > 0)
            json_object_set_new(reasons, sim_upgrade_reason_name((sim_upgrade_reason_t)k),
                                json_integer((json_int_t)u->reasons[k]));
    json_t *o =
        json_pack("{s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "remote_upgrade_fraction",
                  r->remote_upgrade_fraction, "flag_on", (json_int_t)r->flag_on, "offered",
                  (json_int_t)u->offers, "downloaded", (json_int_t)u->downloads, "installed",
                  (json_int_t)u->installed, "refused", (json_int_t)sim_upgrade_refused(u), "failed",
                  (json_int_t)sim_upgrade_failed(u), "withdrawn", (json_int_t)u->withdrawn,
                  "log_waits", (json_int_t)u->log_waits, "reasons", reasons);
    json_object_set_new(
        o, "downloads",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:f}", "requests", (json_int_t)u->download_requests,
                  "resumed", (json_int_t)u->download_ranges, "interrupted",
                  (json_int_t)u->interrupted, "served", (json_int_t)u->served, "bytes",
                  (json_int_t)u->download_bytes, "images_per_s", images_per_s(u)));
    json_object_set_new(o, "reports",
                        json_pack("{s:I, s:I, s:I}", "sent", (json_int_t)u->reports_sent,
                                  "acknowledged", (json_int_t)u->reports_acked, "refused",
                                  (json_int_t)u->reports_dropped));
    json_object_set_new(o, "violations",
                        json_pack("{s:I, s:I, s:I, s:I, s:I}", "total",
                                  (json_int_t)sim_upgrade_violations(u), "offers_flag_off",
                                  (json_int_t)u->offers_flag_off, "offers_without_consent",
                                  (json_int_t)u->offers_unconsented, "served_without_consent",
                                  (json_int_t)u->served_unconsented, "downloads_without_offer",
                                  (json_int_t)u->download_unasked));
    if (r->consent_list) {
        json_t *c =
            json_pack("{s:I, s:I, s:I, s:I}", "consent_listed", (json_int_t)r->consent_listed,
                      "expected", (json_int_t)r->expected, "settled", (json_int_t)r->settled,
                      "installed", (json_int_t)r->installed_expected);
        /* null until every expected meter installed. */
        json_object_set_new(c, "all_installed_s",
                            r->all_installed_s >= 0 ? json_real(r->all_installed_s) : json_null());
        json_object_set_new(o, "campaign", c);
    }
    return o;
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
    if (r->warmup_s > 0)
        fprintf(f, "                 (requests sent in the first %.1f s left out: warm-up)\n",
                r->warmup_s);
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
    fprintf(f,
            "  backpressure   429 %" PRIu64 ", 503 %" PRIu64 ", retries after Retry-After %" PRIu64
            " (sent early %" PRIu64 "), resent batches changed %" PRIu64 "\n",
            s->by_status[429], s->by_status[503], s->retry_after_waits, s->retry_after_early,
            s->retry_changed);
    if (r->storm) {
        fprintf(f, "  storm          outage %u s, backlog %" PRIu64 " readings, ", r->outage_s,
                s->backlog_readings);
        if (storm_recovered(s, r))
            fprintf(f, "recovered in %.2f s\n", recovery_s(s));
        else
            fprintf(f, "not recovered: %" PRIu64 " of %zu devices delivered their backlog\n",
                    s->storm_recovered, r->devices);
        fprintf(f, "  storm rates    peak %" PRIu32 " req/s, sustained %.1f req/s until recovery\n",
                peak_per_s(s, r->elapsed_s), sustained_per_s(s, r));
    }
    if (r->mixed_bad) {
        uint32_t nbad = 0;
        for (size_t k = SIM_BAD_WRONG_CA; k < SIM_BAD_KINDS; k++)
            nbad += r->bad_devices[k];
        fprintf(f,
                "  mixed-bad      %" PRIu32 " bad devices of %zu (fraction %.3g); good devices: "
                "%" PRIu64 " answers other than 2xx, 429, 503\n",
                nbad, r->devices, r->bad_fraction, s->good_failures);
        for (size_t k = SIM_BAD_WRONG_CA; k < SIM_BAD_KINDS; k++)
            fprintf(f,
                    "    %-12s devices %" PRIu32 ", requests %" PRIu64
                    ", expected %s: got expected %" PRIu64 ", got unexpected %" PRIu64
                    " (429/503 retried %" PRIu64 ")\n",
                    sim_bad_kind_name((sim_bad_kind_t)k), r->bad_devices[k], s->bad_requests[k],
                    sim_bad_kind_expect((sim_bad_kind_t)k), s->bad_expected[k],
                    s->bad_unexpected[k], s->bad_deferred[k]);
    }
    if (r->ramp)
        print_ramp(f, r);
    if (r->upgrade)
        print_upgrade(f, s, r);
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
    json_object_set_new(json_object_get(o, "settings"), "warmup_s", json_real(r->warmup_s));
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
    json_object_set_new(o, "backpressure",
                        json_pack("{s:I, s:I, s:I, s:I, s:I}", "status_429",
                                  (json_int_t)s->by_status[429], "status_503",
                                  (json_int_t)s->by_status[503], "retry_after_waits",
                                  (json_int_t)s->retry_after_waits, "retry_after_early",
                                  (json_int_t)s->retry_after_early, "resent_changed",
                                  (json_int_t)s->retry_changed));
    if (r->storm) {
        json_t *st = json_pack(
            "{s:i, s:I, s:b, s:I, s:I, s:I, s:f}", "outage_s", (int)r->outage_s, "backlog_readings",
            (json_int_t)s->backlog_readings, "recovered", storm_recovered(s, r),
            "devices_recovered", (json_int_t)s->storm_recovered, "peak_requests_per_s",
            (json_int_t)peak_per_s(s, r->elapsed_s), "requests_until_recovery",
            (json_int_t)s->storm_requests, "sustained_requests_per_s", sustained_per_s(s, r));
        /* null while the fleet has not recovered: there is no recovery time to report. */
        json_object_set_new(st, "recovery_s",
                            storm_recovered(s, r) ? json_real(recovery_s(s)) : json_null());
        json_object_set_new(o, "storm", st);
    }
    if (r->mixed_bad) {
        json_t *kinds = json_object();
        for (size_t k = SIM_BAD_WRONG_CA; k < SIM_BAD_KINDS; k++)
            json_object_set_new(kinds, sim_bad_kind_name((sim_bad_kind_t)k),
                                json_pack("{s:i, s:I, s:s, s:I, s:I, s:I}", "devices",
                                          (int)r->bad_devices[k], "requests",
                                          (json_int_t)s->bad_requests[k], "expected",
                                          sim_bad_kind_expect((sim_bad_kind_t)k), "got_expected",
                                          (json_int_t)s->bad_expected[k], "got_unexpected",
                                          (json_int_t)s->bad_unexpected[k], "retried_429_503",
                                          (json_int_t)s->bad_deferred[k]));
        json_object_set_new(o, "mixed_bad",
                            json_pack("{s:f, s:i, s:I, s:o}", "bad_fraction", r->bad_fraction,
                                      "good_devices", (int)r->bad_devices[SIM_BAD_NONE],
                                      "good_failures", (json_int_t)s->good_failures, "kinds",
                                      kinds));
    }
    if (r->ramp)
        json_object_set_new(o, "ramp", ramp_json(r));
    if (r->upgrade)
        json_object_set_new(o, "upgrade", upgrade_json(s, r));
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
