#include "device-sim/batch.h"

#include "common/alloc.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* First allocation: most sensors of a steady fleet hold one or two readings at a time, and a
 * fleet of 100,000 sensors must not reserve `cap` slots each. */
#define SIM_BUFFER_FIRST_ALLOC 4

/* Longest text of one reading: "[" ts "," value "]" ",": 20 + 24 + 4, rounded up. */
#define SIM_READING_JSON_MAX 52

void sim_buffer_init(sim_buffer_t *b, size_t cap)
{
    assert(cap >= 1);
    b->r = NULL;
    b->alloc = 0;
    b->head = 0;
    b->len = 0;
    b->cap = cap;
    b->pending = 0;
}

void sim_buffer_dispose(sim_buffer_t *b)
{
    free(b->r);
    b->r = NULL;
    b->alloc = b->len = b->head = b->pending = 0;
}

/* Doubles the ring (bounded by cap), unrolling it so that head becomes 0. */
static void grow(sim_buffer_t *b)
{
    size_t n = b->alloc ? b->alloc * 2 : SIM_BUFFER_FIRST_ALLOC;
    if (n > b->cap)
        n = b->cap;
    sim_reading_t *r = mh_malloc(n * sizeof(*r));
    for (size_t i = 0; i < b->len; i++)
        r[i] = b->r[(b->head + i) % b->alloc];
    free(b->r);
    b->r = r;
    b->alloc = n;
    b->head = 0;
}

int sim_buffer_push(sim_buffer_t *b, int64_t ts, double value)
{
    if (b->len >= b->cap)
        return -1;
    if (b->len == b->alloc)
        grow(b);
    b->r[(b->head + b->len) % b->alloc] = (sim_reading_t){ts, value};
    b->len++;
    return 0;
}

const sim_reading_t *sim_buffer_at(const sim_buffer_t *b, size_t i)
{
    assert(i < b->len);
    return &b->r[(b->head + i) % b->alloc];
}

size_t sim_buffer_take(sim_buffer_t *b, size_t max)
{
    if (b->pending == 0)
        b->pending = b->len < max ? b->len : max;
    return b->pending;
}

void sim_buffer_ack(sim_buffer_t *b)
{
    assert(b->pending <= b->len);
    if (b->pending == 0)
        return;
    b->head = (b->head + b->pending) % b->alloc;
    b->len -= b->pending;
    b->pending = 0;
}

void sim_buffer_drop_pending(sim_buffer_t *b)
{
    sim_buffer_ack(b);
}

size_t sim_batch_json_max(size_t n)
{
    return sizeof("{\"measurements\":[]}") + n * SIM_READING_JSON_MAX;
}

int sim_batch_json(const sim_buffer_t *b, char *out, size_t outlen)
{
    return sim_batch_json_shifted(b, 0, out, outlen);
}

int sim_batch_json_shifted(const sim_buffer_t *b, int64_t shift_s, char *out, size_t outlen)
{
    size_t pos = 0;
    int n = snprintf(out, outlen, "{\"measurements\":[");
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    pos = (size_t)n;
    for (size_t i = 0; i < b->pending; i++) {
        const sim_reading_t *r = sim_buffer_at(b, i);
        if (!isfinite(r->value))
            return -1;
        n = snprintf(out + pos, outlen - pos, "%s[%" PRId64 ",%.17g]", i ? "," : "",
                     r->ts + shift_s, r->value);
        if (n < 0 || (size_t)n >= outlen - pos)
            return -1;
        pos += (size_t)n;
    }
    n = snprintf(out + pos, outlen - pos, "]}");
    if (n < 0 || (size_t)n >= outlen - pos)
        return -1;
    return (int)(pos + (size_t)n);
}
