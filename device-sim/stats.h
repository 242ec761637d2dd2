#ifndef SIM_STATS_H
#define SIM_STATS_H

/*
 * What a run counts. Each worker thread owns one sim_stats_t and updates it under its own
 * mutex (uncontended except once a second, when the main thread takes a snapshot); the main
 * thread merges snapshots for the progress line and the final report.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "device-sim/hist.h"
#include "device-sim/upgrade.h"

/* HTTP statuses are counted in by_status[status]; index 0 counts requests with no answer. */
#define SIM_STATUS_MAX 600
/* Distinct (status, error code) pairs kept by name; the rest are only counted. */
#define SIM_ERRORS_MAX 32
#define SIM_ERROR_CODE_MAX 40
/* Requests are also counted per 100 ms slot of the run, for the peak rate (the busiest
 * sliding second), over the first 10 minutes (later ones are counted in the last slot). */
#define SIM_RATE_SLOT_MS 100
#define SIM_RATE_SLOTS 6000

/* How a device of the mixed-bad scenario misbehaves (device-sim/bad.h). */
typedef enum sim_bad_kind {
    SIM_BAD_NONE,         /* a good device */
    SIM_BAD_WRONG_CA,     /* a certificate from another CA: the handshake fails */
    SIM_BAD_REVOKED,      /* revoked before the run: 403 device_revoked */
    SIM_BAD_OTHER_SENSOR, /* posts to another device's sensor: 403 not_your_sensor */
    SIM_BAD_MALFORMED,    /* bodies that are not JSON: 400 malformed_json */
    SIM_BAD_FUTURE,       /* a clock a day ahead: 400 timestamp_in_future */
    SIM_BAD_KINDS,
} sim_bad_kind_t;

/* "wrong-ca", "revoked", "other-sensor", "malformed", "future-clock" ("good" for NONE), and
 * the outcome each kind expects. Static, borrowed. */
const char *sim_bad_kind_name(sim_bad_kind_t kind);
const char *sim_bad_kind_expect(sim_bad_kind_t kind);
/* Whether an answer (status 0: none) with this error code is the refusal kind expects. */
bool sim_bad_kind_expected(sim_bad_kind_t kind, int status, const char *code);

typedef struct sim_error_count {
    int status;
    char code[SIM_ERROR_CODE_MAX];
    uint64_t n;
} sim_error_count_t;

/* Firmware upgrades as the meters saw them (device-sim/meter.h). The counters marked "must
 * stay 0" are the double opt-in and the meter's own discipline: any other value fails the run. */
typedef struct sim_upgrade_stats {
    uint64_t offers;             /* distinct offers (meter, release) in heartbeat answers */
    uint64_t offers_flag_off;    /* of which to meters whose flag is off: must stay 0 */
    uint64_t offers_unconsented; /* of which to meters not on --expect-consent: must stay 0 */
    uint64_t log_waits;          /* offers checked again after a refetch of the log */
    uint64_t download_requests;  /* GET /firmware requests sent */
    uint64_t download_ranges;    /* of which resumed with Range: bytes=N- */
    uint64_t download_unasked;   /* requests a meter would have sent without its flag on and
                                  * an accepted offer: never sent, must stay 0 */
    uint64_t served;             /* 200 or 206 answers to a download */
    uint64_t served_unconsented; /* of which to meters not on --expect-consent: must stay 0 */
    uint64_t download_bytes;     /* image bytes taken */
    uint64_t downloads;          /* images received whole (checked afterwards) */
    uint64_t interrupted;        /* downloads cut by --download-drop-after */
    uint64_t withdrawn;          /* downloads answered 403 or 404: the offer was gone */
    uint64_t installed;
    uint64_t reasons[SIM_UPG_REASONS]; /* refusals and failures by reason */
    uint64_t reports_sent;             /* heartbeats carrying a report */
    uint64_t reports_acked;            /* answered 200 */
    uint64_t reports_dropped;          /* refused for good (409 not_offered, 400...) */
    uint64_t first_download_us;        /* since the start; a min when merged, 0: none */
    uint64_t last_download_us;         /* the last whole image; a max when merged */
} sim_upgrade_stats_t;

