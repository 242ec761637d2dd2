/*
 * Log-linear histogram. Row 0 holds the values 0..SIM_HIST_SUB-1 exactly; row k >= 1 splits
 * [SUB << (k-1), SUB << k) into SUB equal buckets of width 2^(k-1), so a bucket is never wider
 * than 1/SUB of its lower edge. With SUB = 64 (2^6) and POW = 32 rows that reaches 2^37 us
 * (about 38 hours); anything larger is counted in the last bucket, while min, max and the sum
 * stay exact.
 */
#include "device-sim/hist.h"

#include <string.h>

#define SUB_BITS 6 /* log2(SIM_HIST_SUB) */
#define NBUCKETS (SIM_HIST_POW * SIM_HIST_SUB)

_Static_assert(SIM_HIST_SUB == 1 << SUB_BITS, "SUB_BITS must match SIM_HIST_SUB");

static unsigned bucket_of(uint64_t v)
{
    if (v < SIM_HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
    unsigned row = msb - SUB_BITS + 1;
    if (row >= SIM_HIST_POW)
        return NBUCKETS - 1;
    /* The SUB_BITS bits below the leading one pick the sub-bucket. */
    unsigned sub = (unsigned)(v >> (msb - SUB_BITS)) - SIM_HIST_SUB;
    return row * SIM_HIST_SUB + sub;
}

/* Largest value that falls into bucket i. */
static uint64_t upper_edge(unsigned i)
{
    unsigned row = i / SIM_HIST_SUB, sub = i % SIM_HIST_SUB;
    if (row == 0)
        return sub;
    uint64_t width = (uint64_t)1 << (row - 1);
    return ((uint64_t)(SIM_HIST_SUB + sub) << (row - 1)) + width - 1;
}

void sim_hist_init(sim_hist_t *h)
{
    /* min and max read 0 while the histogram is empty; total says whether they are real. */
    memset(h, 0, sizeof(*h));
}

void sim_hist_record(sim_hist_t *h, uint64_t usec)
{
    h->counts[bucket_of(usec)]++;
    if (h->total == 0 || usec < h->min)
        h->min = usec;
    if (h->total == 0 || usec > h->max)
        h->max = usec;
    h->total++;
    h->sum += (double)usec;
}

void sim_hist_sub(sim_hist_t *h, const sim_hist_t *earlier)
{
    for (unsigned i = 0; i < NBUCKETS; i++)
        h->counts[i] -= earlier->counts[i];
    h->total -= earlier->total;
    h->sum -= earlier->sum;
}

void sim_hist_merge(sim_hist_t *dst, const sim_hist_t *src)
{
    if (src->total == 0)
        return;
    for (unsigned i = 0; i < NBUCKETS; i++)
        dst->counts[i] += src->counts[i];
    if (dst->total == 0 || src->min < dst->min)
        dst->min = src->min;
    if (dst->total == 0 || src->max > dst->max)
        dst->max = src->max;
    dst->total += src->total;
    dst->sum += src->sum;
}

uint64_t sim_hist_quantile(const sim_hist_t *h, double q)
{
    if (h->total == 0)
        return 0;
    /* !(q > 0) also catches NaN. */
    if (!(q > 0))
        q = 0;
    if (q > 1)
        q = 1;
    /* The value of rank ceil(q * total) (1-based), the usual nearest-rank definition; q = 0
     * asks for the smallest value. The double product is exact enough: total < 2^53. */
    double r = q * (double)h->total;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank == 0)
        rank = 1;
    if (rank > h->total)
        rank = h->total;
    /* The extremes are known exactly (the top one through the clamp to max below). */
    if (rank == 1)
        return h->min;

    uint64_t seen = 0;
    unsigned i = 0;
    for (; i < NBUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank)
            break;
    }
    /* The last bucket also holds the clamped huge values: its edge is unbounded, so max. */
    if (i >= NBUCKETS - 1)
        return h->max;
    uint64_t v = upper_edge(i);
    return v < h->max ? v : h->max;
}

double sim_hist_mean(const sim_hist_t *h)
{
    if (h->total == 0)
        return 0;
    return h->sum / (double)h->total;
}
