/*
 * Fuzz target: the device body parsers and the whole-batch validation, the code every byte a
 * meter sends goes through. The first input byte picks the parser (even: JSON, odd: protobuf)
 * and whether the sensor is a counter; the rest is the body.
 *
 * With clang: cmake -DMH_FUZZ=ON -DCMAKE_C_COMPILER=clang, then
 *   build/bin/fuzz_batch /tmp/corpus tests/fuzz/corpus/batch   (new inputs go to /tmp/corpus)
 * Without it, the same function is driven over the corpus by replay.c as a unit test.
 */
#include <stddef.h>
#include <stdint.h>

#include "ingest/batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const ing_limits_t limits = {
        .max_readings = 1000, .max_future_skew_s = 300, .max_age_s = 31536000};
    ing_batch_t b;
    ing_batch_error_t err;
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    ing_batch_init(&b);
    int rc = (mode & 1) ? ing_batch_parse_protobuf(data + 1, size - 1, 1000, &b, &err)
                        : ing_batch_parse_json((const char *)data + 1, size - 1, 1000, &b, &err);
    if (rc == 0 && ing_batch_validate(&b, &limits, 1800000000, (mode & 2) != 0, &err) == 0) {
        /* A validated batch is sorted by time, without duplicates, within the bounds. */
        for (size_t i = 0; i < b.n; i++) {
            if (b.ts[i] > 1800000000 + 300 || b.ts[i] < 1800000000 - 31536000)
                __builtin_trap();
            if (i > 0 && b.ts[i] <= b.ts[i - 1])
                __builtin_trap();
            if ((mode & 2) && i > 0 && b.value[i] < b.value[i - 1])
                __builtin_trap();
        }
    }
    ing_batch_dispose(&b);
    return 0;
}
