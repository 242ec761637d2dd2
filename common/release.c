/*
 * Firmware releases (release.h, docs/upgrade.md): keys, manifests, versions, the log hash.
 *
 * The manifest is parsed with jansson and then checked to be byte for byte the canonical
 * serialisation of what was parsed: a manifest has exactly one spelling, so the fields the
 * service stores and shows are the ones a meter reads from the signed bytes, whatever
 * escapes, blanks or key order a hand-made manifest might try.
 */
#include "release.h"

#include "alloc.h"
#include "ids.h"
#include "log.h"

#include <jansson.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Latest accepted issued/expires: the end of year 9999, what PostgreSQL's timestamptz and
 * every meter's clock arithmetic can hold. */
#define MANIFEST_TIME_MAX 253402300799LL
#define LOG_PREFIX "meterhub-release-log/1\n"
/* base64 of a signature: 4 * ceil(64 / 3) = 88 characters. */
#define SIG_B64_LEN 88

/* The first entry of OpenSSL's error queue as text (or "unknown"), clearing the queue so a
 * failure reported through err does not linger into an unrelated later log line. */
static const char *openssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_error();
    if (e == 0)
        snprintf(buf, len, "unknown OpenSSL error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* ---- keys --------------------------------------------------------------------------------- */

EVP_PKEY *mh_release_keygen(void)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (key == NULL)
        mh_log_openssl(MH_LOG_ERROR, "Ed25519 key generation");
    return key;
}

/* Keys are never encrypted here: refuse a passphrase prompt rather than read the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static EVP_PKEY *check_ed25519(EVP_PKEY *key, const char *what, char *err, size_t errlen)
{
    if (key != NULL && EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
        mh_errf(err, errlen, "%s: not an Ed25519 key", what);
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

/* Reads the PEM key of path: private (PKCS#8) or public (SubjectPublicKeyInfo), Ed25519. */
static EVP_PKEY *load_key(const char *path, bool private_key, char *err, size_t errlen)
{
    char reason[256];
    EVP_PKEY *key = NULL;
    BIO *bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        mh_errf(err, errlen, "%s: cannot open: %s", path, openssl_reason(reason, sizeof(reason)));
        goto fail;
    }
    key = private_key ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)
                      : PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    if (key == NULL) {
        mh_errf(err, errlen, "%s: not a PEM %s key: %s", path, private_key ? "private" : "public",
                openssl_reason(reason, sizeof(reason)));
        goto fail;
    }
    key = check_ed25519(key, path, err, errlen);
fail:
    BIO_free(bio);
    return key;
}

EVP_PKEY *mh_release_load_private(const char *path, char *err, size_t errlen)
{
    return load_key(path, true, err, errlen);
}

EVP_PKEY *mh_release_load_public(const char *path, char *err, size_t errlen)
{
    return load_key(path, false, err, errlen);
}

EVP_PKEY *mh_release_public_from_pem(const char *pem, size_t len, char *err, size_t errlen)
{
    char reason[256];
    EVP_PKEY *key = NULL;
    BIO *bio = NULL;

    if (len > INT_MAX) {
        mh_errf(err, errlen, "public key: PEM too large");
        goto fail;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        mh_errf(err, errlen, "public key: %s", openssl_reason(reason, sizeof(reason)));
        goto fail;
    }
    key = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    if (key == NULL) {
        mh_errf(err, errlen, "public key: not a PEM public key: %s",
                openssl_reason(reason, sizeof(reason)));
        goto fail;
    }
    key = check_ed25519(key, "public key", err, errlen);
fail:
    BIO_free(bio);
    return key;
}

int mh_release_raw_public(EVP_PKEY *key, uint8_t out[MH_RELEASE_PUBKEY_LEN])
{
    size_t len = MH_RELEASE_PUBKEY_LEN;
    if (key == NULL || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519 ||
        EVP_PKEY_get_raw_public_key(key, out, &len) != 1 || len != MH_RELEASE_PUBKEY_LEN) {
        mh_log_openssl(MH_LOG_ERROR, "raw Ed25519 public key");
        return -1;
    }
    return 0;
}

