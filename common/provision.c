#include "provision.h"
#include "fileio.h"
#include "alloc.h"
#include "log.h"
#include "pg.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ca.crt is a handful of certificates; anything much larger is not what we think it is. */
#define TRUST_PEM_MAX (1024 * 1024)

struct mh_device_ca {
    EVP_PKEY *key;
    X509 *cert;
    char *trust_pem;
};

/* ---- small helpers ----------------------------------------------------------------------- */

typedef struct strbuf {
    char *data;
    size_t len, cap;
} strbuf_t;

static void sb_append(strbuf_t *sb, const char *s, size_t n)
{
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 256;
        while (sb->len + n + 1 > cap)
            cap *= 2;
        sb->data = mh_realloc(sb->data, cap);
        sb->cap = cap;
    }
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

static void sb_puts(strbuf_t *sb, const char *s)
{
    sb_append(sb, s, strlen(s));
}

static void sb_reset(strbuf_t *sb)
{
    sb->len = 0;
    if (sb->data != NULL)
        sb->data[0] = '\0';
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The server's message, first line only, for a log line. */
static void pg_log_error(PGconn *conn, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
    msg[strcspn(msg, "\n")] = '\0';
    mh_log(MH_LOG_ERROR, "%s: %s", what, msg);
}

/* Copies a memory BIO's contents into an owned NUL-terminated string. */
static char *bio_to_string(BIO *bio)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    if (len < 0 || data == NULL)
        return NULL;
    return mh_strndup(data, (size_t)len);
}

/* A passphrase callback that refuses: an encrypted key must not make us prompt on a tty. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* ---- device CA --------------------------------------------------------------------------- */

/* Parses every certificate of a PEM bundle into store. Returns how many, or -1. */
static int store_add_pem(X509_STORE *store, const char *pem)
{
    int n = 0;
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (bio == NULL)
        return -1;
    for (;;) {
        X509 *x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
        if (x == NULL)
            break;
        int ok = X509_STORE_add_cert(store, x);
        X509_free(x);
        if (ok != 1) {
            n = -1;
            break;
        }
        n++;
    }
    BIO_free(bio);
    /* The loop ends with "no start line" at the end of the bundle: expected, not an error. */
    if (n > 0 && ERR_GET_REASON(ERR_peek_last_error()) == PEM_R_NO_START_LINE)
        ERR_clear_error();
    return n;
}

/* The checks shared by load and new: the CA must be able to issue certificates that verify. */
static int ca_check(const mh_device_ca_t *ca)
{
    int rc = -1;
    X509_STORE *store = NULL;
    X509_STORE_CTX *vctx = NULL;

    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "device CA: the key does not match the certificate");
        goto fail;
    }
    if (X509_check_ca(ca->cert) < 1) {
        mh_log(MH_LOG_ERROR, "device CA: the certificate is not a CA certificate");
        goto fail;
    }
    store = X509_STORE_new();
    if (store == NULL)
        goto fail;
    int n = store_add_pem(store, ca->trust_pem);
    if (n <= 0) {
        mh_log_openssl(MH_LOG_ERROR, "device CA: ca.crt holds no readable certificate");
        goto fail;
    }
    vctx = X509_STORE_CTX_new();
    if (vctx == NULL || X509_STORE_CTX_init(vctx, store, ca->cert, NULL) != 1)
        goto fail;
    if (X509_verify_cert(vctx) != 1) {
        int err = X509_STORE_CTX_get_error(vctx);
        mh_log(MH_LOG_ERROR, "device CA: the certificate does not verify against ca.crt: %s",
               X509_verify_cert_error_string(err));
        ERR_clear_error();
        goto fail;
    }
    rc = 0;
fail:
    if (rc != 0 && ERR_peek_error() != 0)
        mh_log_openssl(MH_LOG_ERROR, "device CA");
    X509_STORE_CTX_free(vctx);
    X509_STORE_free(store);
    return rc;
}

mh_device_ca_t *mh_device_ca_new(EVP_PKEY *key, X509 *cert, const char *trust_pem)
{
    mh_device_ca_t *ca = mh_calloc(1, sizeof(*ca));
    ca->key = key;
    ca->cert = cert;
    if (key == NULL || cert == NULL || trust_pem == NULL) {
        mh_log(MH_LOG_ERROR, "device CA: key, certificate and ca.crt are all required");
        goto fail;
    }
    ca->trust_pem = mh_strdup(trust_pem);
    if (ca_check(ca) != 0)
        goto fail;
    return ca;
fail:
    mh_device_ca_free(ca);
    return NULL;
}

/* Reads DIR/name into an owned string; NULL (logged) on failure. */
static char *read_pki_file(const char *dir, const char *name, size_t max)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
        mh_log(MH_LOG_ERROR, "device CA: PKI directory path too long");
        return NULL;
    }
    return mh_read_text_file(path, max);
}

