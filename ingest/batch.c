#include "batch.h"

#include "common/alloc.h"
#include "proto/meterhub.pb-c.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ing_batch_error_set(ing_batch_error_t *err, int status, const char *code, const char *field,
                         const char *fmt, ...)
{
    va_list ap;
    err->status = status;
    snprintf(err->code, sizeof(err->code), "%s", code);
    snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

void ing_batch_init(ing_batch_t *b)
{
    memset(b, 0, sizeof(*b));
}

void ing_batch_dispose(ing_batch_t *b)
{
    free(b->ts);
    free(b->value);
    ing_batch_init(b);
}

static void batch_reserve(ing_batch_t *b, size_t n)
{
    if (n <= b->cap)
        return;
    b->ts = mh_realloc(b->ts, n * sizeof(*b->ts));
    b->value = mh_realloc(b->value, n * sizeof(*b->value));
    b->cap = n;
}

static int too_many(size_t n, long max_readings, ing_batch_error_t *err)
{
    ing_batch_error_set(err, 413, "too_many_readings", "measurements",
                        "%zu readings in one batch; at most %ld are accepted", n, max_readings);
    return -1;
}

int ing_batch_parse_json(const char *body, size_t len, long max_readings, ing_batch_t *b,
                         ing_batch_error_t *err)
{
    json_error_t jerr;
    json_t *root = NULL;
    char field[48];

    b->n = 0;
    if (len == 0) {
        ing_batch_error_set(err, 400, "malformed_json", "", "the body is empty");
        goto fail;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        ing_batch_error_set(err, 400, "malformed_json", "", "malformed JSON at line %d: %s",
                            jerr.line, jerr.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        ing_batch_error_set(err, 400, "invalid_body", "", "the body must be a JSON object");
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "measurements") != 0) {
            ing_batch_error_set(err, 400, "unknown_field", key, "unknown field '%.40s'", key);
            goto fail;
        }
    }
    json_t *m = json_object_get(root, "measurements");
    if (m == NULL) {
        ing_batch_error_set(err, 400, "missing_field", "measurements",
                            "the field 'measurements' is required");
        goto fail;
    }
    if (!json_is_array(m)) {
        ing_batch_error_set(err, 400, "invalid_type", "measurements",
                            "'measurements' must be an array of [timestamp, value] pairs");
        goto fail;
    }
    size_t n = json_array_size(m);
    if (max_readings >= 0 && n > (size_t)max_readings) {
        too_many(n, max_readings, err);
        goto fail;
    }
    batch_reserve(b, n);
    for (size_t i = 0; i < n; i++) {
        json_t *pair = json_array_get(m, i);
        if (!json_is_array(pair) || json_array_size(pair) != 2) {
            snprintf(field, sizeof(field), "measurements[%zu]", i);
            ing_batch_error_set(err, 400, "invalid_type", field,
                                "each measurement must be a [timestamp, value] pair");
            goto fail;
        }
        json_t *ts = json_array_get(pair, 0);
        json_t *v = json_array_get(pair, 1);
        if (!json_is_integer(ts)) {
            snprintf(field, sizeof(field), "measurements[%zu][0]", i);
            ing_batch_error_set(err, 400, "invalid_timestamp", field,
                                "the timestamp must be an integer number of seconds since the "
                                "epoch (UTC)");
            goto fail;
        }
        if (!json_is_number(v)) {
            snprintf(field, sizeof(field), "measurements[%zu][1]", i);
            ing_batch_error_set(err, 400, "invalid_value", field, "the value must be a number");
            goto fail;
        }
        b->ts[i] = (int64_t)json_integer_value(ts);
        b->value[i] = json_number_value(v);
    }
    b->n = n;
    json_decref(root);
    return 0;
fail:
    b->n = 0;
    json_decref(root);
    return -1;
}

int ing_batch_parse_protobuf(const uint8_t *body, size_t len, long max_readings, ing_batch_t *b,
                             ing_batch_error_t *err)
{
    Meterhub__ReadingBatch *pb = meterhub__reading_batch__unpack(NULL, len, body);
    b->n = 0;
    if (pb == NULL) {
        ing_batch_error_set(err, 400, "malformed_protobuf", "",
                            "the body is not a valid meterhub.ReadingBatch");
        goto fail;
    }
    if (pb->n_ts != pb->n_value) {
        ing_batch_error_set(err, 400, "length_mismatch", "value", "%zu timestamps but %zu values",
                            pb->n_ts, pb->n_value);
        goto fail;
    }
    if (max_readings >= 0 && pb->n_ts > (size_t)max_readings) {
        too_many(pb->n_ts, max_readings, err);
        goto fail;
    }
    batch_reserve(b, pb->n_ts);
    memcpy(b->ts, pb->ts, pb->n_ts * sizeof(*b->ts));
    memcpy(b->value, pb->value, pb->n_ts * sizeof(*b->value));
    b->n = pb->n_ts;
    meterhub__reading_batch__free_unpacked(pb, NULL);
    return 0;
fail:
    if (pb != NULL)
        meterhub__reading_batch__free_unpacked(pb, NULL);
    return -1;
}