int mh_release_key_ids(EVP_PKEY *key, char fingerprint[MH_RELEASE_HASH_HEX + 1],
                       char key_id[MH_RELEASE_KEY_ID_LEN + 1])
{
    uint8_t raw[MH_RELEASE_PUBKEY_LEN];
    char fp[MH_RELEASE_HASH_HEX + 1];

    if (mh_release_raw_public(key, raw) != 0)
        return -1;
    mh_sha256_hex(raw, sizeof(raw), fp);
    if (fingerprint != NULL)
        memcpy(fingerprint, fp, sizeof(fp));
    if (key_id != NULL) {
        memcpy(key_id, fp, MH_RELEASE_KEY_ID_LEN);
        key_id[MH_RELEASE_KEY_ID_LEN] = '\0';
    }
    return 0;
}

/* ---- versions ----------------------------------------------------------------------------- */

int mh_release_version_parse(const char *s, uint32_t out[MH_RELEASE_VERSION_PARTS])
{
    uint32_t parts[MH_RELEASE_VERSION_PARTS] = {0};
    size_t nparts = 0;

    if (s == NULL || s[0] == '\0')
        return -1;
    for (const char *p = s;;) {
        uint32_t v = 0;
        int digits = 0;
        while (p[digits] >= '0' && p[digits] <= '9') {
            if (digits == 9)
                return -1;
            v = v * 10 + (uint32_t)(p[digits] - '0');
            digits++;
        }
        if (digits == 0 || nparts == MH_RELEASE_VERSION_PARTS)
            return -1;
        parts[nparts++] = v;
        p += digits;
        if (*p == '\0')
            break;
        if (*p != '.')
            return -1;
        p++;
    }
    memcpy(out, parts, sizeof(parts));
    return 0;
}

int mh_release_version_cmp(const uint32_t a[MH_RELEASE_VERSION_PARTS],
                           const uint32_t b[MH_RELEASE_VERSION_PARTS])
{
    for (size_t i = 0; i < MH_RELEASE_VERSION_PARTS; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

/* ---- manifests ---------------------------------------------------------------------------- */

/* The keys in their documented (and serialised) order. */
static const char *const manifest_keys[] = {"format", "version", "hardware", "size",  "sha256",
                                            "notes",  "issued",  "expires",  "key_id"};
#define NKEYS (sizeof(manifest_keys) / sizeof(manifest_keys[0]))

/* Checks the fields of m as the documented rules say (everything but the byte layout). */
static int check_fields(const mh_manifest_t *m, char *err, size_t errlen)
{
    uint32_t vk[MH_RELEASE_VERSION_PARTS];

    if (strnlen(m->version, sizeof(m->version)) > MH_RELEASE_MAX_VERSION ||
        mh_release_version_parse(m->version, vk) != 0) {
        mh_errf(err, errlen,
                "manifest: version: expected 1 to 4 dot-separated numbers of 1 to 9 digits");
        return -1;
    }
    if (!mh_hardware_valid(m->hardware)) {
        mh_errf(err, errlen, "manifest: hardware: expected [a-z0-9][a-z0-9._-]{0,31}");
        return -1;
    }
    if (m->size < 1 || m->size > MH_RELEASE_MAX_SIZE) {
        mh_errf(err, errlen, "manifest: size: expected 1 to %lld bytes",
                (long long)MH_RELEASE_MAX_SIZE);
        return -1;
    }
    if (!mh_hex_valid(m->sha256, MH_RELEASE_HASH_HEX)) {
        mh_errf(err, errlen, "manifest: sha256: expected 64 lowercase hex digits");
        return -1;
    }
    if (m->notes != NULL && strlen(m->notes) > MH_RELEASE_MAX_NOTES) {
        mh_errf(err, errlen, "manifest: notes: longer than %d bytes", MH_RELEASE_MAX_NOTES);
        return -1;
    }
    if (m->issued < 0 || m->issued > MANIFEST_TIME_MAX || m->expires < 0 ||
        m->expires > MANIFEST_TIME_MAX) {
        mh_errf(err, errlen, "manifest: issued/expires: expected Unix seconds from 0 to %lld",
                MANIFEST_TIME_MAX);
        return -1;
    }
    if (m->expires <= m->issued) {
        mh_errf(err, errlen, "manifest: expires is not after issued");
        return -1;
    }
    if (!mh_hex_valid(m->key_id, MH_RELEASE_KEY_ID_LEN)) {
        mh_errf(err, errlen, "manifest: key_id: expected 16 lowercase hex digits");
        return -1;
    }
    return 0;
}

int mh_manifest_serialize(const mh_manifest_t *m, uint8_t **out, size_t *outlen, char *err,
                          size_t errlen)
{
    int rc = -1;
    json_t *o = NULL;
    char *text = NULL;
    const char *notes = m->notes != NULL ? m->notes : "";

    *out = NULL;
    *outlen = 0;
    if (check_fields(m, err, errlen) != 0)
        goto fail;
    /* json_pack refuses a string that is not valid UTF-8: such notes cannot be serialised. */
    o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:s}", "format", MH_RELEASE_FORMAT,
                  "version", m->version, "hardware", m->hardware, "size", (json_int_t)m->size,
                  "sha256", m->sha256, "notes", notes, "issued", (json_int_t)m->issued, "expires",
                  (json_int_t)m->expires, "key_id", m->key_id);
    if (o == NULL) {
        mh_errf(err, errlen, "manifest: notes: not valid UTF-8");
        goto fail;
    }
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text == NULL) {
        mh_errf(err, errlen, "manifest: cannot serialise");
        goto fail;
    }
    size_t len = strlen(text);
    /* Control characters in notes are written as 6-byte escapes: bound the whole line too. */
    if (len + 1 > MH_RELEASE_MAX_MANIFEST) {
        mh_errf(err, errlen, "manifest: longer than %d bytes", MH_RELEASE_MAX_MANIFEST);
        goto fail;
    }
    *out = mh_malloc(len + 1);
    memcpy(*out, text, len);
    (*out)[len] = '\n';
    *outlen = len + 1;
    rc = 0;
