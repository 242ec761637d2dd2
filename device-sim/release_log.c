/* The meter's verified copy of the public release log: see release_log.h. */
#include "device-sim/release_log.h"

#include "common/alloc.h"
#include "common/ids.h"
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The prev of entry 1. */
static const char zero_hash[MH_RELEASE_HASH_HEX + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

void sim_release_log_init(sim_release_log_t *log)
{
    memset(log, 0, sizeof(*log));
}

void sim_release_log_dispose(sim_release_log_t *log)
{
    free(log->v);
    memset(log, 0, sizeof(*log));
}

int64_t sim_release_log_head(const sim_release_log_t *log)
{
    return (int64_t)log->n;
}

const sim_log_entry_t *sim_release_log_find(const sim_release_log_t *log, int64_t seq)
{
    if (seq < 1 || seq > (int64_t)log->n)
        return NULL;
    return &log->v[seq - 1];
}

/*
 * One element of "releases" into *e: the fields the chain commits to (seq, prev, hash, the
 * manifest's digest, the signature), checked against each other; -1 with why. The manifest
 * bytes and release id shown next to them are not used: the log commits to the digest, not to
 * what a server displays, and an offer is checked against the digest (a server that shows a
 * manifest that does not hash to it lies about that release alone, not about the chain).
 */
static int parse_entry(const json_t *o, sim_log_entry_t *e, char *why, size_t whylen)
{
    const json_t *lg = json_object_get(o, "log");
    const json_t *seq = json_object_get(lg, "seq");
    const char *prev = json_string_value(json_object_get(lg, "prev"));
    const char *hash = json_string_value(json_object_get(lg, "hash"));
    const char *release = json_string_value(json_object_get(o, "release"));
    const char *msha = json_string_value(json_object_get(o, "manifest_sha256"));
    const char *sig64 = json_string_value(json_object_get(o, "signature"));
    uint8_t *sig = NULL;
    size_t sig_len = 0;
    char recomputed[MH_RELEASE_HASH_HEX + 1];
    int rc = -1;

    memset(e, 0, sizeof(*e));
    if (!json_is_integer(seq) || json_integer_value(seq) < 1) {
        mh_errf(why, whylen, "log.seq is not a positive integer");
        goto out;
    }
    e->seq = (int64_t)json_integer_value(seq);
    if (!mh_hex_valid(prev, MH_RELEASE_HASH_HEX) || !mh_hex_valid(hash, MH_RELEASE_HASH_HEX) ||
        !mh_hex_valid(msha, MH_RELEASE_HASH_HEX)) {
        mh_errf(why, whylen, "log.prev, log.hash or manifest_sha256 is not 64 lowercase hex");
        goto out;
    }
    sig = sig64 ? mh_base64_decode(sig64, strlen(sig64), &sig_len) : NULL;
    if (sig == NULL || sig_len != MH_RELEASE_SIG_LEN) {
        mh_errf(why, whylen, "signature is not base64 of 64 bytes");
        goto out;
    }
    if (mh_release_log_hash(e->seq, prev, msha, sig, recomputed) != 0 ||
        strcmp(recomputed, hash) != 0) {
        mh_errf(why, whylen, "log.hash does not recompute from the entry");
        goto out;
    }
    /* The release id is the digest's first 32 hex: nothing to trust in the one shown. */
    memcpy(e->release, msha, MH_RELEASE_ID_LEN);
    e->release[MH_RELEASE_ID_LEN] = '\0';
    if (release != NULL && strcmp(release, e->release) != 0)
        mh_log(MH_LOG_DEBUG, "release log: seq %lld shows release %.32s for %s", (long long)e->seq,
               release, e->release);
    memcpy(e->prev, prev, sizeof(e->prev));
    memcpy(e->hash, hash, sizeof(e->hash));
    memcpy(e->manifest_sha256, msha, sizeof(e->manifest_sha256));
    memcpy(e->signature, sig, MH_RELEASE_SIG_LEN);
    rc = 0;
out:
    free(sig);
    return rc;
}

static void mark_broken(sim_release_log_t *log, int64_t seq, const char *why)
{
    log->broken = true;
    log->broken_seq = seq;
    snprintf(log->broken_why, sizeof(log->broken_why), "%s", why);
}

static void append(sim_release_log_t *log, const sim_log_entry_t *e)
{
    if (log->n == log->alloc) {
        log->alloc = log->alloc ? log->alloc * 2 : 64;
        log->v = mh_realloc(log->v, log->alloc * sizeof(*log->v));
    }
    log->v[log->n++] = *e;
}

long sim_release_log_add_page(sim_release_log_t *log, const json_t *page, int64_t *next_after,
                              char *err, size_t errlen)
{
    const json_t *releases = json_object_get(page, "releases");
    const json_t *next = json_object_get(page, "next_after");
    char why[128];
    long added = 0;

    if (!json_is_object(page) || !json_is_array(releases)) {
        snprintf(err, errlen, "not a GET /v1/firmware answer: no \"releases\" array");
        return -1;
    }
    if (json_is_integer(next) && json_integer_value(next) >= 0) {
        *next_after = (int64_t)json_integer_value(next);
    } else if (next == NULL || json_is_null(next)) {
        *next_after = -1;
    } else {
        snprintf(err, errlen, "next_after is neither an integer nor null");
        return -1;
    }
    for (size_t i = 0; i < json_array_size(releases) && !log->broken; i++) {
        sim_log_entry_t e;
        int64_t expect = (int64_t)log->n + 1;
        if (parse_entry(json_array_get(releases, i), &e, why, sizeof(why)) != 0) {
            mark_broken(log, e.seq ? e.seq : expect, why);
            break;
        }
        if (e.seq < expect) {
            /* Seen before: it must be the very same entry. */
            if (strcmp(log->v[e.seq - 1].hash, e.hash) != 0)
                mark_broken(log, e.seq, "an entry already seen changed");
            continue;
        }
        if (e.seq > expect) {
            mark_broken(log, e.seq, "a gap in the sequence");
            break;
        }
        if (strcmp(e.prev, expect == 1 ? zero_hash : log->v[log->n - 1].hash) != 0) {
            mark_broken(log, e.seq, "log.prev is not the previous entry's hash");
            break;
        }
        if (log->n >= SIM_RELEASE_LOG_MAX) {
            mark_broken(log, e.seq, "more entries than a meter keeps");
            break;
        }
        append(log, &e);
        added++;
    }
    return added;
}
