/*
 * meterhub-sim: parses the command line, loads or provisions the fleet, starts one worker
 * (event loop) per thread with a slice of the devices, prints progress every second, then
 * merges the figures, verifies if asked and reports.
 */
#include "device-sim/sim_internal.h"
#include "device-sim/bad.h"
#include "device-sim/counters.h"
#include "device-sim/fleet_upgrade.h"
#include "device-sim/ramp.h"
#include "device-sim/release_fetch.h"
#include "device-sim/verify.h"

#include "common/alloc.h"
#include "common/log.h"
#include "common/release.h"

#include <arpa/inet.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

/* How long a run waits after revoking its revoked-kind devices (mixed-bad). */
#define SIM_BAD_REVOKE_WAIT_MS 1500

static sim_run_t *signal_run;

static void on_signal(int sig)
{
    (void)sig;
    /* Only an atomic store: the workers notice at their next tick and finish cleanly. */
    if (signal_run != NULL)
        atomic_store(&signal_run->stop, true);
}

/* Thousands of devices are thousands of sockets. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        mh_log(MH_LOG_WARN, "cannot raise the open file limit to %llu",
               (unsigned long long)rl.rlim_max);
}

static bool is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return strcmp(host, "localhost") == 0;
}

/* Host and port of the target URL into run. */
static int parse_target(sim_run_t *run, const char *url)
{
    struct evhttp_uri *uri = evhttp_uri_parse(url);
    const char *host = uri ? evhttp_uri_get_host(uri) : NULL;
    int port = uri ? evhttp_uri_get_port(uri) : -1;
    struct in6_addr a6;
    int rc = -1;

    if (host == NULL || host[0] == '\0' || strlen(host) >= sizeof(run->host)) {
        fprintf(stderr, "meterhub-sim: --target: cannot parse '%.100s'\n", url);
        goto out;
    }
    snprintf(run->host, sizeof(run->host), "%s", host);
    run->port = port < 0 ? 443 : (uint16_t)port;
    run->host_is_ip = inet_pton(AF_INET, host, &a6) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
    if (strchr(host, ':') != NULL)
        snprintf(run->host_header, sizeof(run->host_header), "[%s]:%u", host, run->port);
    else
        snprintf(run->host_header, sizeof(run->host_header), "%s:%u", host, run->port);
    if (!is_loopback(host))
        fprintf(stderr,
                "meterhub-sim: warning: the target %s is not a loopback address: this is load "
                "on a real service\n",
                host);
    rc = 0;
out:
    if (uri != NULL)
        evhttp_uri_free(uri);
    return rc;
}

/*
 * Firmware: the pinned key, the first copy of the public log, each meter's flag and the
 * consent list, into run->upgrade (whose lock is initialised by the caller). The meters take
 * offers only once a key and a log are loaded. Returns 0, or -1 (logged).
 */
static int upgrade_setup(sim_run_t *run, const sim_options_t *o, const sim_fleet_t *fleet,
                         uint8_t **flags, uint8_t **consent, size_t *consent_listed)
{
    sim_upgrade_run_t *u = &run->upgrade;
    char err[160];
    size_t others = 0;

    *flags = mh_calloc(run->ndevices ? run->ndevices : 1, 1);
    for (size_t d = 0; d < run->ndevices; d++)
        (*flags)[d] = sim_remote_upgrade_flag(fleet->devices[d].id, o->remote_upgrade);
    u->flag = *flags;
    if (o->expect_consent != NULL) {
        if (sim_consent_load(o->expect_consent, fleet, run->ndevices, consent, consent_listed,
                             &others) != 0)
            return -1;
        if (others > 0)
            mh_log(MH_LOG_WARN, "%s: %zu device ids not in this run, ignored", o->expect_consent,
                   others);
        u->consent = *consent;
        for (size_t d = 0; d < run->ndevices; d++)
            if ((*flags)[d] && (*consent)[d])
                u->expected++;
        atomic_store(&u->pending, u->expected);
    }
    if (o->release_key == NULL || o->release_log == NULL)
        return 0;
    u->key = mh_release_load_public(o->release_key, err, sizeof(err));
    if (u->key == NULL) {
        mh_log(MH_LOG_ERROR, "--release-key %s: %s", o->release_key, err);
        return -1;
    }
    u->log_refetch = sim_release_source_is_url(o->release_log);
    int rc = u->log_refetch ? sim_release_log_fetch(o->release_log, o->api_ca, o->timeout_s,
                                                    &u->log, &u->log_lock)
                            : sim_release_log_load_file(o->release_log, &u->log);
    if (rc != 0)
        return -1;
    if (u->log.broken)
        mh_log(MH_LOG_WARN, "release log: the chain breaks at seq %lld (%s)",
               (long long)u->log.broken_seq, u->log.broken_why);
    atomic_store(&u->log_fetch_ok, true);
    u->enabled = true;
    return 0;
}