mh_device_ca_t *mh_device_ca_load(const char *dir)
{
    char path[PATH_MAX];
    char *key_pem = NULL, *cert_pem = NULL, *trust = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    BIO *bio = NULL;
    mh_device_ca_t *ca = NULL;
    struct stat st;

    if (dir == NULL || dir[0] == '\0') {
        mh_log(MH_LOG_ERROR, "device CA: no PKI directory given");
        goto fail;
    }
    key_pem = read_pki_file(dir, "device-ca.key", TRUST_PEM_MAX);
    if (key_pem == NULL)
        goto fail;
    snprintf(path, sizeof(path), "%s/device-ca.key", dir);
    if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
        mh_log(MH_LOG_WARN, "%s is readable by group or others (mode %03o); it should be 0600",
               path, (unsigned)(st.st_mode & 0777));
    bio = BIO_new_mem_buf(key_pem, -1);
    if (bio == NULL)
        goto fail;
    key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    bio = NULL;
    if (key == NULL) {
        mh_log_openssl(MH_LOG_ERROR, "device CA: device-ca.key is not a readable private key "
                                     "(encrypted keys are not supported)");
        goto fail;
    }

    cert_pem = read_pki_file(dir, "device-ca.crt", TRUST_PEM_MAX);
    if (cert_pem == NULL)
        goto fail;
    bio = BIO_new_mem_buf(cert_pem, -1);
    if (bio == NULL)
        goto fail;
    cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    bio = NULL;
    if (cert == NULL) {
        mh_log_openssl(MH_LOG_ERROR, "device CA: device-ca.crt is not a PEM certificate");
        goto fail;
    }

    trust = read_pki_file(dir, "ca.crt", TRUST_PEM_MAX);
    if (trust == NULL)
        goto fail;

    ca = mh_device_ca_new(key, cert, trust);
    key = NULL; /* owned by ca now, or already freed by it */
    cert = NULL;
fail:
    if (key_pem != NULL)
        OPENSSL_cleanse(key_pem, strlen(key_pem));
    free(key_pem);
    free(cert_pem);
    free(trust);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ca;
}

void mh_device_ca_free(mh_device_ca_t *ca)
{
    if (ca == NULL)
        return;
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    free(ca->trust_pem);
    free(ca);
}

X509 *mh_device_ca_cert(const mh_device_ca_t *ca)
{
    return ca->cert;
}

const char *mh_device_ca_trust_pem(const mh_device_ca_t *ca)
{
    return ca->trust_pem;
}

/* ---- certificates ------------------------------------------------------------------------ */

void mh_issue_opts_init(mh_issue_opts_t *opts)
{
    opts->days = MH_CERT_DAYS_DEFAULT;
    opts->not_before_days_ago = 0;
    opts->hardware = NULL;
}

void mh_device_cred_dispose(mh_device_cred_t *cred)
{
    if (cred->key_pem != NULL)
        OPENSSL_cleanse(cred->key_pem, strlen(cred->key_pem));
    free(cred->key_pem);
    free(cred->cert_pem);
    memset(cred, 0, sizeof(*cred));
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    if (ext == NULL)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

static bool is_p256(EVP_PKEY *key)
{
    char group[64];
    size_t len = 0;
    if (!EVP_PKEY_is_a(key, "EC") || EVP_PKEY_get_group_name(key, group, sizeof(group), &len) != 1)
        return false;
    return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

/* The uncompressed public point 04|X|Y of a P-256 key into pt[65]. Returns 0 or -1. */
static int p256_point(EVP_PKEY *key, uint8_t *pt)
{
    size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, pt, 65, &len) != 1 ||
        len != 65 || pt[0] != 0x04)
        return -1;
    return 0;
}

/*
 * Sets the certificate's public key. OpenSSL 3.0's X509_set_pubkey goes through the encoder
 * machinery, which costs ~200 us per call (most of a device's issuing time); for P-256, the
 * only key we generate, the SubjectPublicKeyInfo is built directly from the point: algorithm
 * id-ecPublicKey with the named curve, and the uncompressed point as the bit string, exactly
 * what the encoder writes. Other keys (from CSRs) take the generic path.
 */
static int set_pubkey(X509 *x, EVP_PKEY *pub)
{
    uint8_t pt[65];
    if (!is_p256(pub) || p256_point(pub, pt) != 0)
        return X509_set_pubkey(x, pub) == 1 ? 0 : -1;
    unsigned char *enc = OPENSSL_memdup(pt, sizeof(pt));
    if (enc == NULL)
        return -1;
    if (X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
                               V_ASN1_OBJECT, OBJ_nid2obj(NID_X9_62_prime256v1), enc,
                               (int)sizeof(pt)) != 1) {
        OPENSSL_free(enc);
        return -1;
    }
    return 0;
}

/*
 * Builds and signs the certificate of device_id for pub, and fills out->id, fingerprint and
 * cert_pem. Every field comes from here, never from a request: a CSR can only contribute its
 * public key.
 */
