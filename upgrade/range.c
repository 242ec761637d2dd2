#include "upgrade/serve.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* Digits only, at most 18 of them (fits int64_t with room): no sign, no spaces. */
static bool parse_count(const char *s, size_t n, int64_t *out)
{
    if (n == 0 || n > 18)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

void upg_range_parse(const char *value, upg_range_t *out)
{
    out->kind = UPG_RANGE_ALL;
    out->a = out->b = 0;
    if (value == NULL || strncasecmp(value, "bytes=", 6) != 0)
        return;
    const char *spec = value + 6;
    const char *dash = strchr(spec, '-');
    if (dash == NULL || strchr(spec, ',') != NULL)
        return;
    size_t left = (size_t)(dash - spec);
    size_t right = strlen(dash + 1);
    int64_t a, b;
    if (left == 0) {
        if (parse_count(dash + 1, right, &a)) {
            out->kind = UPG_RANGE_SUFFIX;
            out->a = a;
        }
        return;
    }
    if (!parse_count(spec, left, &a))
        return;
    if (right == 0) {
        out->kind = UPG_RANGE_FROM;
        out->a = a;
        return;
    }
    /* a-b with b < a is not a valid range: ignored like any other we do not understand. */
    if (!parse_count(dash + 1, right, &b) || b < a)
        return;
    out->kind = UPG_RANGE_SPAN;
    out->a = a;
    out->b = b;
}

int upg_range_resolve(const upg_range_t *range, int64_t size, int64_t *first, int64_t *last)
{
    if (size <= 0)
        return -1;
    switch (range->kind) {
    case UPG_RANGE_FROM:
        if (range->a >= size)
            return -1;
        *first = range->a;
        *last = size - 1;
        return 0;
    case UPG_RANGE_SPAN:
        if (range->a >= size)
            return -1;
        *first = range->a;
        *last = range->b < size - 1 ? range->b : size - 1;
        return 0;
    case UPG_RANGE_SUFFIX:
        if (range->a == 0)
            return -1;
        *first = range->a < size ? size - range->a : 0;
        *last = size - 1;
        return 0;
    case UPG_RANGE_ALL:
    default:
        *first = 0;
        *last = size - 1;
        return 0;
    }
}
