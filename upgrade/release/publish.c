/*
 * publish: a signed release becomes part of the service. Everything that can be checked
 * without the database is checked first (manifest, signature by a trusted key, expiry), then
 * the database is asked whether the release or its version is new, then the image is copied
 * into the store while its size and SHA-256 are checked, and only then is the release
 * appended to the log, in one transaction that holds the log's lock from reading its head to
 * writing the new entry, so that concurrent publishers chain one after the other.
 */
#include "release_internal.h"

#include "common/tool.h"
#include "common/alloc.h"
#include "common/ids.h"
#include "common/fileio.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* A signature file: 88 base64 characters and a newline; anything much larger is not one. */
#define SIG_FILE_MAX 256
/* Trusted key files: a PEM public key is about 113 bytes. */
#define TRUSTED_MAX_FILES 1000

/* ---- trusted keys ------------------------------------------------------------------------- */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.pub files of dir, sorted (owned array of owned paths). Returns 0 or -1 (logged). */
static int list_pub_files(const char *dir, char ***out, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t count = 0;

    *out = NULL;
    *n = 0;
    if (d == NULL) {
        mh_log(MH_LOG_ERROR, "trusted keys %s: %s", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".pub") != 0 || e->d_name[0] == '.')
            continue;
        if (count == TRUSTED_MAX_FILES) {
            mh_log(MH_LOG_ERROR, "trusted keys %s: more than %d .pub files", dir,
                   TRUSTED_MAX_FILES);
            goto fail;
        }
        names = mh_realloc(names, (count + 1) * sizeof(*names));
        size_t plen = strlen(dir) + 1 + len + 1;
        names[count] = mh_malloc(plen);
        snprintf(names[count], plen, "%s/%s", dir, e->d_name);
        count++;
    }
    closedir(d);
    if (count > 0)
        qsort(names, count, sizeof(*names), cmp_names);
    *out = names;
    *n = count;
    return 0;
fail:
    closedir(d);
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return -1;
}