fail:
    free(text);
    json_decref(o);
    return rc;
}

/* Copies the string value of key into dst[cap] (its length must be below cap). */
static int get_string(json_t *root, const char *key, char *dst, size_t cap, char *err,
                      size_t errlen)
{
    json_t *v = json_object_get(root, key);
    if (!json_is_string(v)) {
        mh_errf(err, errlen, "manifest: %s: expected a string", key);
        return -1;
    }
    size_t n = json_string_length(v);
    if (n >= cap || memchr(json_string_value(v), '\0', n) != NULL) {
        mh_errf(err, errlen, "manifest: %s: too long", key);
        return -1;
    }
    memcpy(dst, json_string_value(v), n);
    dst[n] = '\0';
    return 0;
}

static int get_int(json_t *root, const char *key, int64_t *dst, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);
    if (!json_is_integer(v)) {
        mh_errf(err, errlen, "manifest: %s: expected an integer", key);
        return -1;
    }
    *dst = (int64_t)json_integer_value(v);
    return 0;
}

int mh_manifest_parse(const uint8_t *buf, size_t len, mh_manifest_t *m, char *err, size_t errlen)
{
    int rc = -1;
    json_t *root = NULL;
    json_error_t jerr;
    /* Room for one character past each bound, so that "too long" is told from the rule. */
    char sha[MH_RELEASE_HASH_HEX + 2], key_id[MH_RELEASE_KEY_ID_LEN + 2];
    uint8_t *canon = NULL;
    size_t canon_len = 0;
    const char *key;
    json_t *value;

    memset(m, 0, sizeof(*m));
    if (len == 0 || len > MH_RELEASE_MAX_MANIFEST) {
        mh_errf(err, errlen, "manifest: expected 1 to %d bytes, got %zu", MH_RELEASE_MAX_MANIFEST,
                len);
        goto fail;
    }
    /* jansson refuses invalid UTF-8, \u0000, duplicate keys (with this flag) and anything
     * after the value but blanks; the canonical check below refuses the blanks. */
    root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        mh_errf(err, errlen, "manifest: not valid JSON: %s (byte %d)", jerr.text, jerr.position);
        goto fail;
    }
    if (!json_is_object(root)) {
        mh_errf(err, errlen, "manifest: not a JSON object");
        goto fail;
    }
    json_object_foreach(root, key, value)
    {
        bool known = false;
        for (size_t i = 0; i < NKEYS && !known; i++)
            known = strcmp(key, manifest_keys[i]) == 0;
        if (!known) {
            mh_errf(err, errlen, "manifest: unknown key '%.40s'", key);
            goto fail;
        }
    }
    for (size_t i = 0; i < NKEYS; i++)
        if (json_object_get(root, manifest_keys[i]) == NULL) {
            mh_errf(err, errlen, "manifest: missing key '%s'", manifest_keys[i]);
            goto fail;
        }

    json_t *format = json_object_get(root, "format");
    if (!json_is_string(format) || strcmp(json_string_value(format), MH_RELEASE_FORMAT) != 0) {
        mh_errf(err, errlen, "manifest: format: expected \"%s\"", MH_RELEASE_FORMAT);
        goto fail;
    }
    if (get_string(root, "version", m->version, sizeof(m->version), err, errlen) != 0 ||
        get_string(root, "hardware", m->hardware, sizeof(m->hardware), err, errlen) != 0 ||
        get_string(root, "sha256", sha, sizeof(sha), err, errlen) != 0 ||
        get_string(root, "key_id", key_id, sizeof(key_id), err, errlen) != 0 ||
        get_int(root, "size", &m->size, err, errlen) != 0 ||
        get_int(root, "issued", &m->issued, err, errlen) != 0 ||
        get_int(root, "expires", &m->expires, err, errlen) != 0)
        goto fail;
    if (!mh_hex_valid(sha, MH_RELEASE_HASH_HEX)) {
        mh_errf(err, errlen, "manifest: sha256: expected 64 lowercase hex digits");
        goto fail;
    }
    memcpy(m->sha256, sha, sizeof(m->sha256));
    if (!mh_hex_valid(key_id, MH_RELEASE_KEY_ID_LEN)) {
        mh_errf(err, errlen, "manifest: key_id: expected 16 lowercase hex digits");
        goto fail;
    }
    memcpy(m->key_id, key_id, sizeof(m->key_id));

    json_t *notes = json_object_get(root, "notes");
    if (!json_is_string(notes)) {
        mh_errf(err, errlen, "manifest: notes: expected a string");
        goto fail;
    }
    if (json_string_length(notes) > MH_RELEASE_MAX_NOTES) {
        mh_errf(err, errlen, "manifest: notes: longer than %d bytes", MH_RELEASE_MAX_NOTES);
        goto fail;
    }
    m->notes = mh_strndup(json_string_value(notes), json_string_length(notes));

    if (check_fields(m, err, errlen) != 0)
        goto fail;
    if (mh_release_version_parse(m->version, m->version_key) != 0)
        goto fail; /* cannot happen: check_fields parsed it */

    if (mh_manifest_serialize(m, &canon, &canon_len, err, errlen) != 0)
        goto fail;
    if (canon_len != len || memcmp(canon, buf, len) != 0) {
        mh_errf(err, errlen,
                "manifest: not in canonical form (one line of compact JSON, keys in the "
                "documented order, then one newline)");
        goto fail;
    }
    rc = 0;