/* Main loop: fetches the log again when a worker asked since the last fetch began. */
static void upgrade_poll(sim_run_t *run, const sim_options_t *o)
{
    sim_upgrade_run_t *u = &run->upgrade;
    uint64_t asked = atomic_load(&u->log_asked);

    if (!u->enabled || !u->log_refetch || asked <= atomic_load(&u->log_served))
        return;
    bool ok =
        sim_release_log_fetch(o->release_log, o->api_ca, o->timeout_s, &u->log, &u->log_lock) == 0;
    atomic_store(&u->log_fetch_ok, ok);
    atomic_store(&u->log_served, asked);
}

static void merged(sim_worker_t **w, size_t n, sim_stats_t *out, sim_stats_t *tmp)
{
    sim_stats_init(out);
    for (size_t i = 0; i < n; i++) {
        sim_worker_snapshot(w[i], tmp);
        sim_stats_merge(out, tmp);
    }
}

static int write_json(const char *path, const sim_stats_t *s, const sim_report_t *r)
{
    json_t *o = sim_stats_json(s, r);
    int rc = o ? json_dump_file(o, path, JSON_INDENT(2)) : -1;
    json_decref(o);
    if (rc != 0)
        mh_log(MH_LOG_ERROR, "cannot write %s", path);
    return rc;
}

