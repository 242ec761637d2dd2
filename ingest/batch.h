#ifndef ING_BATCH_H
#define ING_BATCH_H

/*
 * A batch of readings for one sensor as a device posted it: parsing (Flukso JSON or protobuf
 * ReadingBatch) and whole-batch validation. Pure logic, no I/O; safe from any thread.
 *
 * After ing_batch_validate() succeeds the readings are sorted by timestamp, without duplicate
 * timestamps, so the queue and the database see a canonical batch.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ing_limits {
    long max_readings;      /* most readings in one batch */
    long max_future_skew_s; /* how far past the server clock a timestamp may be */
    long max_age_s;         /* how far before the server clock a timestamp may be */
} ing_limits_t;

typedef struct ing_batch {
    size_t n;
    size_t cap;
    int64_t *ts;   /* owned; seconds since the epoch, UTC */
    double *value; /* owned */
} ing_batch_t;

/* Why a batch was refused: HTTP status, a short machine code, the field and a message. */
typedef struct ing_batch_error {
    int status;
    char code[32];
    char field[48];
    char message[160];
} ing_batch_error_t;

void ing_batch_init(ing_batch_t *b);
void ing_batch_dispose(ing_batch_t *b);

/*
 * Parses {"measurements": [[ts, value], ...]}. Anything else (other fields, wrong types,
 * non-integer timestamps, more than max_readings entries) is refused with err filled.
 * Returns 0 or -1. On failure b is left empty.
 */
int ing_batch_parse_json(const char *body, size_t len, long max_readings, ing_batch_t *b,
                         ing_batch_error_t *err);

/* Parses a protobuf meterhub.ReadingBatch. Same contract as the JSON parser. */
int ing_batch_parse_protobuf(const uint8_t *body, size_t len, long max_readings, ing_batch_t *b,
                             ing_batch_error_t *err);

/*
 * Validates the whole batch against the limits and the server clock `now`: not empty, finite
 * values, timestamps within [now - max_age_s, now + max_future_skew_s], no timestamp given twice
 * with different values (an identical repeat is dropped), and for counters values that never
 * decrease in time order. Sorts the batch by timestamp. Returns 0 or -1 with err filled; the
 * field names the reading by its position in the request.
 */
int ing_batch_validate(ing_batch_t *b, const ing_limits_t *lim, int64_t now, bool counter,
                       ing_batch_error_t *err);

/* Fills err (helper for callers that refuse for their own reasons). */
void ing_batch_error_set(ing_batch_error_t *err, int status, const char *code, const char *field,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