fail:
    free(canon);
    json_decref(root);
    if (rc != 0)
        mh_manifest_dispose(m);
    return rc;
}

void mh_manifest_dispose(mh_manifest_t *m)
{
    if (m == NULL)
        return;
    free(m->notes);
    memset(m, 0, sizeof(*m));
}

int mh_release_id(const uint8_t *manifest, size_t len, char out[MH_RELEASE_ID_LEN + 1])
{
    char hex[MH_RELEASE_HASH_HEX + 1];
    mh_sha256_hex(manifest, len, hex);
    memcpy(out, hex, MH_RELEASE_ID_LEN);
    out[MH_RELEASE_ID_LEN] = '\0';
    return 0;
}

int mh_release_sign(EVP_PKEY *key, const uint8_t *manifest, size_t len,
                    uint8_t sig[MH_RELEASE_SIG_LEN], char *err, size_t errlen)
{
    int rc = -1;
    char reason[256];
    size_t siglen = MH_RELEASE_SIG_LEN;
    EVP_MD_CTX *ctx = NULL;

    if (key == NULL || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
        mh_errf(err, errlen, "sign: not an Ed25519 key");
        goto fail;
    }
    ctx = EVP_MD_CTX_new();
    /* Ed25519 is one-shot: no digest is named, the whole message goes to EVP_DigestSign. */
    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1 ||
        EVP_DigestSign(ctx, sig, &siglen, manifest, len) != 1 || siglen != MH_RELEASE_SIG_LEN) {
        mh_errf(err, errlen, "sign: %s", openssl_reason(reason, sizeof(reason)));
        goto fail;
    }
    rc = 0;
fail:
    EVP_MD_CTX_free(ctx);
    return rc;
}