typedef struct sim_stats {
    uint64_t requests;      /* completed: answered, or failed without an answer */
    uint64_t ok;            /* 2xx */
    uint64_t heartbeats_ok; /* 2xx to a heartbeat */
    uint64_t by_status[SIM_STATUS_MAX];
    uint64_t readings_generated;
    uint64_t readings_acked;    /* in a batch answered 2xx */
    uint64_t readings_refused;  /* in a batch refused for good (4xx other than 429) */
    uint64_t readings_overflow; /* not kept: the sensor's buffer was full */
    uint64_t retries;           /* requests that resent a batch or heartbeat */
    uint64_t bytes_sent;        /* request bodies */
    uint64_t bytes_received;    /* response bodies */
    uint64_t handshakes;        /* TLS handshakes completed */
    uint64_t resumed;           /* of which resumed a session */
    uint64_t conn_errors;       /* requests without an answer (connect, TLS, reset, timeout) */
    uint64_t timeouts;          /* of which timed out */
    int64_t connected;          /* connections open now (a gauge, not merged by sum) */
    sim_error_count_t errors[SIM_ERRORS_MAX];
    size_t nerrors;
    uint64_t errors_unnamed;           /* refusals beyond SIM_ERRORS_MAX distinct codes */
    sim_hist_t latency;                /* microseconds, answered requests only */
    uint32_t per_slot[SIM_RATE_SLOTS]; /* requests completed in each slot of the run */
    /* Backpressure: retries after a 429 or 503 that carried Retry-After, those of them sent
     * before it had elapsed, and resent batches that were not the refused batch (the last two
     * are bugs of the simulator and must stay 0). */
    uint64_t retry_after_waits;
    uint64_t retry_after_early;
    uint64_t retry_changed;
    /* Storm: readings of the backlog (timestamps up to the start), devices that delivered all
     * of theirs, when the last of them did (us since the start; a max, not a sum, when
     * merged), and requests completed before the whole fleet had recovered. */
    uint64_t backlog_readings;
    uint64_t storm_recovered;
    uint64_t recovery_max_us;
    uint64_t storm_requests;
    /* Mixed-bad: the requests of the bad devices by kind (answered, or failed without an
     * answer), those that got the refusal their kind expects, those that got anything else,
     * and 429/503 answers to them (retried: the protocol checks rate and queue before the
     * body, so they are legitimate but say nothing). good_failures: requests of good devices
     * answered with anything but 2xx, 429 and 503, or not answered at all. */
    uint64_t bad_requests[SIM_BAD_KINDS];
    uint64_t bad_expected[SIM_BAD_KINDS];
    uint64_t bad_unexpected[SIM_BAD_KINDS];
    uint64_t bad_deferred[SIM_BAD_KINDS];
    uint64_t good_failures;
    sim_upgrade_stats_t upg;
} sim_stats_t;

void sim_stats_init(sim_stats_t *s);
/* Counts a refusal by status and error code (code may be NULL or empty: "-"). */
void sim_stats_add_error(sim_stats_t *s, int status, const char *code);
/* Counts one completed request at elapsed_us since the start (requests and per_slot). */
void sim_stats_count_request(sim_stats_t *s, uint64_t elapsed_us);
/* Adds src to dst (connected is summed too: each thread counts its own connections;
 * recovery_max_us is a max). */
void sim_stats_merge(sim_stats_t *dst, const sim_stats_t *src);

/* Refusals (a check said no) and failures (the meter could not finish) over every reason. */
uint64_t sim_upgrade_refused(const sim_upgrade_stats_t *u);
uint64_t sim_upgrade_failed(const sim_upgrade_stats_t *u);
/* The sum of the counters that must stay 0: offers to meters whose flag is off or without
 * consent, downloads served to meters without consent, download requests without an offer. */
