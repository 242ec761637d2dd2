#include "upgrade/serve.h"

#include "common/ids.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int upg_store_path(const char *store, const char *sha256_hex, char *out, size_t outlen)
{
    /* The digest comes from PostgreSQL, but it becomes a path: never let it climb out. */
    if (store == NULL || store[0] == '\0' || sha256_hex == NULL || !mh_hex_valid(sha256_hex, 64))
        return -1;
    int n = snprintf(out, outlen, "%s/sha256/%.2s/%s", store, sha256_hex, sha256_hex);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}
