/*
 * log verify: recomputes the release log from its first entry, as anyone holding a copy can
 * (docs/upgrade.md, "The release log"), and checks that every release row is what its entry
 * says: same manifest digest and signature, same log fields, fields that are those of its
 * manifest, a signature that verifies with the recorded key. Every mismatch is reported on
 * stderr; the summary goes to stdout.
 */
#include "release_internal.h"

#include "common/tool.h"
#include "common/alloc.h"
#include "common/log.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    C_SEQ,
    C_RELEASE,
    C_MSHA,
    C_SIG,
    C_PREV,
    C_HASH,
    C_R_ID,
    C_R_MANIFEST,
    C_R_SIG,
    C_R_MSHA,
    C_R_SEQ,
    C_R_PREV,
    C_R_HASH,
    C_R_VERSION,
    C_R_VKEY,
    C_R_HARDWARE,
    C_R_SIZE,
    C_R_IMAGE,
    C_R_KEY_ID,
    C_R_ISSUED,
    C_R_EXPIRES,
    C_K_PUB,
    C_R_NOTES,
};

static const char log_sql[] =
    "SELECT l.seq, l.release_id, l.manifest_sha256, encode(l.signature, 'hex'), l.prev_hash,"
    " l.entry_hash, r.id, encode(r.manifest, 'hex'), encode(r.signature, 'hex'),"
    " r.manifest_sha256, r.log_seq, r.log_prev, r.log_hash, r.version, r.version_key::text,"
    " r.hardware, r.size, r.image_sha256, r.key_id, extract(epoch FROM r.issued_at)::bigint,"
    " extract(epoch FROM r.expires_at)::bigint, encode(k.public_key, 'hex'),"
    " r.notes FROM release_log l LEFT JOIN releases r ON r.id = l.release_id"
    " LEFT JOIN release_keys k ON k.key_id = r.key_id ORDER BY l.seq";

typedef struct checker {
    long long seq;
    long errors;
} checker_t;

static void problem(checker_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(checker_t *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    mh_log(MH_LOG_ERROR, "log entry %lld: %s", c->seq, msg);
    c->errors++;
}

/* Hex text to bytes: exactly want bytes (want 0: any length). Owned, or NULL. */
static uint8_t *unhex(const char *hex, size_t want, size_t *len)
{
    long n = 0;
    uint8_t *raw = hex[0] != '\0' ? OPENSSL_hexstr2buf(hex, &n) : NULL;
    if (raw == NULL || (want != 0 && (size_t)n != want)) {
        OPENSSL_free(raw);
        return NULL;
    }
    uint8_t *out = mh_malloc((size_t)n);
    memcpy(out, raw, (size_t)n);
    OPENSSL_free(raw);
    *len = (size_t)n;
    return out;
}

static bool same(const PGresult *res, int row, int col, const char *want)
{
    return !PQgetisnull(res, row, col) && strcmp(PQgetvalue(res, row, col), want) == 0;
}

/* The release row of entry row against its manifest and signature. */
static void check_release(checker_t *c, const PGresult *res, int row, const uint8_t *sig)
{
    size_t mlen = 0, publen = 0;
    uint8_t *manifest = unhex(PQgetvalue(res, row, C_R_MANIFEST), 0, &mlen);
    uint8_t *pub = NULL;
    mh_manifest_t m;
    char err[256], sha[MH_RELEASE_HASH_HEX + 1], id[MH_RELEASE_ID_LEN + 1], num[32], vkey[64];
    EVP_PKEY *key = NULL;

    memset(&m, 0, sizeof(m));
    if (manifest == NULL) {
        problem(c, "the release's manifest is empty");
        goto done;
    }
    mh_sha256_hex(manifest, mlen, sha);
    mh_release_id(manifest, mlen, id);
    if (!same(res, row, C_MSHA, sha) || !same(res, row, C_R_MSHA, sha))
        problem(c, "the release's manifest does not hash to the entry's manifest_sha256");
    if (!same(res, row, C_R_ID, id))
        problem(c, "the release id is not the manifest's (%s)", id);
    if (strcmp(PQgetvalue(res, row, C_SIG), PQgetvalue(res, row, C_R_SIG)) != 0)
        problem(c, "the release's signature differs from the entry's");
    if (!same(res, row, C_R_SEQ, PQgetvalue(res, row, C_SEQ)) ||
        !same(res, row, C_R_PREV, PQgetvalue(res, row, C_PREV)) ||
        !same(res, row, C_R_HASH, PQgetvalue(res, row, C_HASH)))
        problem(c, "the release's log_seq/log_prev/log_hash differ from the entry");

    if (mh_manifest_parse(manifest, mlen, &m, err, sizeof(err)) != 0) {
        problem(c, "%s", err);
        goto done;
    }
    snprintf(num, sizeof(num), "%lld", (long long)m.size);
    snprintf(vkey, sizeof(vkey), "{%u,%u,%u,%u}", m.version_key[0], m.version_key[1],
             m.version_key[2], m.version_key[3]);
    if (!same(res, row, C_R_VERSION, m.version) || !same(res, row, C_R_VKEY, vkey) ||
        !same(res, row, C_R_HARDWARE, m.hardware) || !same(res, row, C_R_SIZE, num) ||
        !same(res, row, C_R_IMAGE, m.sha256) || !same(res, row, C_R_KEY_ID, m.key_id) ||
        !same(res, row, C_R_NOTES, m.notes))
        problem(c, "the release's version, hardware, size, image_sha256, key_id or notes differ "
                   "from its manifest");
    snprintf(num, sizeof(num), "%lld", (long long)m.issued);
    bool times = same(res, row, C_R_ISSUED, num);
    snprintf(num, sizeof(num), "%lld", (long long)m.expires);
    if (!times || !same(res, row, C_R_EXPIRES, num))
        problem(c, "the release's issued_at/expires_at differ from its manifest");

    pub = PQgetisnull(res, row, C_K_PUB)
              ? NULL
              : unhex(PQgetvalue(res, row, C_K_PUB), MH_RELEASE_PUBKEY_LEN, &publen);
    key = pub != NULL ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, publen) : NULL;
    if (key == NULL)
        problem(c, "no usable public key recorded for key %s", m.key_id);
    else if (sig != NULL && mh_release_verify(key, manifest, mlen, sig, err, sizeof(err)) != 0)
        problem(c, "the signature does not verify with key %s", m.key_id);
done:
    EVP_PKEY_free(key);
    free(pub);
    mh_manifest_dispose(&m);
    free(manifest);
}

