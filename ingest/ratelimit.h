#ifndef ING_RATELIMIT_H
#define ING_RATELIMIT_H

/*
 * Per-device token buckets shared by all workers: a device gets the same allowance whichever
 * worker or connection its requests arrive on. The table is split in stripes, each behind its
 * own mutex, so workers rarely contend. Bounded memory: when a stripe is full, the bucket idle
 * the longest is evicted (an evicted device starts again with a full bucket).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ing_ratelimit ing_ratelimit_t;

/* rate: tokens per second; burst: bucket size; capacity: buckets kept. Returns owned table. */
ing_ratelimit_t *ing_ratelimit_new(double rate, double burst, size_t capacity);
void ing_ratelimit_free(ing_ratelimit_t *rl);

/*
 * Takes one token for key at time now (seconds, monotonic). Returns true if allowed; false
 * with *retry_after set to the seconds until a token is available. Thread-safe.
 */
bool ing_ratelimit_take(ing_ratelimit_t *rl, uint64_t key, double now, double *retry_after);

#endif
