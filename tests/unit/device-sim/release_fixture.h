/*
 * Crafted releases for the careful meter's unit tests: a release key made in the test, signed
 * manifests for an image in memory, their hash-chained public log (as GET /v1/firmware shows
 * it) and heartbeat offers. Included by test_upgrade.c and test_meter.c (static inline: each
 * uses a part).
 */
#ifndef SIM_TEST_RELEASE_FIXTURE_H
#define SIM_TEST_RELEASE_FIXTURE_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/release.h"
#include "device-sim/release_log.h"

#define FX_IMAGE_SIZE 5000
#define FX_NOW 1764158400 /* the meters' clock in these tests */
#define FX_MAX 8

typedef struct fx_release {
    uint8_t *manifest; /* owned */
    size_t manifest_len;
    uint8_t sig[MH_RELEASE_SIG_LEN];
    char id[MH_RELEASE_ID_LEN + 1];
    char manifest_sha256[MH_RELEASE_HASH_HEX + 1];
    int64_t seq;
    char prev[MH_RELEASE_HASH_HEX + 1];
    char hash[MH_RELEASE_HASH_HEX + 1];
} fx_release_t;

typedef struct fx {
    EVP_PKEY *key;   /* the pinned key */
    EVP_PKEY *other; /* a key nobody pinned */
    uint8_t image[FX_IMAGE_SIZE];
    char image_sha256[MH_RELEASE_HASH_HEX + 1];
    fx_release_t r[FX_MAX];
    size_t n;
} fx_t;

/* How to make a release; zero fields take the good defaults. */
typedef struct fx_spec {
    const char *version;  /* "2.4.1" */
    const char *hardware; /* "flm02" */
    int64_t size;         /* FX_IMAGE_SIZE */
    int64_t issued;       /* FX_NOW - 86400 */
    int64_t expires;      /* FX_NOW + 90 days */
    EVP_PKEY *signer;     /* the pinned key */
} fx_spec_t;

static inline void fx_init(fx_t *f)
{
    memset(f, 0, sizeof(*f));
    f->key = mh_release_keygen();
    f->other = mh_release_keygen();
    for (size_t i = 0; i < FX_IMAGE_SIZE; i++)
        f->image[i] = (uint8_t)(i * 31 + 7);
    mh_sha256_hex(f->image, FX_IMAGE_SIZE, f->image_sha256);
}

static inline void fx_dispose(fx_t *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->r[i].manifest);
    EVP_PKEY_free(f->key);
    EVP_PKEY_free(f->other);
    memset(f, 0, sizeof(*f));
}

/* Appends r (f->r[f->n], its manifest and signature made) to the hash-chained log; returns its
 * index, or -1. */
static inline int fx_chain(fx_t *f, fx_release_t *r)
{
    mh_sha256_hex(r->manifest, r->manifest_len, r->manifest_sha256);
    r->seq = (int64_t)f->n + 1;
    if (f->n == 0)
        memset(r->prev, '0', MH_RELEASE_HASH_HEX);
    else
        memcpy(r->prev, f->r[f->n - 1].hash, sizeof(r->prev));
    r->prev[MH_RELEASE_HASH_HEX] = '\0';
    if (mh_release_log_hash(r->seq, r->prev, r->manifest_sha256, r->sig, r->hash) != 0)
        return -1;
    return (int)f->n++;
}

/* Signs a manifest of spec and appends it to the log; returns its index, or -1. */
static inline int fx_add(fx_t *f, const fx_spec_t *spec)
{
    mh_manifest_t m;
    char err[160];
    EVP_PKEY *signer = spec->signer ? spec->signer : f->key;
    fx_release_t *r = &f->r[f->n];

    if (f->n == FX_MAX)
        return -1;
    memset(&m, 0, sizeof(m));
    snprintf(m.version, sizeof(m.version), "%s", spec->version ? spec->version : "2.4.1");
    snprintf(m.hardware, sizeof(m.hardware), "%s", spec->hardware ? spec->hardware : "flm02");
    m.size = spec->size ? spec->size : FX_IMAGE_SIZE;
    memcpy(m.sha256, f->image_sha256, sizeof(m.sha256));
    m.notes = (char *)"test release";
    m.issued = spec->issued ? spec->issued : FX_NOW - 86400;
    m.expires = spec->expires ? spec->expires : FX_NOW + 90 * 86400;
    if (mh_release_key_ids(signer, NULL, m.key_id) != 0 ||
        mh_manifest_serialize(&m, &r->manifest, &r->manifest_len, err, sizeof(err)) != 0 ||
        mh_release_sign(signer, r->manifest, r->manifest_len, r->sig, err, sizeof(err)) != 0 ||
        mh_release_id(r->manifest, r->manifest_len, r->id) != 0) {
        fprintf(stderr, "fx_add: %s\n", err);
        return -1;
    }
    return fx_chain(f, r);
}