typedef struct indexed {
    int64_t ts;
    double value;
    size_t pos; /* position in the request, for error messages */
} indexed_t;

static int cmp_indexed(const void *a, const void *b)
{
    const indexed_t *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

static bool is_sorted_strict(const ing_batch_t *b)
{
    for (size_t i = 1; i < b->n; i++)
        if (b->ts[i] <= b->ts[i - 1])
            return false;
    return true;
}

int ing_batch_validate(ing_batch_t *b, const ing_limits_t *lim, int64_t now, bool counter,
                       ing_batch_error_t *err)
{
    char field[48];
    indexed_t *tmp = NULL;

    if (b->n == 0) {
        ing_batch_error_set(err, 400, "empty_batch", "measurements",
                            "the batch holds no measurements");
        goto fail;
    }
    if (lim->max_readings >= 0 && b->n > (size_t)lim->max_readings) {
        too_many(b->n, lim->max_readings, err);
        goto fail;
    }
    for (size_t i = 0; i < b->n; i++) {
        if (!isfinite(b->value[i])) {
            snprintf(field, sizeof(field), "measurements[%zu][1]", i);
            ing_batch_error_set(err, 400, "invalid_value", field,
                                "the value must be a finite number");
            goto fail;
        }
        if (b->ts[i] > now + lim->max_future_skew_s) {
            snprintf(field, sizeof(field), "measurements[%zu][0]", i);
            ing_batch_error_set(err, 400, "timestamp_in_future", field,
                                "timestamp %lld is %lld s ahead of the server clock (at most "
                                "%ld s allowed)",
                                (long long)b->ts[i], (long long)(b->ts[i] - now),
                                lim->max_future_skew_s);
            goto fail;
        }
        if (b->ts[i] < now - lim->max_age_s) {
            snprintf(field, sizeof(field), "measurements[%zu][0]", i);
            ing_batch_error_set(err, 400, "timestamp_too_old", field,
                                "timestamp %lld is older than the retention bound (%ld s)",
                                (long long)b->ts[i], lim->max_age_s);
            goto fail;
        }
    }

    /* Meters post in time order; only an out-of-order batch pays for the sort. */
    if (!is_sorted_strict(b)) {
        tmp = mh_malloc(b->n * sizeof(*tmp));
        for (size_t i = 0; i < b->n; i++)
            tmp[i] = (indexed_t){b->ts[i], b->value[i], i};
        qsort(tmp, b->n, sizeof(*tmp), cmp_indexed);
        size_t out = 0;
        for (size_t i = 0; i < b->n; i++) {
            if (out > 0 && tmp[i].ts == b->ts[out - 1]) {
                if (tmp[i].value != b->value[out - 1]) {
                    snprintf(field, sizeof(field), "measurements[%zu][0]", tmp[i].pos);
                    ing_batch_error_set(err, 400, "duplicate_timestamp", field,
                                        "timestamp %lld is given twice with different values",
                                        (long long)tmp[i].ts);
                    goto fail;
                }
                continue;
            }
            b->ts[out] = tmp[i].ts;
            b->value[out] = tmp[i].value;
            out++;
        }
        b->n = out;
    }
    if (counter) {
        for (size_t i = 1; i < b->n; i++) {
            if (b->value[i] < b->value[i - 1]) {
                size_t pos = tmp ? SIZE_MAX : i;
                for (size_t j = 0; tmp && j < b->n; j++)
                    if (tmp[j].ts == b->ts[i])
                        pos = tmp[j].pos;
                snprintf(field, sizeof(field), "measurements[%zu][1]", pos);
                ing_batch_error_set(err, 400, "counter_decreased", field,
                                    "counter value %.17g at %lld is below %.17g at %lld",
                                    b->value[i], (long long)b->ts[i], b->value[i - 1],
                                    (long long)b->ts[i - 1]);
                goto fail;
            }
        }
    }
    free(tmp);
    return 0;
fail:
    free(tmp);
    return -1;
}
