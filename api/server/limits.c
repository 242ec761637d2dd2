/*
 * Failed-login limits: a fixed window per username and per client address. Counters live in
 * a fixed table indexed by a hash of the key, so memory is bounded whatever an attacker
 * sends; two keys that share a slot share a counter, which can only make the limit stricter.
 */
#include "api_internal.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT_SLOTS 4096

typedef struct slot {
    uint64_t key;
    int64_t window_start;
    long failures;
} slot_t;

struct api_limits {
    long per_account, per_address, window_s;
    slot_t accounts[LIMIT_SLOTS];
    slot_t addresses[LIMIT_SLOTS];
    uint64_t seed;
};

static uint64_t hash_key(const api_limits_t *l, const char *s)
{
    uint64_t h = 1469598103934665603ull ^ l->seed; /* FNV-1a, seeded per process */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static slot_t *find(api_limits_t *l, slot_t *table, const char *key, int64_t now)
{
    uint64_t h = hash_key(l, key);
    slot_t *s = &table[h % LIMIT_SLOTS];
    if (now - s->window_start >= l->window_s) {
        s->key = h;
        s->window_start = now;
        s->failures = 0;
    }
    return s;
}

api_limits_t *api_limits_new(long per_account, long per_address, long window_s)
{
    api_limits_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->per_account = per_account;
    l->per_address = per_address;
    l->window_s = window_s;
    if (RAND_bytes((unsigned char *)&l->seed, sizeof(l->seed)) != 1) {
        free(l);
        return NULL;
    }
    for (size_t i = 0; i < LIMIT_SLOTS; i++)
        l->accounts[i].window_start = l->addresses[i].window_start = INT64_MIN / 2;
    return l;
}

void api_limits_free(api_limits_t *l)
{
    free(l);
}

int api_limits_check(api_limits_t *l, const char *username, const char *peer, int64_t now)
{
    slot_t *a = find(l, l->accounts, username, now);
    int64_t wait = 0;
    if (a->failures >= l->per_account)
        wait = a->window_start + l->window_s - now;
    int by_address = api_limits_check_address(l, peer, now);
    return wait > by_address ? (int)wait : by_address;
}

int api_limits_check_address(api_limits_t *l, const char *peer, int64_t now)
{
    slot_t *p = find(l, l->addresses, peer, now);
    int64_t wait = 0;
    if (p->failures >= l->per_address)
        wait = p->window_start + l->window_s - now;
    return wait > 0 ? (int)wait : 0;
}

void api_limits_failed(api_limits_t *l, const char *username, const char *peer, int64_t now)
{
    find(l, l->accounts, username, now)->failures++;
    find(l, l->addresses, peer, now)->failures++;
}

void api_limits_address_used(api_limits_t *l, const char *peer, int64_t now)
{
    find(l, l->addresses, peer, now)->failures++;
}

void api_limits_succeeded(api_limits_t *l, const char *username, int64_t now)
{
    find(l, l->accounts, username, now)->failures = 0;
}