static int build_cert(const mh_device_ca_t *ca, const char *device_id, EVP_PKEY *pub,
                      const mh_issue_opts_t *opts, mh_device_cred_t *out)
{
    int rc = -1;
    X509 *x = NULL;
    BIGNUM *serial = NULL;
    BIO *bio = NULL;
    mh_issue_opts_t defaults;

    if (opts == NULL) {
        mh_issue_opts_init(&defaults);
        opts = &defaults;
    }
    if (!mh_id_valid(device_id)) {
        mh_log(MH_LOG_ERROR, "issue: invalid device id");
        goto fail;
    }
    if (opts->days < 1 || opts->days > MH_CERT_DAYS_MAX || opts->not_before_days_ago < 0 ||
        opts->not_before_days_ago > MH_CERT_DAYS_MAX) {
        mh_log(MH_LOG_ERROR,
               "issue: validity out of bounds (days 1..%d, not before 0..%d days ago)",
               MH_CERT_DAYS_MAX, MH_CERT_DAYS_MAX);
        goto fail;
    }

    x = X509_new();
    serial = BN_new();
    if (x == NULL || serial == NULL)
        goto fail;
    if (X509_set_version(x, X509_VERSION_3) != 1)
        goto fail;
    /* 128 random bits: unpredictable serials, as CA/B rules ask, and never a collision. */
    if (BN_rand(serial, 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
        BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) == NULL)
        goto fail;
    if (X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) != 1)
        goto fail;
    /* Conventional order O then CN, printed "CN=<id>, O=meterhub device" in RFC 4514 form. */
    X509_NAME *name = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                   (const unsigned char *)"meterhub device", -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)device_id, -1,
                                   -1, 0) != 1)
        goto fail;

    time_t not_before = time(NULL) - (time_t)opts->not_before_days_ago * 86400;
    if (X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &not_before) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), opts->days, 0, &not_before) == NULL)
        goto fail;
    if (set_pubkey(x, pub) != 0)
        goto fail;

    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca->cert, x, NULL, NULL, 0);
    if (add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_ext(x, &v3, NID_key_usage, "critical,digitalSignature") != 0 ||
        add_ext(x, &v3, NID_ext_key_usage, "clientAuth") != 0 ||
        add_ext(x, &v3, NID_subject_key_identifier, "hash") != 0 ||
        add_ext(x, &v3, NID_authority_key_identifier, "keyid:always") != 0)
        goto fail;

    if (X509_sign(x, ca->key, EVP_sha256()) <= 0)
        goto fail;
    if (mh_cert_fingerprint(x, out->fingerprint) != 0)
        goto fail;

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_X509(bio, x) != 1)
        goto fail;
    out->cert_pem = bio_to_string(bio);
    if (out->cert_pem == NULL)
        goto fail;
    memcpy(out->id, device_id, MH_ID_LEN + 1);
    rc = 0;
fail:
    if (rc != 0 && ERR_peek_error() != 0)
        mh_log_openssl(MH_LOG_ERROR, "issue: cannot build the device certificate");
    BIO_free(bio);
    BN_free(serial);
    X509_free(x);
    return rc;
}

/*
 * The PKCS#8 PrivateKeyInfo of a P-256 key, laid out as OpenSSL's encoder writes it
 * (RFC 5208 around RFC 5915, the curve named once in the outer algorithm):
 *   SEQUENCE { INTEGER 0, SEQUENCE { OID id-ecPublicKey, OID prime256v1 },
 *     OCTET STRING { SEQUENCE { INTEGER 1, OCTET STRING d, [1] { BIT STRING 04|X|Y } } } }
 * Built by hand for the same reason as set_pubkey: the encoder costs ~80 us per key. The unit
 * tests compare it byte for byte with PEM_write_bio_PrivateKey.
 */
static const uint8_t p8_p256_head[] = {
    0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
    0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20,
};
static const uint8_t p8_p256_mid[] = {0xa1, 0x44, 0x03, 0x42, 0x00};
#define P8_P256_LEN (sizeof(p8_p256_head) + 32 + sizeof(p8_p256_mid) + 65)

/* PEM "PRIVATE KEY" of key into bio: the direct layout for P-256, the encoder otherwise. */
static int write_key_pem(BIO *bio, EVP_PKEY *key)
{
    int rc = -1;
    BIGNUM *d = NULL;
    uint8_t der[P8_P256_LEN];
    uint8_t *p = der;

    if (!is_p256(key))
        return PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1 ? 0 : -1;
    memcpy(p, p8_p256_head, sizeof(p8_p256_head));
    p += sizeof(p8_p256_head);
    if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1 ||
        BN_bn2binpad(d, p, 32) != 32)
        goto fail;
    p += 32;
    memcpy(p, p8_p256_mid, sizeof(p8_p256_mid));
    p += sizeof(p8_p256_mid);
    if (p256_point(key, p) != 0)
        goto fail;
    if (PEM_write_bio(bio, "PRIVATE KEY", "", der, (long)sizeof(der)) <= 0)
        goto fail;
    rc = 0;
fail:
    OPENSSL_cleanse(der, sizeof(der));
    BN_clear_free(d);
    return rc;
}

/* A P-256 key generation context; reusing one saves the algorithm fetch of each key. */
static EVP_PKEY_CTX *p256_keygen_ctx(void)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1 ||
        EVP_PKEY_CTX_set_group_name(ctx, "prime256v1") != 1) {
        mh_log_openssl(MH_LOG_ERROR, "issue: P-256 key generation unavailable");
        EVP_PKEY_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* mh_device_ca_issue with a key generation context (NULL: a temporary one). */
static int issue_with(const mh_device_ca_t *ca, const char *device_id, const mh_issue_opts_t *opts,
                      EVP_PKEY_CTX *kctx, mh_device_cred_t *out)
{
    int rc = -1;
    EVP_PKEY *key = NULL;
    EVP_PKEY_CTX *own = NULL;
    BIO *bio = NULL;

    memset(out, 0, sizeof(*out));
    if (kctx == NULL) {
        own = kctx = p256_keygen_ctx();
        if (kctx == NULL)
            goto fail;
    }
    if (EVP_PKEY_generate(kctx, &key) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "issue: P-256 key generation failed");
        goto fail;
    }
    if (build_cert(ca, device_id, key, opts, out) != 0)
        goto fail;
    /* A secure-memory BIO: its buffer is wiped when freed. */
    bio = BIO_new(BIO_s_secmem());
    if (bio == NULL || write_key_pem(bio, key) != 0) {
        mh_log_openssl(MH_LOG_ERROR, "issue: cannot encode the device key");
        goto fail;
    }
    out->key_pem = bio_to_string(bio);
    if (out->key_pem == NULL)
        goto fail;
    rc = 0;
fail:
    if (rc != 0)
        mh_device_cred_dispose(out);
    BIO_free(bio);
    EVP_PKEY_free(key);
    EVP_PKEY_CTX_free(own);
    return rc;
}

