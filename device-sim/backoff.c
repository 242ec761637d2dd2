/*
 * Backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): a uniform
 * draw over the whole window spreads a fleet that failed together, where a fixed exponential
 * delay would bring it back in lockstep.
 */
#include "device-sim/backoff.h"

/* Any non-zero constant would do: xorshift has the single fixed point 0. */
#define RNG_FALLBACK 0x9E3779B97F4A7C15ull

/* Largest shift of base_ms: base_ms < 2^32, so base_ms << 31 still fits in 64 bits. */
#define MAX_SHIFT 31u

uint64_t sim_rand_seed(uint64_t seed)
{
    /* splitmix64: neighbouring seeds (0, 1, 2...) give unrelated states. */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z ? z : RNG_FALLBACK;
}

uint64_t sim_rand_next(uint64_t *state)
{
    uint64_t x = *state ? *state : RNG_FALLBACK;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

double sim_rand_unit(uint64_t *state)
{
    /* The top 53 bits: the low bits of xorshift64* are its weakest. */
    return (double)(sim_rand_next(state) >> 11) * 0x1p-53;
}

/* Uniform in [0, bound], from the high 32 bits (multiply-shift, no division). */
static uint64_t draw_upto(uint64_t *state, uint32_t bound)
{
    uint64_t r = sim_rand_next(state) >> 32;
    return (r * ((uint64_t)bound + 1)) >> 32;
}

void sim_backoff_init(sim_backoff_t *b, uint64_t seed, uint32_t base_ms, uint32_t cap_ms)
{
    b->attempt = 0;
    b->rng = sim_rand_seed(seed);
    b->base_ms = base_ms;
    b->cap_ms = cap_ms;
}

uint32_t sim_backoff_next(sim_backoff_t *b, uint32_t retry_after_s)
{
    uint64_t delay;
    if (retry_after_s > 0) {
        /* The server said when: come back then, spread by one base delay so the meters it
         * told the same thing do not return in the same millisecond. The cap does not
         * apply: coming back earlier would only earn another refusal. */
        delay = (uint64_t)retry_after_s * 1000 + draw_upto(&b->rng, b->base_ms);
    } else {
        unsigned shift = b->attempt < MAX_SHIFT ? b->attempt : MAX_SHIFT;
        uint64_t window = (uint64_t)b->base_ms << shift;
        if (window > b->cap_ms)
            window = b->cap_ms;
        delay = draw_upto(&b->rng, (uint32_t)window);
    }
    if (b->attempt < UINT32_MAX)
        b->attempt++;
    return delay > UINT32_MAX ? UINT32_MAX : (uint32_t)delay;
}

void sim_backoff_reset(sim_backoff_t *b)
{
    b->attempt = 0;
}
