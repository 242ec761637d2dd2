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

/* HTTP statuses are counted in by_status[status]; index 0 counts requests with no answer. */
#define SIM_STATUS_MAX 600
/* Distinct (status, error code) pairs kept by name; the rest are only counted. */
#define SIM_ERRORS_MAX 32
#define SIM_ERROR_CODE_MAX 40

typedef struct sim_error_count {
    int status;
    char code[SIM_ERROR_CODE_MAX];
    uint64_t n;
} sim_error_count_t;

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
    uint64_t errors_unnamed; /* refusals beyond SIM_ERRORS_MAX distinct codes */
    sim_hist_t latency;      /* microseconds, answered requests only */
} sim_stats_t;

void sim_stats_init(sim_stats_t *s);
/* Counts a refusal by status and error code (code may be NULL or empty: "-"). */
void sim_stats_add_error(sim_stats_t *s, int status, const char *code);
/* Adds src to dst (connected is summed too: each thread counts its own connections). */
void sim_stats_merge(sim_stats_t *dst, const sim_stats_t *src);

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

/* The run as a whole, for the report. */
typedef struct sim_report {
    double elapsed_s;
    size_t devices;
    size_t sensors;
    unsigned threads;
    const char *mode;     /* connection mode */
    const char *scenario; /* "steady" */
    uint32_t post_every_s, interval_s, batch;
    sim_verify_result_t verify;
} sim_report_t;

/* One progress line (no newline) into buf: elapsed, connections, rates since the previous
 * line (cur - prev over dt seconds), refusals by status, p50/p99 of the run so far. */
void sim_stats_progress(char *buf, size_t buflen, double elapsed, double dt, const sim_stats_t *cur,
                        const sim_stats_t *prev);

/* The final summary, human-readable. */
void sim_stats_print_summary(FILE *f, const sim_stats_t *s, const sim_report_t *r);

/* Every figure as a JSON object (owned by the caller). */
json_t *sim_stats_json(const sim_stats_t *s, const sim_report_t *r);

#endif
