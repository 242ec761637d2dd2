#ifndef SIM_HIST_H
#define SIM_HIST_H

/*
 * Latency histogram with log-linear buckets (HdrHistogram-style): values in microseconds from
 * 1 us to about 1 hour with a relative error below 1/SIM_HIST_SUB (about 1.6 %). Fixed size,
 * no allocation after init, O(1) record. One histogram per thread; merge them to report.
 * Not thread-safe.
 */

#include <stdint.h>

#define SIM_HIST_SUB 64 /* linear sub-buckets per power of two */
#define SIM_HIST_POW 32 /* powers of two covered */

typedef struct sim_hist {
    uint64_t counts[SIM_HIST_POW * SIM_HIST_SUB];
    uint64_t total;
    uint64_t min, max; /* exact, microseconds */
    double sum;
} sim_hist_t;

void sim_hist_init(sim_hist_t *h);
/* Records one value (microseconds). */
void sim_hist_record(sim_hist_t *h, uint64_t usec);
/* Adds every count of src to dst. */
void sim_hist_merge(sim_hist_t *dst, const sim_hist_t *src);
/* Removes from h what an earlier snapshot of it held, leaving what was recorded since; min and
 * max stay those of h (a bound on the interval's, not exact). */
void sim_hist_sub(sim_hist_t *h, const sim_hist_t *earlier);
/* The value at quantile q in [0, 1] (upper edge of its bucket, clamped to max); 0 if empty. */
uint64_t sim_hist_quantile(const sim_hist_t *h, double q);
double sim_hist_mean(const sim_hist_t *h);

#endif