int mh_device_ca_issue(const mh_device_ca_t *ca, const char *device_id, const mh_issue_opts_t *opts,
                       mh_device_cred_t *out)
{
    return issue_with(ca, device_id, opts, NULL, out);
}

/* The keys we accept in a CSR: what a meter can reasonably hold and ingest can verify fast. */
static int csr_key_acceptable(EVP_PKEY *pub)
{
    if (EVP_PKEY_is_a(pub, "EC")) {
        char group[64];
        size_t len = 0;
        if (EVP_PKEY_get_group_name(pub, group, sizeof(group), &len) != 1)
            return 0;
        return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0 ||
               strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0;
    }
    if (EVP_PKEY_is_a(pub, "RSA")) {
        int bits = EVP_PKEY_get_bits(pub);
        return bits >= 2048 && bits <= 4096;
    }
    return 0;
}

#define CSR_STR(x) #x
#define CSR_XSTR(x) CSR_STR(x)
#define CSR_MAX_TEXT CSR_XSTR(MH_CSR_MAX_BYTES)

/* Parses and checks a request; on MH_CSR_OK, *out is the owned request. Logs nothing; the
 * OpenSSL error queue may hold why it failed. */
static mh_csr_status_t csr_load(const char *csr_pem, size_t csr_len, X509_REQ **out)
{
    mh_csr_status_t st = MH_CSR_MALFORMED;
    X509_REQ *req = NULL;

    *out = NULL;
    if (csr_pem == NULL || csr_len == 0 || csr_len > MH_CSR_MAX_BYTES)
        return MH_CSR_MALFORMED;
    BIO *bio = BIO_new_mem_buf(csr_pem, (int)csr_len);
    if (bio == NULL)
        return MH_CSR_MALFORMED;
    req = PEM_read_bio_X509_REQ(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (req == NULL)
        return MH_CSR_MALFORMED;
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    if (pub == NULL)
        st = MH_CSR_MALFORMED;
    else if (!csr_key_acceptable(pub))
        st = MH_CSR_KEY_REFUSED;
    /* Proof of possession: the request is signed by the key it carries. 0 is a bad
     * signature, -1 an error; both refuse. */
    else if (X509_REQ_verify(req, pub) != 1)
        st = MH_CSR_BAD_SIGNATURE;
    else
        st = MH_CSR_OK;
    if (st == MH_CSR_OK)
        *out = req;
    else
        X509_REQ_free(req);
    return st;
}

mh_csr_status_t mh_csr_check(const char *csr_pem, size_t csr_len)
{
    X509_REQ *req = NULL;
    mh_csr_status_t st = csr_load(csr_pem, csr_len, &req);
    X509_REQ_free(req);
    /* A refusal leaves entries behind; they must not surface in this thread's next log line. */
    ERR_clear_error();
    return st;
}

const char *mh_csr_status_text(mh_csr_status_t status)
{
    switch (status) {
    case MH_CSR_OK:
        return "the certificate request is acceptable";
    case MH_CSR_MALFORMED:
        break;
    case MH_CSR_KEY_REFUSED:
        return "the certificate request's key is not accepted: use EC P-256 (or P-384), or RSA "
               "of 2048 to 4096 bits";
    case MH_CSR_BAD_SIGNATURE:
        return "the certificate request's signature does not verify with its own key";
    }
    return "not a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----) of at "
           "most " CSR_MAX_TEXT " bytes";
}

int mh_device_ca_sign_csr(const mh_device_ca_t *ca, const char *device_id, const char *csr_pem,
                          size_t csr_len, const mh_issue_opts_t *opts, mh_device_cred_t *out)
{
    int rc = -1;
    X509_REQ *req = NULL;

    memset(out, 0, sizeof(*out));
    mh_csr_status_t st = csr_load(csr_pem, csr_len, &req);
    if (st != MH_CSR_OK) {
        char what[200];
        snprintf(what, sizeof(what), "csr: %s", mh_csr_status_text(st));
        mh_log_openssl(MH_LOG_ERROR, what);
        goto fail;
    }
    if (build_cert(ca, device_id, X509_REQ_get0_pubkey(req), opts, out) != 0)
        goto fail;
    rc = 0;
fail:
    if (rc != 0)
        mh_device_cred_dispose(out);
    X509_REQ_free(req);
    return rc;
}

/* ---- sensors and accounts ---------------------------------------------------------------- */

static const mh_sensor_spec_t sensor_cycle[] = {
    {"electricity", "counter", "Wh"},
    {"gas", "counter", "L"},
    {"water", "counter", "L"},
    {"electricity", "gauge", "W"},
};

const mh_sensor_spec_t *mh_sensor_spec_cycle(size_t i)
{
    return &sensor_cycle[i % (sizeof(sensor_cycle) / sizeof(sensor_cycle[0]))];
}

static bool account_char(char c, bool first)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return true;
    return !first && (c == '.' || c == '_' || c == '@' || c == '-');
}

bool mh_account_name_valid(const char *name)
{
    if (name == NULL)
        return false;
    size_t len = strnlen(name, MH_ACCOUNT_NAME_MAX + 1);
    if (len == 0 || len > MH_ACCOUNT_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!account_char(name[i], i == 0))
            return false;
    return true;
}

static int parse_int64(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = (int64_t)v;
    return 0;
}