EVP_PKEY *upg_rel_trusted_key(const char *path, const char *key_id)
{
    EVP_PKEY *found = NULL;
    char **files = NULL;
    size_t nfiles = 0;
    struct stat st;
    char err[256];
    bool failed = false;

    if (stat(path, &st) != 0) {
        mh_log(MH_LOG_ERROR, "trusted keys %s: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        if (list_pub_files(path, &files, &nfiles) != 0)
            return NULL;
    } else {
        files = mh_malloc(sizeof(*files));
        files[0] = mh_strdup(path);
        nfiles = 1;
    }
    /* Every file must be a key: a broken trust store is an error, not a smaller one. */
    for (size_t i = 0; i < nfiles && !failed; i++) {
        char id[MH_RELEASE_KEY_ID_LEN + 1];
        EVP_PKEY *key = mh_release_load_public(files[i], err, sizeof(err));
        if (key == NULL || mh_release_key_ids(key, NULL, id) != 0) {
            mh_log(MH_LOG_ERROR, "trusted keys: %s", key == NULL ? err : files[i]);
            failed = true;
        } else if (found == NULL && strcmp(id, key_id) == 0) {
            found = key;
            key = NULL;
        }
        EVP_PKEY_free(key);
    }
    if (!failed && found == NULL)
        mh_log(MH_LOG_ERROR,
               "the manifest's key %s is not trusted (none of the %zu key(s) of %s has that id)",
               key_id, nfiles, path);
    if (failed) {
        EVP_PKEY_free(found);
        found = NULL;
    }
    for (size_t i = 0; i < nfiles; i++)
        free(files[i]);
    free(files);
    return found;
}

/* ---- the database part -------------------------------------------------------------------- */

/* What publish writes, gathered once everything is checked. */
typedef struct release_row {
    const uint8_t *manifest;
    size_t manifest_len;
    const mh_manifest_t *m;
    uint8_t sig[MH_RELEASE_SIG_LEN];
    char id[MH_RELEASE_ID_LEN + 1];
    char manifest_sha256[MH_RELEASE_HASH_HEX + 1];
    uint8_t pubkey[MH_RELEASE_PUBKEY_LEN];
    char fingerprint[MH_RELEASE_HASH_HEX + 1];
    /* filled in the transaction */
    int64_t seq;
    char prev[MH_RELEASE_HASH_HEX + 1];
    char hash[MH_RELEASE_HASH_HEX + 1];
} release_row_t;

/* bytea input in PostgreSQL's hex format: "\x" and two hex digits per byte (owned). */
static char *bytea_hex(const uint8_t *buf, size_t len)
{
    char *out = mh_malloc(2 + 2 * len + 1);
    out[0] = '\\';
    out[1] = 'x';
    mh_hex_encode(buf, len, out + 2);
    return out;
}

/*
 * Refuses a release already published, or another release of the same version (compared as
 * versions: 2.4 is 2.4.0) for the same hardware. Returns 0 when new, -1 after logging.
 */
static int check_new(PGconn *conn, const release_row_t *r, const char *vkey)
{
    int rc = -1;
    const char *params[3] = {r->id, r->m->hardware, vkey};
    PGresult *res = upg_rel_query(conn, "publish: looking for the release",
                                  "SELECT id, version FROM releases"
                                  " WHERE id = $1 OR (hardware = $2 AND version_key = $3::int[])"
                                  " ORDER BY id = $1 DESC LIMIT 1",
                                  3, params);
    if (res == NULL)
        goto fail;
    if (PQntuples(res) > 0) {
        if (strcmp(PQgetvalue(res, 0, 0), r->id) == 0)
            mh_log(MH_LOG_ERROR, "release %s (%s for %s) is already published", r->id,
                   r->m->version, r->m->hardware);
        else
            mh_log(MH_LOG_ERROR,
                   "version %s for %s is already published (release %s, version %s): a new "
                   "release needs a new version",
                   r->m->version, r->m->hardware, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
        goto fail;
    }
    rc = 0;
fail:
    PQclear(res);
    return rc;
}

static void version_key_text(const mh_manifest_t *m, char *out, size_t len)
{
    snprintf(out, len, "{%u,%u,%u,%u}", m->version_key[0], m->version_key[1], m->version_key[2],
             m->version_key[3]);
}

/* The transaction: key, log head under the lock, the release and its log entry. */
static int append_release(PGconn *conn, release_row_t *r)
{
    int rc = -1;
    PGresult *res = NULL;
    char vkey[64], seq[24], size[24], issued[24], expires[24];
    char *manifest_hex = bytea_hex(r->manifest, r->manifest_len);
    char *sig_hex = bytea_hex(r->sig, sizeof(r->sig));
    char *key_hex = bytea_hex(r->pubkey, sizeof(r->pubkey));
    const mh_manifest_t *m = r->m;
    bool in_tx = false;

    version_key_text(m, vkey, sizeof(vkey));
    res = upg_rel_query(conn, "publish: BEGIN", "BEGIN", 0, NULL);
    if (res == NULL)
        goto fail;
    in_tx = true;
    PQclear(res);
    /* EXCLUSIVE lets readers read the log and the API serve it, but no second publisher. */
    res = upg_rel_query(conn, "publish: locking the release log",
                        "LOCK TABLE release_log IN EXCLUSIVE MODE", 0, NULL);
    if (res == NULL)
        goto fail;
    PQclear(res);
    res = NULL;
    /* Again under the lock: another publisher may have been quicker. */
    if (check_new(conn, r, vkey) != 0)
        goto fail;

    const char *kparams[3] = {m->key_id, key_hex, r->fingerprint};
    res = upg_rel_query(conn, "publish: recording the key",
                        "INSERT INTO release_keys (key_id, public_key, fingerprint)"
                        " VALUES ($1, $2::bytea, $3) ON CONFLICT (key_id) DO NOTHING",
                        3, kparams);
    if (res == NULL)
        goto fail;
    PQclear(res);
    res = upg_rel_query(conn, "publish: reading the key",
                        "SELECT public_key = $2::bytea FROM release_keys WHERE key_id = $1", 2,
                        kparams);
    if (res == NULL)
        goto fail;
    if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        mh_log(MH_LOG_ERROR, "publish: key id %s is recorded for another public key", m->key_id);
        goto fail;
    }
    PQclear(res);

    res =
        upg_rel_query(conn, "publish: reading the log head",
                      "SELECT seq, entry_hash FROM release_log ORDER BY seq DESC LIMIT 1", 0, NULL);
    if (res == NULL)
        goto fail;
    if (PQntuples(res) == 0) {
        r->seq = 1;
        memset(r->prev, '0', MH_RELEASE_HASH_HEX);
        r->prev[MH_RELEASE_HASH_HEX] = '\0';
    } else {
        r->seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10) + 1;
        snprintf(r->prev, sizeof(r->prev), "%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    res = NULL;
    if (mh_release_log_hash(r->seq, r->prev, r->manifest_sha256, r->sig, r->hash) != 0) {
        mh_log(MH_LOG_ERROR, "publish: the log head (seq %lld) is malformed",
               (long long)r->seq - 1);
        goto fail;
    }

    snprintf(seq, sizeof(seq), "%lld", (long long)r->seq);
    snprintf(size, sizeof(size), "%lld", (long long)m->size);
    snprintf(issued, sizeof(issued), "%lld", (long long)m->issued);
    snprintf(expires, sizeof(expires), "%lld", (long long)m->expires);
    const char *params[16] = {
        r->id,       manifest_hex, r->manifest_sha256, sig_hex,  m->key_id, m->version, vkey,
        m->hardware, size,         m->sha256,          m->notes, issued,    expires,    seq,
        r->prev,     r->hash};
    res = upg_rel_query(conn, "publish: inserting the release",
                        "INSERT INTO releases (id, manifest, manifest_sha256, signature, key_id,"
                        " version, version_key, hardware, size, image_sha256, notes, issued_at,"
                        " expires_at, log_seq, log_prev, log_hash)"
                        " VALUES ($1, $2::bytea, $3, $4::bytea, $5, $6, $7::int[], $8,"
                        " $9::bigint, $10, $11, to_timestamp($12::bigint),"
                        " to_timestamp($13::bigint), $14::bigint, $15, $16)",
                        16, params);
    if (res == NULL)
        goto fail;
    PQclear(res);
    const char *lparams[6] = {seq, r->id, r->manifest_sha256, sig_hex, r->prev, r->hash};
    res = upg_rel_query(conn, "publish: appending to the log",
                        "INSERT INTO release_log (seq, release_id, manifest_sha256, signature,"
                        " prev_hash, entry_hash) VALUES ($1::bigint, $2, $3, $4::bytea, $5, $6)",
                        6, lparams);
    if (res == NULL)
        goto fail;
    PQclear(res);
    res = upg_rel_query(conn, "publish: COMMIT", "COMMIT", 0, NULL);
    if (res == NULL)
        goto fail;
    in_tx = false;
    rc = 0;
fail:
    PQclear(res);
    if (in_tx)
        upg_rel_rollback(conn);
    free(key_hex);
    free(sig_hex);
    free(manifest_hex);
    return rc;
}

/* ---- the job ------------------------------------------------------------------------------ */

static char *default_sig_path(const char *manifest)
{
    size_t len = strlen(manifest) + sizeof(".sig");
    char *p = mh_malloc(len);
    snprintf(p, len, "%s.sig", manifest);
    return p;
}

/* The signature file: base64 of 64 bytes on one line. */
static int read_signature(const char *path, uint8_t sig[MH_RELEASE_SIG_LEN])
{
    int rc = -1;
    size_t len = 0, n = 0;
    uint8_t *raw = NULL;
    char *text = mh_read_file(path, SIG_FILE_MAX, "signature", &len);

    if (text == NULL) {
        mh_log(MH_LOG_ERROR, "no usable signature: is the manifest signed? (sign writes "
                             "MANIFEST.sig; --signature names another file)");
        goto fail;
    }
    raw = mh_base64_decode(text, len, &n);
    if (raw == NULL || n != MH_RELEASE_SIG_LEN) {
        mh_log(MH_LOG_ERROR, "signature %s: not the base64 of a %d-byte Ed25519 signature", path,
               MH_RELEASE_SIG_LEN);
        goto fail;
    }
    memcpy(sig, raw, MH_RELEASE_SIG_LEN);
    rc = 0;
fail:
    free(raw);
    free(text);
    return rc;
}

int upg_rel_publish(const upg_rel_ctx_t *ctx, const upg_rel_args_t *args)
{
    int rc = -1;
    char err[256];
    uint8_t *manifest = NULL;
    size_t manifest_len = 0;
    mh_manifest_t m;
    release_row_t r;
    EVP_PKEY *key = NULL;
    PGconn *conn = NULL;
    char *sig_path =
        args->signature ? mh_strdup(args->signature) : default_sig_path(args->manifest);
    char *stored = NULL;
    char vkey[64];

    memset(&m, 0, sizeof(m));
    memset(&r, 0, sizeof(r));
    manifest =
        (uint8_t *)mh_read_file(args->manifest, MH_RELEASE_MAX_MANIFEST, "manifest", &manifest_len);
    if (manifest == NULL)
        goto fail;
    if (mh_manifest_parse(manifest, manifest_len, &m, err, sizeof(err)) != 0) {
        mh_log(MH_LOG_ERROR, "%s: %s", args->manifest, err);
        goto fail;
    }
    if (read_signature(sig_path, r.sig) != 0)
        goto fail;
    key = upg_rel_trusted_key(ctx->trusted_keys, m.key_id);
    if (key == NULL)
        goto fail;
    if (mh_release_verify(key, manifest, manifest_len, r.sig, err, sizeof(err)) != 0) {
        mh_log(MH_LOG_ERROR, "%s: the signature %s does not verify with trusted key %s",
               args->manifest, sig_path, m.key_id);
        goto fail;
    }
    if (m.expires <= (int64_t)time(NULL)) {
        mh_log(MH_LOG_ERROR, "%s: expired (expires %lld): it would never be offered; sign it again",
               args->manifest, (long long)m.expires);
        goto fail;
    }
    if (mh_release_raw_public(key, r.pubkey) != 0 ||
        mh_release_key_ids(key, r.fingerprint, NULL) != 0)
        goto fail;
    r.manifest = manifest;
    r.manifest_len = manifest_len;
    r.m = &m;
    mh_release_id(manifest, manifest_len, r.id);
    mh_sha256_hex(manifest, manifest_len, r.manifest_sha256);

    conn = upg_rel_connect(ctx);
    if (conn == NULL)
        goto fail;
    version_key_text(&m, vkey, sizeof(vkey));
    if (check_new(conn, &r, vkey) != 0)
        goto fail;
    if (upg_rel_store_image(ctx->store, args->image, m.size, m.sha256, &stored) != 0)
        goto fail;
    if (append_release(conn, &r) != 0) {
        mh_log(MH_LOG_WARN, "the image stays in the store (%s), unreferenced", stored);
        goto fail;
    }
    mh_log(MH_LOG_INFO, "published release %s (%s for %s) as log entry %lld", r.id, m.version,
           m.hardware, (long long)r.seq);
    rc = mh_tool_print_json(json_pack(
        "{s:s, s:s, s:s, s:I, s:s, s:I, s:s, s:s, s:s}", "release", r.id, "version", m.version,
        "hardware", m.hardware, "size", (json_int_t)m.size, "image_sha256", m.sha256, "log_seq",
        (json_int_t)r.seq, "log_hash", r.hash, "key_id", m.key_id, "stored", stored));
fail:
    free(stored);
    PQfinish(conn);
    EVP_PKEY_free(key);
    mh_manifest_dispose(&m);
    free(manifest);
    free(sig_path);
    return rc;
}
