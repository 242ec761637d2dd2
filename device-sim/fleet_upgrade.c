/* The fleet's firmware settings: see fleet_upgrade.h. */
#include "device-sim/fleet_upgrade.h"

#include "common/alloc.h"
#include "common/fileio.h"
#include "common/ids.h"
#include "common/log.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A consent list names at most every device there can be, 33 bytes a line. */
#define SIM_CONSENT_FILE_MAX (64u << 20)

bool sim_remote_upgrade_flag(const char *device_id, double fraction)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char text[64];
    int n = snprintf(text, sizeof(text), "remote_upgrade:%s", device_id);
    uint32_t threshold = (uint32_t)lround(fraction * 10000.0);

    if (fraction <= 0 || n < 0 || (size_t)n >= sizeof(text))
        return false;
    /* EVP_Digest cannot fail for SHA-256 short of memory, which aborts elsewhere anyway: a
     * failure here keeps the flag off, the safe side. */
    if (EVP_Digest(text, (size_t)n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 4)
        return false;
    uint32_t bucket =
        ((uint32_t)md[0] << 24 | (uint32_t)md[1] << 16 | (uint32_t)md[2] << 8 | md[3]) % 10000u;
    return bucket < threshold;
}

static int cmp_ids(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int sim_consent_load(const char *path, const sim_fleet_t *fleet, size_t ndevices, uint8_t **out,
                     size_t *listed, size_t *others)
{
    char *text = mh_read_text_file(path, SIM_CONSENT_FILE_MAX);
    const char **ids = NULL;
    size_t nids = 0, alloc = 0, lineno = 0;
    uint8_t *marks = NULL;
    int rc = -1;

    *listed = *others = 0;
    if (text == NULL)
        goto out;
    for (char *line = text, *next; line != NULL && *line != '\0'; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        lineno++;
        size_t len = strlen(line);
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        if (!mh_id_valid(line)) {
            mh_log(MH_LOG_ERROR, "%s:%zu: not a device id (32 lowercase hex digits)", path, lineno);
            goto out;
        }
        if (nids == alloc) {
            alloc = alloc ? alloc * 2 : 256;
            ids = mh_realloc(ids, alloc * sizeof(*ids));
        }
        ids[nids++] = line;
    }
    qsort(ids, nids, sizeof(*ids), cmp_ids);
    marks = mh_calloc(ndevices ? ndevices : 1, 1);
    for (size_t d = 0; d < ndevices; d++) {
        const char *key = fleet->devices[d].id;
        if (nids > 0 && bsearch(&key, ids, nids, sizeof(*ids), cmp_ids) != NULL) {
            marks[d] = 1;
            (*listed)++;
        }
    }
    /* Duplicates count once: every listed id of the run matched exactly one device. */
    size_t distinct = 0;
    for (size_t i = 0; i < nids; i++)
        if (i == 0 || strcmp(ids[i], ids[i - 1]) != 0)
            distinct++;
    *others = distinct - *listed;
    *out = marks;
    marks = NULL;
    rc = 0;
out:
    free(marks);
    free(ids);
    free(text);
    return rc;
}