int mh_prov_account_ensure(PGconn *conn, const char *name, int64_t *id, bool *created)
{
    int rc = -1;
    PGresult *res = NULL;
    const char *params[1] = {name};

    if (!mh_account_name_valid(name)) {
        mh_log(MH_LOG_ERROR, "account: invalid name (1-64 of A-Z a-z 0-9 . _ @ -, starting "
                             "with a letter or digit)");
        goto fail;
    }
    res = PQexecParams(conn,
                       "INSERT INTO accounts (name) VALUES ($1)"
                       " ON CONFLICT (name) DO NOTHING RETURNING id",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_log_error(conn, "account: insert");
        goto fail;
    }
    bool made = PQntuples(res) == 1;
    if (!made) {
        /* Someone else made it (before us, or concurrently): a new statement, hence a new
         * snapshot in READ COMMITTED, sees it. */
        PQclear(res);
        res = PQexecParams(conn, "SELECT id FROM accounts WHERE name = $1", 1, NULL, params, NULL,
                           NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            pg_log_error(conn, "account: select");
            goto fail;
        }
        if (PQntuples(res) != 1) {
            mh_log(MH_LOG_ERROR, "account %s: exists but is not visible to this transaction", name);
            goto fail;
        }
    }
    if (parse_int64(PQgetvalue(res, 0, 0), id) != 0) {
        mh_log(MH_LOG_ERROR, "account: unexpected id from the database");
        goto fail;
    }
    if (created != NULL)
        *created = made;
    rc = 0;
fail:
    PQclear(res);
    return rc;
}

int mh_prov_device_revoke(PGconn *conn, const char *device_id, bool *found)
{
    int rc = -1;
    PGresult *res = NULL;
    const char *params[1] = {device_id};

    *found = false;
    /* A malformed id names no device; no need to ask the database. */
    if (!mh_id_valid(device_id))
        return 0;
    res = PQexecParams(conn,
                       "UPDATE devices SET status = 'revoked',"
                       " revoked_at = coalesce(revoked_at, now()) WHERE id = $1",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        pg_log_error(conn, "revoke");
        goto fail;
    }
    *found = strcmp(PQcmdTuples(res), "0") != 0;
    rc = 0;
fail:
    PQclear(res);
    return rc;
}

/* ---- batches ----------------------------------------------------------------------------- */

void mh_prov_batch_free(mh_prov_batch_t *batch)
{
    if (batch == NULL)
        return;
    for (size_t i = 0; i < batch->count; i++) {
        mh_device_cred_dispose(&batch->devices[i].cred);
        free(batch->devices[i].sensor_ids);
    }
    free(batch->devices);
    free(batch);
}

mh_prov_batch_t *mh_prov_batch_generate(const mh_device_ca_t *ca, size_t count, size_t nsensors,
                                        const mh_issue_opts_t *opts, mh_prov_progress_fn progress,
                                        void *arg)
{
    mh_prov_batch_t *batch = NULL;
    EVP_PKEY_CTX *kctx = NULL;

    if (count < 1 || count > MH_PROV_MAX_DEVICES || nsensors > MH_PROV_MAX_SENSORS) {
        mh_log(MH_LOG_ERROR,
               "provision: %zu devices with %zu sensors is out of bounds "
               "(1..%d devices, 0..%d sensors)",
               count, nsensors, MH_PROV_MAX_DEVICES, MH_PROV_MAX_SENSORS);
        goto fail;
    }
    if (opts != NULL && opts->hardware != NULL && !mh_hardware_valid(opts->hardware)) {
        mh_log(MH_LOG_ERROR, "provision: hardware '%.40s' is not [a-z0-9][a-z0-9._-]{0,31}",
               opts->hardware);
        goto fail;
    }
    kctx = p256_keygen_ctx();
    if (kctx == NULL)
        goto fail;
    batch = mh_calloc(1, sizeof(*batch));
    if (opts != NULL && opts->hardware != NULL)
        snprintf(batch->hardware, sizeof(batch->hardware), "%s", opts->hardware);
    batch->devices = mh_calloc(count, sizeof(*batch->devices));
    for (size_t i = 0; i < count; i++) {
        mh_prov_device_t *d = &batch->devices[i];
        char id[MH_ID_LEN + 1];
        if (mh_id_random(id) != 0) {
            mh_log_openssl(MH_LOG_ERROR, "provision: random id");
            goto fail;
        }
        if (issue_with(ca, id, opts, kctx, &d->cred) != 0)
            goto fail;
        batch->count = i + 1;
        d->nsensors = nsensors;
        d->sensor_ids = mh_calloc(nsensors ? nsensors : 1, sizeof(*d->sensor_ids));
        for (size_t s = 0; s < nsensors; s++) {
            if (mh_id_random(d->sensor_ids[s]) != 0) {
                mh_log_openssl(MH_LOG_ERROR, "provision: random id");
                goto fail;
            }
        }
        if (progress != NULL && ((i + 1) % MH_PROV_CHUNK == 0 || i + 1 == count))
            progress("keys", i + 1, count, arg);
    }
    EVP_PKEY_CTX_free(kctx);
    return batch;
fail:
    EVP_PKEY_CTX_free(kctx);
    mh_prov_batch_free(batch);
    return NULL;
}

/*
 * Text-format array literal of values that need no quoting (hex ids, the fixed sensor
 * words): "{a,b,c}". The inputs are checked by their producers; an id is only ever hex.
 */
static void array_begin(strbuf_t *sb)
{
    sb_reset(sb);
    sb_puts(sb, "{");
}

static void array_add(strbuf_t *sb, const char *s)
{
    if (sb->len > 1)
        sb_puts(sb, ",");
    sb_puts(sb, s);
}

static void array_end(strbuf_t *sb)
{
    sb_puts(sb, "}");
}