/* Signs arbitrary bytes as if they were a manifest and logs them (a signed non-manifest). */
static inline int fx_add_raw(fx_t *f, const char *bytes)
{
    fx_release_t *r = &f->r[f->n];
    char err[160];
    if (f->n == FX_MAX)
        return -1;
    r->manifest_len = strlen(bytes);
    r->manifest = malloc(r->manifest_len);
    memcpy(r->manifest, bytes, r->manifest_len);
    if (mh_release_sign(f->key, r->manifest, r->manifest_len, r->sig, err, sizeof(err)) != 0)
        return -1;
    mh_release_id(r->manifest, r->manifest_len, r->id);
    return fx_chain(f, r);
}

static inline json_t *fx_b64(const uint8_t *buf, size_t len)
{
    char *s = mh_base64_encode(buf, len);
    json_t *j = json_string(s);
    free(s);
    return j;
}

/* Release i as an element of GET /v1/firmware's "releases". */
static inline json_t *fx_entry_json(const fx_t *f, size_t i)
{
    const fx_release_t *r = &f->r[i];
    return json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:o, s:o, s:{s:I, s:s, s:s}}", "release",
                     r->id, "version", "x", "hardware", "flm02", "size", (json_int_t)FX_IMAGE_SIZE,
                     "image_sha256", f->image_sha256, "manifest_sha256", r->manifest_sha256,
                     "manifest", fx_b64(r->manifest, r->manifest_len), "signature",
                     fx_b64(r->sig, MH_RELEASE_SIG_LEN), "log", "seq", (json_int_t)r->seq, "prev",
                     r->prev, "hash", r->hash);
}

/* A GET /v1/firmware page of releases [from, to). */
static inline json_t *fx_page(const fx_t *f, size_t from, size_t to, json_int_t next_after)
{
    json_t *rel = json_array();
    for (size_t i = from; i < to; i++)
        json_array_append_new(rel, fx_entry_json(f, i));
    json_t *page = json_pack("{s:o}", "releases", rel);
    json_object_set_new(page, "next_after",
                        next_after < 0 ? json_null() : json_integer(next_after));
    return page;
}

/* Initializes log with the first n releases, read as one last page of GET /v1/firmware; 0, or
 * -1 unless the meter's copy took all n and verified them. */
static inline int fx_log_first(const fx_t *f, size_t n, sim_release_log_t *log)
{
    int64_t next = 0;
    char err[160];
    sim_release_log_init(log);
    json_t *page = fx_page(f, 0, n, -1);
    long added = sim_release_log_add_page(log, page, &next, err, sizeof(err));
    json_decref(page);
    return added == (long)n && next == -1 && !log->broken ? 0 : -1;
}

/* Release i as the "upgrade" of a heartbeat answer. */
static inline json_t *fx_offer(const fx_t *f, size_t i)
{
    const fx_release_t *r = &f->r[i];
    char url[64];
    snprintf(url, sizeof(url), "/firmware/%s", r->id);
    return json_pack("{s:s, s:o, s:o, s:{s:I, s:s, s:s}, s:s}", "release", r->id, "manifest",
                     fx_b64(r->manifest, r->manifest_len), "signature",
                     fx_b64(r->sig, MH_RELEASE_SIG_LEN), "log", "seq", (json_int_t)r->seq, "prev",
                     r->prev, "hash", r->hash, "url", url);
}

#endif