uint64_t sim_upgrade_violations(const sim_upgrade_stats_t *u);

/* The outcome of --verify, for the report. */
typedef enum sim_verify_state {
    SIM_VERIFY_NOT_RUN,
    SIM_VERIFY_PASSED,
    SIM_VERIFY_FAILED,
    SIM_VERIFY_ERROR, /* could not check (database unreachable, timeout...) */
} sim_verify_state_t;

typedef struct sim_verify_result {
    sim_verify_state_t state;
    uint64_t acked;             /* readings acknowledged */
    uint64_t missing;           /* acknowledged, not stored (or stored with another value) */
    uint64_t extra;             /* stored for the fleet's sensors, never acknowledged */
    uint64_t unanswered_stored; /* stored, sent without a definite answer: allowed */
    double wait_s;              /* how long it waited for the writer */
} sim_verify_result_t;

/* One step of a ramp: its devices and what they got over the step. */
typedef struct sim_ramp_step {
    uint32_t devices;
    double seconds;
    uint64_t requests;
    uint64_t errors; /* answered other than 2xx, or not answered */
    double p50_ms, p99_ms;
} sim_ramp_step_t;

/* Why a ramp ended. */
typedef enum sim_ramp_end {
    SIM_RAMP_END_P99,     /* the last step's p99 exceeded the bound */
    SIM_RAMP_END_ERRORS,  /* the last step's errors exceeded 1% */
    SIM_RAMP_END_FLEET,   /* every device ran within bounds */
    SIM_RAMP_END_STOPPED, /* --duration, --max-requests or a signal came first */
} sim_ramp_end_t;

/* The run as a whole, for the report. */
typedef struct sim_report {
    double elapsed_s;
    size_t devices;
    size_t sensors;
    unsigned threads;
    const char *mode;     /* connection mode */
    const char *scenario; /* "steady", "storm" */
    uint32_t post_every_s, interval_s, batch;
    double warmup_s;   /* the latency histogram leaves out requests sent before this */
    bool storm;        /* print and report the storm figures */
    uint32_t outage_s; /* storm */
    bool mixed_bad;    /* print and report the mixed-bad figures */
    double bad_fraction;
    uint32_t bad_devices[SIM_BAD_KINDS]; /* devices of each kind ([SIM_BAD_NONE]: good) */
    bool ramp;                           /* print and report the steps (borrowed) */
    const sim_ramp_step_t *steps;
    size_t nsteps;
    long knee; /* index of the last step within bounds; -1: none */
    sim_ramp_end_t ramp_end;
    double ramp_every_s, ramp_p99_ms;
    sim_verify_result_t verify;
    /* Upgrades: print and report them; the fleet's settings and the run's bounds. */
    bool upgrade;
    double remote_upgrade_fraction;
    size_t flag_on;            /* meters with remote_upgrade on */
    size_t consent_listed;     /* meters of the run on --expect-consent (0: no list) */
    bool consent_list;         /* a list was given */
    size_t expected;           /* flag on and on the list: the installs the run waits for */
    size_t settled;            /* of them, those whose outcome the service acknowledged */
    size_t installed_expected; /* of them, those that installed */
    double all_installed_s;    /* when the last of them installed; < 0: not all did */
} sim_report_t;

/* One progress line (no newline) into buf: elapsed, connections, rates since the previous
 * line (cur - prev over dt seconds), refusals by status, p50/p99 of the run so far. */
void sim_stats_progress(char *buf, size_t buflen, double elapsed, double dt, const sim_stats_t *cur,
                        const sim_stats_t *prev);

/* Whether a ramp step is within bounds: p99 at most p99_ms, errors at most 1% of requests. */
bool sim_ramp_step_ok(const sim_ramp_step_t *st, double p99_ms);

/* The final summary, human-readable. */
void sim_stats_print_summary(FILE *f, const sim_stats_t *s, const sim_report_t *r);

/* Every figure as a JSON object (owned by the caller). */
json_t *sim_stats_json(const sim_stats_t *s, const sim_report_t *r);

#endif
