#ifndef SIM_BACKOFF_H
#define SIM_BACKOFF_H

/*
 * Retry delays of a meter: exponential backoff with "full jitter" (a uniform draw in
 * [0, min(cap, base * 2^attempt)]), never shorter than a server's Retry-After. Deterministic
 * for a given seed, so runs can be repeated. No allocation, no locking: each meter owns its
 * sim_backoff_t and generator state and uses them from one thread.
 */

#include <stdint.h>

typedef struct sim_backoff {
    uint32_t attempt;
    uint64_t rng; /* xorshift64* state, never 0 */
    uint32_t base_ms, cap_ms;
} sim_backoff_t;

void sim_backoff_init(sim_backoff_t *b, uint64_t seed, uint32_t base_ms, uint32_t cap_ms);
/* The delay before the next retry, in ms, honouring retry_after_s (> 0 when the server sent
 * Retry-After; the delay is then at least that, plus a jitter of up to base_ms). */
uint32_t sim_backoff_next(sim_backoff_t *b, uint32_t retry_after_s);
/* After a success: the next failure starts again from base_ms. */
void sim_backoff_reset(sim_backoff_t *b);

/* A generator state from any seed (0 included): splitmix64 of the seed, never 0. Use it to
 * derive independent streams, e.g. sim_rand_seed(seed ^ stream_id). */
uint64_t sim_rand_seed(uint64_t seed);
/* The generator shared by the simulator: xorshift64*, state never 0 (a 0 state is replaced by
 * a fixed non-zero one rather than sticking at 0). */
uint64_t sim_rand_next(uint64_t *state);
/* Uniform double in [0, 1). */
double sim_rand_unit(uint64_t *state);

#endif
