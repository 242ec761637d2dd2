#ifndef SIM_BATCH_H
#define SIM_BATCH_H

/*
 * The readings a simulated sensor holds until ingest acknowledges them, and the request
 * bodies built from them. Pure data structures, no I/O.
 *
 * A sensor's buffer is a FIFO of (ts, value), bounded by `cap` readings. The oldest `pending`
 * readings form the batch in flight or awaiting a retry: once a batch is taken it stays
 * exactly the same (same readings, same order) until it is acknowledged (sim_buffer_ack) or
 * given up (sim_buffer_drop_pending), so a retry never sends anything else, and nothing
 * acknowledged is ever sent again. When the buffer is full, new readings are refused and
 * counted by the caller (a meter's memory is finite; the pending batch must stay intact).
 *
 * Threading: a buffer belongs to one thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sim_reading {
    int64_t ts;
    double value;
} sim_reading_t;

typedef struct sim_buffer {
    sim_reading_t *r; /* ring of `alloc` slots, grown on demand up to cap */
    size_t alloc;
    size_t head; /* index of the oldest reading */
    size_t len;
    size_t cap;
    size_t pending; /* the oldest `pending` readings are the current batch */
} sim_buffer_t;

/* An empty buffer holding at most cap (>= 1) readings. Allocates lazily. */
void sim_buffer_init(sim_buffer_t *b, size_t cap);
void sim_buffer_dispose(sim_buffer_t *b);

/* Appends a reading. Returns 0, or -1 when the buffer is full (nothing changes). */
int sim_buffer_push(sim_buffer_t *b, int64_t ts, double value);

/* Reading i (0 = oldest), i < len. Borrowed. */
const sim_reading_t *sim_buffer_at(const sim_buffer_t *b, size_t i);

/* The current batch: if none is pending, takes the oldest min(len, max) readings as the new
 * batch. Returns its size (0 when the buffer is empty). */
size_t sim_buffer_take(sim_buffer_t *b, size_t max);

/* The batch was accepted: drops its readings. */
void sim_buffer_ack(sim_buffer_t *b);
/* The batch was refused for good: drops its readings the same way. */
void sim_buffer_drop_pending(sim_buffer_t *b);

/*
 * Writes the Flukso JSON body {"measurements":[[ts,value],...]} of the pending batch into
 * out (capacity outlen). Values are printed with %.17g, which round-trips every finite
 * double exactly. Returns the length written (without the NUL), or -1 when it does not fit or
 * a value is not finite. sim_batch_json_max() bounds the size needed for n readings.
 */
int sim_batch_json(const sim_buffer_t *b, char *out, size_t outlen);
/* The same with every timestamp moved by shift_s seconds (a meter whose clock is off). */
int sim_batch_json_shifted(const sim_buffer_t *b, int64_t shift_s, char *out, size_t outlen);
size_t sim_batch_json_max(size_t n);

#endif