int mh_release_verify(EVP_PKEY *pub, const uint8_t *manifest, size_t len,
                      const uint8_t sig[MH_RELEASE_SIG_LEN], char *err, size_t errlen)
{
    int rc = -1;
    char reason[256];
    EVP_MD_CTX *ctx = NULL;

    if (pub == NULL || EVP_PKEY_get_id(pub) != EVP_PKEY_ED25519) {
        mh_errf(err, errlen, "signature: not an Ed25519 key");
        goto fail;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) != 1) {
        mh_errf(err, errlen, "signature: %s", openssl_reason(reason, sizeof(reason)));
        goto fail;
    }
    if (EVP_DigestVerify(ctx, sig, MH_RELEASE_SIG_LEN, manifest, len) != 1) {
        ERR_clear_error();
        mh_errf(err, errlen, "signature: does not verify with key");
        goto fail;
    }
    rc = 0;
fail:
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* ---- the release log ---------------------------------------------------------------------- */

int mh_release_log_hash(int64_t seq, const char *prev, const char *manifest_sha256,
                        const uint8_t sig[MH_RELEASE_SIG_LEN], char out[MH_RELEASE_HASH_HEX + 1])
{
    int rc = -1;
    char *sig_b64 = NULL;
    char text[sizeof(LOG_PREFIX) + 20 + 1 + 2 * (MH_RELEASE_HASH_HEX + 1) + SIG_B64_LEN + 2];

    if (seq < 1 || !mh_hex_valid(prev, MH_RELEASE_HASH_HEX) ||
        !mh_hex_valid(manifest_sha256, MH_RELEASE_HASH_HEX))
        goto fail;
    sig_b64 = mh_base64_encode(sig, MH_RELEASE_SIG_LEN);
    if (sig_b64 == NULL)
        goto fail;
    int n = snprintf(text, sizeof(text), "%s%lld\n%s\n%s\n%s\n", LOG_PREFIX, (long long)seq, prev,
                     manifest_sha256, sig_b64);
    if (n < 0 || (size_t)n >= sizeof(text))
        goto fail;
    mh_sha256_hex((const uint8_t *)text, (size_t)n, out);
    rc = 0;
fail:
    free(sig_b64);
    return rc;
}

/* ---- encodings ---------------------------------------------------------------------------- */

void mh_sha256_hex(const uint8_t *buf, size_t len, char out[MH_RELEASE_HASH_HEX + 1])
{
    uint8_t md[SHA256_DIGEST_LENGTH];
    /* SHA-256 is always there in OpenSSL's default provider: its absence is not an error
     * anyone could handle, and a wrong digest would be worse than stopping. */
    if (SHA256(buf, len, md) == NULL) {
        mh_log_openssl(MH_LOG_ERROR, "SHA-256");
        abort();
    }
    mh_hex_encode(md, sizeof(md), out);
}

/* EVP_EncodeBlock and EVP_DecodeBlock count in int: stay well below. */
#define B64_MAX_BYTES ((size_t)1 << 28)

char *mh_base64_encode(const uint8_t *buf, size_t len)
{
    if (len > B64_MAX_BYTES)
        return NULL;
    char *out = mh_malloc((len + 2) / 3 * 4 + 1);
    EVP_EncodeBlock((unsigned char *)out, buf, (int)len);
    return out;
}

static bool b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

uint8_t *mh_base64_decode(const char *s, size_t len, size_t *outlen)
{
    uint8_t *out = NULL;
    char *again = NULL;
    size_t pad = 0;

    *outlen = 0;
    if (len > 0 && s[len - 1] == '\n')
        len--;
    if (len % 4 != 0 || len / 4 * 3 > B64_MAX_BYTES)
        goto fail;
    if (len >= 4 && s[len - 1] == '=')
        pad = s[len - 2] == '=' ? 2 : 1;
    /* Only the alphabet, and '=' only as the last one or two characters: EVP_DecodeBlock
     * alone would skip blanks and take '=' anywhere. */
    for (size_t i = 0; i < len - pad; i++)
        if (!b64_char(s[i]))
            goto fail;
    out = mh_malloc(len / 4 * 3 + 1);
    /* It counts the padding as zero bytes: 3 bytes per 4 characters. */
    if (len > 0 && EVP_DecodeBlock(out, (const unsigned char *)s, (int)len) != (int)(len / 4 * 3))
        goto fail;
    size_t n = len / 4 * 3 - pad;
    /* One spelling per value: the unused low bits of the last character must be zero. */
    again = mh_base64_encode(out, n);
    if (again == NULL || strlen(again) != len || memcmp(again, s, len) != 0)
        goto fail;
    free(again);
    *outlen = n;
    return out;
fail:
    free(again);
    free(out);
    return NULL;
}