/* Runs a parameterized INSERT and checks it touched exactly `expect` rows. */
static int exec_insert(PGconn *conn, const char *what, const char *sql, int nparams,
                       const char *const *params, size_t expect)
{
    int rc = -1;
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        pg_log_error(conn, what);
        goto fail;
    }
    int64_t n = 0;
    if (parse_int64(PQcmdTuples(res), &n) != 0 || n < 0 || (size_t)n != expect) {
        mh_log(MH_LOG_ERROR, "%s: inserted %s rows, expected %zu", what, PQcmdTuples(res), expect);
        goto fail;
    }
    rc = 0;
fail:
    PQclear(res);
    return rc;
}

/* ORDER BY the input position: the serial keys (did, sid) then follow the batch order, so
 * sensor i of a device is its i-th sensor by sid (volatile defaults such as nextval are
 * evaluated after the sort). */
static const char insert_devices_sql[] =
    "INSERT INTO devices (id, account_id, cert_fingerprint)"
    " SELECT u.id, $1::bigint, decode(u.fp, 'hex')"
    " FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(id, fp, n)"
    " ORDER BY u.n";

/* The same with the batch's hardware ($4) instead of the column's default. */
static const char insert_devices_hw_sql[] =
    "INSERT INTO devices (id, account_id, cert_fingerprint, hardware)"
    " SELECT u.id, $1::bigint, decode(u.fp, 'hex'), $4::text"
    " FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(id, fp, n)"
    " ORDER BY u.n";

static const char insert_sensors_sql[] =
    "INSERT INTO sensors (id, device_did, account_id, kind, type, unit)"
    " SELECT u.id, d.did, $1::bigint, u.kind, u.type, u.unit"
    " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])"
    "      WITH ORDINALITY AS u(id, device, kind, type, unit, n)"
    " JOIN devices d ON d.id = u.device AND d.account_id = $1::bigint"
    " ORDER BY u.n";

int mh_prov_insert(PGconn *conn, int64_t account_id, const mh_prov_batch_t *batch,
                   mh_prov_progress_fn progress, void *arg)
{
    int rc = -1;
    strbuf_t a[5] = {{0}};
    char account[24];
    char fp_hex[2 * MH_FINGERPRINT_LEN + 1];

    if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
        mh_log(MH_LOG_ERROR, "provision: insert must run inside an open transaction");
        goto fail;
    }
    snprintf(account, sizeof(account), "%" PRId64, account_id);
    for (size_t start = 0; start < batch->count; start += MH_PROV_CHUNK) {
        size_t end = start + MH_PROV_CHUNK < batch->count ? start + MH_PROV_CHUNK : batch->count;
        size_t nsensors = 0;

        array_begin(&a[0]);
        array_begin(&a[1]);
        for (size_t i = start; i < end; i++) {
            const mh_prov_device_t *d = &batch->devices[i];
            if (!mh_id_valid(d->cred.id)) {
                mh_log(MH_LOG_ERROR, "provision: batch holds an invalid device id");
                goto fail;
            }
            mh_hex_encode(d->cred.fingerprint, MH_FINGERPRINT_LEN, fp_hex);
            array_add(&a[0], d->cred.id);
            array_add(&a[1], fp_hex);
            nsensors += d->nsensors;
        }
        array_end(&a[0]);
        array_end(&a[1]);
        const char *dparams[4] = {account, a[0].data, a[1].data, batch->hardware};
        bool hw = batch->hardware[0] != '\0';
        if (exec_insert(conn, "provision: insert devices",
                        hw ? insert_devices_hw_sql : insert_devices_sql, hw ? 4 : 3, dparams,
                        end - start) != 0)
            goto fail;

        if (nsensors > 0) {
            for (int k = 0; k < 5; k++)
                array_begin(&a[k]);
            for (size_t i = start; i < end; i++) {
                const mh_prov_device_t *d = &batch->devices[i];
                for (size_t s = 0; s < d->nsensors; s++) {
                    const mh_sensor_spec_t *spec = mh_sensor_spec_cycle(s);
                    if (!mh_id_valid(d->sensor_ids[s])) {
                        mh_log(MH_LOG_ERROR, "provision: batch holds an invalid sensor id");
                        goto fail;
                    }
                    array_add(&a[0], d->sensor_ids[s]);
                    array_add(&a[1], d->cred.id);
                    array_add(&a[2], spec->kind);
                    array_add(&a[3], spec->type);
                    array_add(&a[4], spec->unit);
                }
            }
            for (int k = 0; k < 5; k++)
                array_end(&a[k]);
            const char *sparams[6] = {account,   a[0].data, a[1].data,
                                      a[2].data, a[3].data, a[4].data};
            if (exec_insert(conn, "provision: insert sensors", insert_sensors_sql, 6, sparams,
                            nsensors) != 0)
                goto fail;
        }
        if (progress != NULL)
            progress("database", end, batch->count, arg);
    }
    rc = 0;
fail:
    for (int k = 0; k < 5; k++)
        free(a[k].data);
    return rc;
}

/* ---- files ------------------------------------------------------------------------------- */

static const char *const single_files[] = {"device.key", "device.crt", "ca.crt"};

struct mh_prov_stage {
    char *out_dir;
    char *staging; /* path of the staging directory */
    int out_fd;    /* out_dir, O_DIRECTORY */
    int stage_fd;  /* staging, O_DIRECTORY */
    bool single;   /* one device: the three files directly in out_dir */
    char **names;  /* entries of the staging directory, in write order */
    size_t nnames; /* how many were (at least partly) written */
    size_t nalloc;
};