int main(int argc, char **argv)
{
    sim_options_t opts;
    char err[256];
    sim_run_t run;
    sim_fleet_t *fleet = NULL;
    sim_bad_t *bad = NULL;
    double *counters = NULL;
    sim_ramp_t *ramp = NULL;
    uint8_t *flags = NULL, *consent = NULL;
    size_t consent_listed = 0;
    bool log_lock = false;
    sim_worker_t **workers = NULL;
    size_t nworkers = 0;
    sim_stats_t *total = mh_malloc(sizeof(*total)), *prev = mh_malloc(sizeof(*prev)),
                *tmp = mh_malloc(sizeof(*tmp));
    sim_report_t report;
    mh_log_level_t level;
    int status = 1;

    memset(&run, 0, sizeof(run));
    mh_log_init("meterhub-sim");
    switch (sim_options_parse(argc, argv, &opts, err, sizeof(err))) {
    case SIM_PARSE_HELP:
        fputs(sim_options_usage(), stdout);
        status = 0;
        goto out;
    case SIM_PARSE_ERROR:
        fprintf(stderr, "meterhub-sim: %s\n", err);
        status = 2;
        goto out;
    case SIM_PARSE_OK:
        break;
    }
    if (mh_log_parse_level(opts.log_level, &level) != 0) {
        fprintf(stderr, "meterhub-sim: --log-level: unknown level '%.40s'\n", opts.log_level);
        status = 2;
        goto out;
    }
    mh_log_set_level(level);
    mh_log_capture_libevent();
    run.opts = &opts;
    if (parse_target(&run, opts.target) != 0) {
        status = 2;
        goto out;
    }
    if (evthread_use_pthreads() != 0) {
        mh_log(MH_LOG_ERROR, "evthread_use_pthreads failed");
        goto out;
    }
    raise_nofile();
    /* A peer that closed first must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);

    if (opts.provision)
        fleet = sim_fleet_provision(opts.pg_uri, opts.pki_dir, opts.account, opts.devices,
                                    opts.sensors_per_device, opts.fleet_dir);
    else
        fleet =
            sim_fleet_load(opts.fleet_dir ? opts.fleet_dir : ".", opts.fleet_json, opts.devices);
    if (fleet == NULL)
        goto out;
    if (opts.devices > fleet->count) {
        fprintf(stderr, "meterhub-sim: --devices %u but the fleet has %zu\n", opts.devices,
                fleet->count);
        status = 2;
        goto out;
    }
    run.fleet = fleet;
    run.ndevices = opts.devices ? opts.devices : fleet->count;
    /* A fleet run again continues its meters' counters from what the service stored, as real
     * meters do, rather than restarting them below it (which ingest refuses as decreasing). */
    if (!opts.provision && opts.pg_uri != NULL) {
        if (sim_counters_load(opts.pg_uri, fleet, run.ndevices, &counters, &run.counters_stride) ==
            0)
            run.counters = counters;
        else
            mh_log(MH_LOG_WARN, "counters start from their profiles: PostgreSQL unavailable");
    }
    if (opts.scenario == SIM_SCENARIO_MIXED_BAD) {
        bad = sim_bad_new(fleet, run.ndevices, opts.bad_fraction, opts.seed);
        if (bad == NULL || sim_bad_revoke(bad, fleet, opts.pg_uri) != 0)
            goto out;
        /* Ingest notices a revocation at its next directory refresh (every second by
         * default): only then is 403 device_revoked the answer to expect. */
        if (bad->devices[SIM_BAD_REVOKED] > 0)
            usleep(SIM_BAD_REVOKE_WAIT_MS * 1000);
        run.bad = bad;
    }

    if (pthread_rwlock_init(&run.upgrade.log_lock, NULL) != 0) {
        mh_log(MH_LOG_ERROR, "pthread_rwlock_init failed");
        goto out;
    }
    log_lock = true;
    if (upgrade_setup(&run, &opts, fleet, &flags, &consent, &consent_listed) != 0)
        goto out;

    unsigned threads = opts.threads;
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
    }
    if (threads > run.ndevices)
        threads = (unsigned)run.ndevices;

    struct timeval tv;
    gettimeofday(&tv, NULL);
    run.t0_mono_us = sim_mono_us();
    run.warmup_us = (uint64_t)(opts.warmup_s * 1e6);
    run.t0_wall = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    run.start_ts = (int64_t)tv.tv_sec;
    if (opts.post_every_s == 0)
        run.start_ts -= (int64_t)opts.backfill_days * 86400;

    if (opts.scenario == SIM_SCENARIO_RAMP)
        ramp = sim_ramp_new(&run, threads);
    workers = mh_calloc(threads, sizeof(*workers));
    for (unsigned i = 0; i < threads; i++) {
        size_t first = run.ndevices * i / threads, end = run.ndevices * (i + 1) / threads;
        workers[i] = sim_worker_new(&run, i, first, end - first);
        if (workers[i] == NULL)
            goto out;
        nworkers++;
    }
    /* The workers' clocks start now, not before provisioning and key loading. */
    run.t0_mono_us = sim_mono_us();
    gettimeofday(&tv, NULL);
    run.t0_wall = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    if (opts.post_every_s > 0)
        run.start_ts = (int64_t)tv.tv_sec;
    if (opts.scenario == SIM_SCENARIO_STORM) {
        /* The power comes back now: every device holds the readings of the outage. */
        run.storm_end_ts = (int64_t)tv.tv_sec;
        run.start_ts = run.storm_end_ts - (int64_t)opts.outage_s;
        atomic_store(&run.storm_pending, run.ndevices);
    }

    signal_run = &run;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    for (size_t i = 0; i < nworkers; i++)
        if (sim_worker_start(workers[i]) != 0) {
            atomic_store(&run.stop, true);
            goto out;
        }

    sim_stats_init(prev);
    double last = 0;
    for (;;) {
        bool all_done = true;
        for (size_t i = 0; i < nworkers; i++)
            all_done = all_done && sim_worker_done(workers[i]);
        if (all_done)
            break;
        usleep(50 * 1000);
        if (ramp != NULL)
            sim_ramp_poll(ramp, workers, nworkers);
        upgrade_poll(&run, &opts);
        /* A campaign ends once every meter it waits for has an acknowledged outcome. */
        if (opts.scenario == SIM_SCENARIO_UPGRADE && run.upgrade.expected > 0 &&
            atomic_load(&run.upgrade.pending) == 0)
            atomic_store(&run.stop, true);
        double el = (double)(sim_mono_us() - run.t0_mono_us) / 1e6;
        if (el - last >= 1.0) {
            char line[512];
            merged(workers, nworkers, total, tmp);
            sim_stats_progress(line, sizeof(line), el, el - last, total, prev);
            if (!opts.quiet)
                fprintf(stderr, "%s\n", line);
            *prev = *total;
            last = el;
        }
    }
    int worker_rc = 0;
    for (size_t i = 0; i < nworkers; i++)
        if (sim_worker_join(workers[i]) != 0)
            worker_rc = -1;
    double elapsed = (double)(sim_mono_us() - run.t0_mono_us) / 1e6;
    merged(workers, nworkers, total, tmp);

    memset(&report, 0, sizeof(report));
    report.elapsed_s = elapsed;
    report.devices = run.ndevices;
    for (size_t d = 0; d < run.ndevices; d++)
        report.sensors += fleet->devices[d].nsensors;
    report.threads = threads;
    report.mode = sim_conn_mode_name(opts.conn_mode);
    report.scenario = sim_scenario_name(opts.scenario);
    report.storm = opts.scenario == SIM_SCENARIO_STORM;
    report.outage_s = opts.outage_s;
    report.mixed_bad = bad != NULL;
    report.bad_fraction = opts.bad_fraction;
    if (bad != NULL)
        memcpy(report.bad_devices, bad->devices, sizeof(report.bad_devices));
    if (ramp != NULL)
        sim_ramp_report(ramp, &report);
    report.post_every_s = opts.post_every_s;
    report.interval_s = opts.interval_s;
    report.batch = opts.batch;
    report.warmup_s = opts.warmup_s;
    report.verify.state = SIM_VERIFY_NOT_RUN;
    report.upgrade =
        opts.scenario == SIM_SCENARIO_UPGRADE || opts.remote_upgrade > 0 || total->upg.offers > 0;
    report.remote_upgrade_fraction = opts.remote_upgrade;
    for (size_t d = 0; d < run.ndevices; d++)
        report.flag_on += flags[d];
    report.consent_list = consent != NULL;
    report.consent_listed = consent_listed;
    report.expected = run.upgrade.expected;
    report.settled = run.upgrade.expected - atomic_load(&run.upgrade.pending);
    report.installed_expected = atomic_load(&run.upgrade.installed);
    uint64_t all_us = atomic_load(&run.upgrade.all_installed_us);
    report.all_installed_s = all_us > 0 ? (double)all_us / 1e6 : -1;
    if (opts.verify) {
        const sim_ack_log_t **acked = mh_calloc(nworkers, sizeof(*acked));
        const sim_ack_log_t **unanswered = mh_calloc(nworkers, sizeof(*unanswered));
        for (size_t i = 0; i < nworkers; i++) {
            acked[i] = sim_worker_acked(workers[i]);
            unanswered[i] = sim_worker_unanswered(workers[i]);
        }
        if (!opts.quiet)
            fprintf(stderr, "verifying against PostgreSQL (up to %u s)...\n",
                    opts.verify_timeout_s);
        int64_t to_ts = run.start_ts;
        for (size_t i = 0; i < nworkers; i++)
            if (sim_worker_max_ts(workers[i]) > to_ts)
                to_ts = sim_worker_max_ts(workers[i]);
        sim_verify_run(opts.pg_uri, fleet, run.ndevices, bad ? bad->kind : NULL, run.start_ts,
                       to_ts, acked, unanswered, nworkers, opts.verify_timeout_s, &report.verify);
        free(acked);
        free(unanswered);
    }
    sim_stats_print_summary(stdout, total, &report);
    fflush(stdout);
    int json_rc = opts.json_path ? write_json(opts.json_path, total, &report) : 0;

    status = 0;
    if (total->ok == 0) {
        fprintf(stderr, "meterhub-sim: no request succeeded\n");
        status = 1;
    }
    if (opts.verify && report.verify.state != SIM_VERIFY_PASSED)
        status = 1;
    if (worker_rc != 0 || json_rc != 0)
        status = 1;
    /* Either would be a bug of the simulator's own backpressure handling. */
    if (total->retry_after_early > 0 || total->retry_changed > 0) {
        fprintf(stderr, "meterhub-sim: a retry ignored Retry-After or changed its batch\n");
        status = 1;
    }
    if (sim_upgrade_violations(&total->upg) > 0) {
        fprintf(stderr,
                "meterhub-sim: the double opt-in did not hold: %" PRIu64
                " offers to meters with the flag off, %" PRIu64 " without consent, %" PRIu64
                " images served without consent, %" PRIu64 " downloads without an offer\n",
                total->upg.offers_flag_off, total->upg.offers_unconsented,
                total->upg.served_unconsented, total->upg.download_unasked);
        status = 1;
    }
    if (opts.scenario == SIM_SCENARIO_UPGRADE && report.settled < report.expected) {
        fprintf(stderr,
                "meterhub-sim: upgrade: %zu of %zu expected meters have no acknowledged "
                "outcome\n",
                report.expected - report.settled, report.expected);
        status = 1;
    }
    if (bad != NULL) {
        uint64_t unexpected = 0;
        for (size_t k = 0; k < SIM_BAD_KINDS; k++)
            unexpected += total->bad_unexpected[k];
        if (unexpected > 0 || total->good_failures > 0) {
            fprintf(stderr,
                    "meterhub-sim: mixed-bad: %" PRIu64 " unexpected answers to bad devices, "
                    "%" PRIu64 " failures of good devices\n",
                    unexpected, total->good_failures);
            status = 1;
        }
    }
out:
    signal_run = NULL;
    for (size_t i = 0; i < nworkers; i++)
        sim_worker_free(workers[i]);
    free(workers);
    sim_bad_free(bad);
    free(counters);
    sim_ramp_free(ramp);
    free(flags);
    free(consent);
    EVP_PKEY_free(run.upgrade.key);
    sim_release_log_dispose(&run.upgrade.log);
    if (log_lock)
        pthread_rwlock_destroy(&run.upgrade.log_lock);
    sim_fleet_free(fleet);
    free(total);
    free(prev);
    free(tmp);
    return status;
}
