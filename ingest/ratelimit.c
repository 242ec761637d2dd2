#include "ratelimit.h"

#include "common/alloc.h"

#include <pthread.h>
#include <stdlib.h>

#define RL_STRIPES 64
#define RL_PROBE 8

typedef struct rl_bucket {
    uint64_t key; /* 0 = empty; device keys start at 1 */
    double tokens;
    double last;
} rl_bucket_t;

typedef struct rl_stripe {
    pthread_mutex_t lock;
    rl_bucket_t *slots;
} rl_stripe_t;

struct ing_ratelimit {
    double rate, burst;
    size_t per_stripe; /* power of two */
    rl_stripe_t stripes[RL_STRIPES];
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    x ^= x >> 33;
    return x;
}

ing_ratelimit_t *ing_ratelimit_new(double rate, double burst, size_t capacity)
{
    ing_ratelimit_t *rl = mh_calloc(1, sizeof(*rl));
    rl->rate = rate;
    rl->burst = burst;
    size_t per = RL_PROBE;
    while (per * RL_STRIPES < capacity)
        per <<= 1;
    rl->per_stripe = per;
    for (int i = 0; i < RL_STRIPES; i++) {
        pthread_mutex_init(&rl->stripes[i].lock, NULL);
        rl->stripes[i].slots = mh_calloc(per, sizeof(rl_bucket_t));
    }
    return rl;
}

void ing_ratelimit_free(ing_ratelimit_t *rl)
{
    if (rl == NULL)
        return;
    for (int i = 0; i < RL_STRIPES; i++) {
        pthread_mutex_destroy(&rl->stripes[i].lock);
        free(rl->stripes[i].slots);
    }
    free(rl);
}

bool ing_ratelimit_take(ing_ratelimit_t *rl, uint64_t key, double now, double *retry_after)
{
    uint64_t h = mix(key);
    rl_stripe_t *st = &rl->stripes[h % RL_STRIPES];
    size_t mask = rl->per_stripe - 1;
    size_t start = (h >> 8) & mask;
    bool allowed;

    pthread_mutex_lock(&st->lock);
    rl_bucket_t *b = NULL, *victim = NULL;
    for (size_t i = 0; i < RL_PROBE; i++) {
        rl_bucket_t *s = &st->slots[(start + i) & mask];
        if (s->key == key) {
            b = s;
            break;
        }
        if (s->key == 0 && victim == NULL)
            victim = s;
    }
    if (b == NULL) {
        if (victim == NULL) {
            victim = &st->slots[start];
            for (size_t i = 1; i < RL_PROBE; i++) {
                rl_bucket_t *s = &st->slots[(start + i) & mask];
                if (s->last < victim->last)
                    victim = s;
            }
        }
        b = victim;
        b->key = key;
        b->tokens = rl->burst;
        b->last = now;
    }
    if (now > b->last) {
        b->tokens += (now - b->last) * rl->rate;
        if (b->tokens > rl->burst)
            b->tokens = rl->burst;
        b->last = now;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        allowed = true;
    } else {
        *retry_after = (1.0 - b->tokens) / rl->rate;
        allowed = false;
    }
    pthread_mutex_unlock(&st->lock);
    return allowed;
}