/* Creates path and its missing parents (mode 0755). */
static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
        mh_log(MH_LOG_ERROR, "%s: path too long", path);
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            mh_log(MH_LOG_ERROR, "%s: %s", buf, strerror(errno));
            return -1;
        }
        *p = c;
        if (c == '\0')
            break;
    }
    return 0;
}

/* Writes a new file (it must not exist) in dirfd. */
static int write_file_at(int dirfd, const char *name, const char *data, mode_t mode)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -1;
    size_t len = strlen(data), off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        off += (size_t)w;
    }
    return close(fd);
}

/* The three files of one device into dirfd. */
static int write_device_files(int dirfd, const mh_prov_device_t *d, const char *trust_pem)
{
    if (write_file_at(dirfd, "device.key", d->cred.key_pem, 0600) != 0 ||
        write_file_at(dirfd, "device.crt", d->cred.cert_pem, 0644) != 0 ||
        write_file_at(dirfd, "ca.crt", trust_pem, 0644) != 0)
        return -1;
    return 0;
}

static void stage_note(mh_prov_stage_t *st, const char *name)
{
    if (st->nnames == st->nalloc) {
        st->nalloc = st->nalloc ? 2 * st->nalloc : 16;
        st->names = mh_realloc(st->names, st->nalloc * sizeof(*st->names));
    }
    st->names[st->nnames++] = mh_strdup(name);
}

void mh_prov_stage_free(mh_prov_stage_t *st)
{
    if (st == NULL)
        return;
    if (st->stage_fd >= 0)
        close(st->stage_fd);
    if (st->out_fd >= 0)
        close(st->out_fd);
    for (size_t i = 0; i < st->nnames; i++)
        free(st->names[i]);
    free(st->names);
    free(st->staging);
    free(st->out_dir);
    free(st);
}