int upg_rel_log_verify(const upg_rel_ctx_t *ctx)
{
    int rc = -1;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    checker_t c = {0, 0};
    char prev[MH_RELEASE_HASH_HEX + 1], hash[MH_RELEASE_HASH_HEX + 1];

    memset(prev, '0', MH_RELEASE_HASH_HEX);
    prev[MH_RELEASE_HASH_HEX] = '\0';
    conn = upg_rel_connect(ctx);
    if (conn == NULL)
        goto fail;
    /* One snapshot for the log and the releases. */
    res = upg_rel_query(conn, "log verify: BEGIN",
                        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL);
    if (res == NULL)
        goto fail;
    PQclear(res);
    res = upg_rel_query(conn, "log verify: reading the log", log_sql, 0, NULL);
    if (res == NULL)
        goto fail;
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        size_t siglen = 0;
        c.seq = i + 1;
        char want_seq[24];
        uint8_t *sig = unhex(PQgetvalue(res, i, C_SIG), MH_RELEASE_SIG_LEN, &siglen);
        snprintf(want_seq, sizeof(want_seq), "%lld", c.seq);
        if (!same(res, i, C_SEQ, want_seq))
            problem(&c, "has seq %s: the log has a gap", PQgetvalue(res, i, C_SEQ));
        if (!same(res, i, C_PREV, prev))
            problem(&c, "prev_hash is not the previous entry's hash");
        /* The chain goes on from the recorded hash, so that one bad entry is reported once. */
        if (sig == NULL ||
            mh_release_log_hash(c.seq, PQgetvalue(res, i, C_PREV), PQgetvalue(res, i, C_MSHA), sig,
                                hash) != 0 ||
            !same(res, i, C_HASH, hash))
            problem(&c, "entry_hash is not the hash of the entry");
        if (PQgetisnull(res, i, C_R_ID))
            problem(&c, "release %s is missing", PQgetvalue(res, i, C_RELEASE));
        else
            check_release(&c, res, i, sig);
        snprintf(prev, sizeof(prev), "%s", PQgetvalue(res, i, C_HASH));
        free(sig);
    }
    PQclear(res);
    res = upg_rel_query(conn, "log verify: releases outside the log",
                        "SELECT r.id FROM releases r WHERE NOT EXISTS"
                        " (SELECT 1 FROM release_log l WHERE l.release_id = r.id) ORDER BY r.id",
                        0, NULL);
    if (res == NULL)
        goto fail;
    c.seq = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        mh_log(MH_LOG_ERROR, "release %s is not in the log", PQgetvalue(res, i, 0));
        c.errors++;
    }
    PQclear(res);
    res = upg_rel_query(conn, "log verify: COMMIT", "COMMIT", 0, NULL);
    if (res == NULL)
        goto fail;
    if (mh_tool_print_json(json_pack("{s:i, s:o, s:I, s:b}", "entries", n, "head",
                                     n > 0 ? json_string(prev) : json_null(), "errors",
                                     (json_int_t)c.errors, "verified", c.errors == 0)) != 0)
        goto fail;
    if (c.errors > 0) {
        mh_log(MH_LOG_ERROR, "log verify: %ld problem(s)", c.errors);
        goto fail;
    }
    rc = 0;
fail:
    PQclear(res);
    PQfinish(conn);
    return rc;
}
