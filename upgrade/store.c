#include "upgrade/serve.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[n] == '\0';
}

int upg_store_path(const char *store, const char *sha256_hex, char *out, size_t outlen)
{
    /* The digest comes from PostgreSQL, but it becomes a path: never let it climb out. */
    if (store == NULL || store[0] == '\0' || sha256_hex == NULL || !is_lower_hex(sha256_hex, 64))
        return -1;
    int n = snprintf(out, outlen, "%s/sha256/%.2s/%s", store, sha256_hex, sha256_hex);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}