void mh_prov_stage_discard(mh_prov_stage_t *st)
{
    if (st == NULL || st->stage_fd < 0)
        return;
    /* Remove exactly what we wrote, never anything else that may be there. */
    for (size_t i = 0; i < st->nnames; i++) {
        if (st->single) {
            unlinkat(st->stage_fd, st->names[i], 0);
            continue;
        }
        int dfd = openat(st->stage_fd, st->names[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            for (size_t f = 0; f < 3; f++)
                unlinkat(dfd, single_files[f], 0);
            close(dfd);
        }
        unlinkat(st->stage_fd, st->names[i], AT_REMOVEDIR);
    }
    if (rmdir(st->staging) != 0)
        mh_log(MH_LOG_WARN, "%s: cannot remove: %s", st->staging, strerror(errno));
    close(st->stage_fd);
    st->stage_fd = -1;
    for (size_t i = 0; i < st->nnames; i++)
        free(st->names[i]);
    st->nnames = 0;
}

mh_prov_stage_t *mh_prov_stage_write(const mh_prov_batch_t *batch, const char *out_dir,
                                     const char *trust_pem, mh_prov_progress_fn progress, void *arg)
{
    mh_prov_stage_t *st = mh_calloc(1, sizeof(*st));
    st->out_fd = -1;
    st->stage_fd = -1;
    st->single = batch->count == 1;
    st->out_dir = mh_strdup(out_dir);

    if (out_dir[0] == '\0') {
        mh_log(MH_LOG_ERROR, "provision: empty output directory");
        goto fail;
    }
    if (mkdir_p(out_dir) != 0)
        goto fail;
    st->out_fd = open(out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->out_fd < 0) {
        mh_log(MH_LOG_ERROR, "%s: %s", out_dir, strerror(errno));
        goto fail;
    }
    size_t plen = strlen(out_dir) + sizeof("/.mh-staging-XXXXXX");
    st->staging = mh_malloc(plen);
    snprintf(st->staging, plen, "%s/.mh-staging-XXXXXX", out_dir);
    if (mkdtemp(st->staging) == NULL) {
        mh_log(MH_LOG_ERROR, "%s: cannot create a staging directory: %s", out_dir, strerror(errno));
        goto fail;
    }
    st->stage_fd = open(st->staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->stage_fd < 0) {
        mh_log(MH_LOG_ERROR, "%s: %s", st->staging, strerror(errno));
        rmdir(st->staging);
        goto fail;
    }

    if (st->single) {
        const mh_prov_device_t *d = &batch->devices[0];
        const char *data[3] = {d->cred.key_pem, d->cred.cert_pem, trust_pem};
        mode_t modes[3] = {0600, 0644, 0644};
        for (size_t f = 0; f < 3; f++) {
            if (data[f] == NULL) {
                mh_log(MH_LOG_ERROR, "provision: device %s has no %s to write", d->cred.id,
                       single_files[f]);
                goto fail_discard;
            }
            stage_note(st, single_files[f]);
            if (write_file_at(st->stage_fd, single_files[f], data[f], modes[f]) != 0) {
                mh_log(MH_LOG_ERROR, "%s/%s: %s", st->staging, single_files[f], strerror(errno));
                goto fail_discard;
            }
        }
    } else {
        for (size_t i = 0; i < batch->count; i++) {
            const mh_prov_device_t *d = &batch->devices[i];
            if (d->cred.key_pem == NULL) {
                mh_log(MH_LOG_ERROR, "provision: device %s has no key to write", d->cred.id);
                goto fail_discard;
            }
            if (mkdirat(st->stage_fd, d->cred.id, 0755) != 0) {
                mh_log(MH_LOG_ERROR, "%s/%s: %s", st->staging, d->cred.id, strerror(errno));
                goto fail_discard;
            }
            stage_note(st, d->cred.id);
            int dfd = openat(st->stage_fd, d->cred.id, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd < 0 || write_device_files(dfd, d, trust_pem) != 0) {
                mh_log(MH_LOG_ERROR, "%s/%s: %s", st->staging, d->cred.id, strerror(errno));
                if (dfd >= 0)
                    close(dfd);
                goto fail_discard;
            }
            close(dfd);
            if (progress != NULL && ((i + 1) % MH_PROV_CHUNK == 0 || i + 1 == batch->count))
                progress("files", i + 1, batch->count, arg);
        }
    }
    /* One syncfs for the whole staging tree: the files are on disk before the devices are
     * committed, so a crash after COMMIT cannot lose the keys of devices that exist. */
    if (syncfs(st->stage_fd) != 0) {
        mh_log(MH_LOG_ERROR, "%s: sync: %s", st->staging, strerror(errno));
        goto fail_discard;
    }
    return st;
fail_discard:
    mh_prov_stage_discard(st);
fail:
    mh_prov_stage_free(st);
    return NULL;
}

int mh_prov_stage_publish(mh_prov_stage_t *st)
{
    int rc = -1;
    size_t done = 0;
    for (; done < st->nnames; done++) {
        if (renameat(st->stage_fd, st->names[done], st->out_fd, st->names[done]) != 0) {
            mh_log(MH_LOG_ERROR, "%s/%s: cannot move into %s: %s", st->staging, st->names[done],
                   st->out_dir, strerror(errno));
            goto fail;
        }
    }
    if (rmdir(st->staging) != 0)
        mh_log(MH_LOG_WARN, "%s: cannot remove: %s", st->staging, strerror(errno));
    if (fsync(st->out_fd) != 0)
        mh_log(MH_LOG_WARN, "%s: fsync: %s", st->out_dir, strerror(errno));
    close(st->stage_fd);
    st->stage_fd = -1;
    rc = 0;
fail:
    /* Forget what has moved: a later discard must not touch published files. */
    for (size_t i = 0; i < done; i++)
        free(st->names[i]);
    memmove(st->names, st->names + done, (st->nnames - done) * sizeof(*st->names));
    st->nnames -= done;
    if (rc != 0)
        mh_log(MH_LOG_ERROR, "%zu entries not moved remain in %s", st->nnames, st->staging);
    return rc;
}

/* ---- all together ------------------------------------------------------------------------ */

mh_prov_batch_t *mh_prov_run(PGconn *conn, const mh_device_ca_t *ca, const char *account,
                             size_t count, size_t nsensors, const mh_issue_opts_t *opts,
                             const char *out_dir, mh_prov_progress_fn progress, void *arg,
                             int64_t *account_id, mh_prov_timing_t *timing)
{
    mh_prov_batch_t *batch = NULL;
    mh_prov_stage_t *stage = NULL;
    mh_prov_timing_t t = {0};
    bool in_tx = false;
    bool committed = false;
    int64_t acct = 0;
    PGresult *res = NULL;
    double t0;

    if (!mh_account_name_valid(account)) {
        mh_log(MH_LOG_ERROR, "provision: invalid account name");
        goto fail;
    }
    if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
        mh_log(MH_LOG_ERROR, "provision: the connection is busy or already in a transaction");
        goto fail;
    }

    t0 = now_s();
    batch = mh_prov_batch_generate(ca, count, nsensors, opts, progress, arg);
    if (batch == NULL)
        goto fail;
    t.keys_s = now_s() - t0;

    if (out_dir != NULL) {
        t0 = now_s();
        stage = mh_prov_stage_write(batch, out_dir, mh_device_ca_trust_pem(ca), progress, arg);
        if (stage == NULL)
            goto fail;
        t.files_s = now_s() - t0;
    }

    t0 = now_s();
    if (mh_pg_exec(conn, "BEGIN") != 0)
        goto fail;
    in_tx = true;
    if (mh_prov_account_ensure(conn, account, &acct, NULL) != 0)
        goto fail;
    if (mh_prov_insert(conn, acct, batch, progress, arg) != 0)
        goto fail;
    in_tx = false;
    res = PQexec(conn, "COMMIT");
    ExecStatusType status = PQresultStatus(res);
    PQclear(res);
    if (status != PGRES_COMMAND_OK) {
        pg_log_error(conn, "provision: commit");
        if (mh_pg_conn_lost(conn))
            mh_log(MH_LOG_ERROR, "provision: the connection broke during COMMIT: the devices may "
                                 "exist without key files; list the account and revoke them");
        goto fail;
    }
    committed = true;
    t.db_s = now_s() - t0;

    if (stage != NULL) {
        t0 = now_s();
        if (mh_prov_stage_publish(stage) != 0) {
            mh_log(MH_LOG_ERROR, "provision: the devices were created but their files are "
                                 "still in the staging directory");
            goto fail;
        }
        t.publish_s = now_s() - t0;
    }
    mh_prov_stage_free(stage);
    if (account_id != NULL)
        *account_id = acct;
    if (timing != NULL)
        *timing = t;
    return batch;
fail:
    if (in_tx && !mh_pg_conn_lost(conn)) {
        res = PQexec(conn, "ROLLBACK");
        PQclear(res);
    }
    /* Before the commit, the files name devices that do not exist: remove them. After it,
     * they are the only copy of the keys of devices that do: keep them. */
    if (!committed)
        mh_prov_stage_discard(stage);
    mh_prov_stage_free(stage);
    mh_prov_batch_free(batch);
    return NULL;
}
