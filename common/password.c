#include "password.h"
#include "log.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

/* What mh_password_hash uses: 32 MiB of memory, tens of milliseconds. */
#define SCRYPT_LN 15
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SALT_LEN 16
#define KEY_LEN 32

/* What mh_password_verify accepts from a stored hash. At the top of the ranges scrypt needs
 * 128 * r * 2^ln = 128 MiB (4 times the default): bounded, unlike whatever a corrupted row
 * could ask for. */
#define LN_MIN 10
#define LN_MAX 17
#define R_MIN 1
#define R_MAX 8
#define P_MIN 1
#define P_MAX 4

#define TOKEN_RANDOM_LEN 32
#define TOKEN_CHARS 43 /* base64url of 32 bytes, unpadded */
#define GENERATED_RANDOM_LEN 18

_Static_assert(sizeof(MH_TOKEN_PREFIX) - 1 + TOKEN_CHARS == MH_TOKEN_LEN, "token length");
_Static_assert(MH_TOKEN_LEN < MH_TOKEN_MAX, "token buffer");
_Static_assert(GENERATED_RANDOM_LEN / 3 * 4 == MH_PASSWORD_GENERATED_LEN, "generated length");
_Static_assert(MH_PASSWORD_GENERATED_LEN >= MH_PASSWORD_MIN, "generated passwords are acceptable");

/* Room for EVP_EncodeBlock's padded output of up to 32 bytes (44 characters and a NUL). */
#define B64_BUF 64

static bool b64_char(char c, bool url)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return true;
    return url ? c == '-' || c == '_' : c == '+' || c == '/';
}

/* Length of the unpadded base64 text of n bytes. */
static size_t b64_len(size_t n)
{
    return (4 * n + 2) / 3;
}

/* Base64 (base64url when url) of n <= 32 bytes without '=' padding into out[B64_BUF]. */
static void b64_encode(const uint8_t *in, size_t n, bool url, char out[B64_BUF])
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (len > 0 && out[len - 1] == '=')
        out[--len] = '\0';
    if (url)
        for (int i = 0; i < len; i++)
            out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
}

/*
 * Decodes len characters of unpadded standard base64 that must encode exactly want (<= 32)
 * bytes. Only the canonical text is accepted (re-encoding gives it back): EVP_DecodeBlock
 * alone would skip blanks and ignore the unused low bits of the last character, and a hash
 * should have one spelling.
 */
static int b64_decode_exact(const char *s, size_t len, uint8_t *out, size_t want)
{
    int rc = -1;
    char padded[B64_BUF];
    unsigned char dec[B64_BUF];
    char again[B64_BUF];

    if (len != b64_len(want))
        goto fail;
    for (size_t i = 0; i < len; i++)
        if (!b64_char(s[i], false))
            goto fail;
    memcpy(padded, s, len);
    size_t plen = len;
    while (plen % 4 != 0)
        padded[plen++] = '=';
    /* It counts the padding as zero bytes: 3 bytes per 4 characters, want and a tail. */
    if (EVP_DecodeBlock(dec, (const unsigned char *)padded, (int)plen) != (int)(plen / 4 * 3))
        goto fail;
    b64_encode(dec, want, false, again);
    if (strlen(again) != len || memcmp(again, s, len) != 0)
        goto fail;
    memcpy(out, dec, want);
    rc = 0;
fail:
    OPENSSL_cleanse(dec, sizeof(dec));
    return rc;
}

/*
 * Reads "<name><decimal>" at *p, a plain number (no sign, no leading zero, at most 2 digits)
 * within [min, max], and moves *p past it.
 */
static int parse_param(const char **p, const char *name, long min, long max, long *out)
{
    int rc = -1;
    size_t nlen = strlen(name);
    const char *s = *p;
    long v = 0;
    int digits = 0;

    if (strncmp(s, name, nlen) != 0)
        goto fail;
    s += nlen;
    if (s[0] == '0')
        goto fail;
    while (s[digits] >= '0' && s[digits] <= '9' && digits < 3) {
        v = v * 10 + (s[digits] - '0');
        digits++;
    }
    if (digits == 0 || digits > 2 || v < min || v > max)
        goto fail;
    *p = s + digits;
    *out = v;
    rc = 0;
fail:
    return rc;
}

static int scrypt_derive(const char *password, size_t pwlen, const uint8_t salt[SALT_LEN], long ln,
                         long r, long p, uint8_t key[KEY_LEN])
{
    int rc = -1;
    uint64_t n = (uint64_t)1 << ln;
    /* OpenSSL refuses to allocate more than maxmem (default 32 MiB, just short of what our own
     * parameters need). Give it exactly what these parameters take by its own count, V of
     * 128*r*(N+2) bytes plus B of 128*r*p, and a page: the ranges already bound it. */
    uint64_t maxmem = 128 * (uint64_t)r * (n + 2 + (uint64_t)p) + 4096;

    if (EVP_PBE_scrypt(password, pwlen, salt, SALT_LEN, n, (uint64_t)r, (uint64_t)p, maxmem, key,
                       KEY_LEN) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "password: scrypt");
        goto fail;
    }
    rc = 0;
fail:
    return rc;
}

int mh_password_hash(const char *password, char *out, size_t outlen)
{
    int rc = -1;
    uint8_t salt[SALT_LEN];
    uint8_t key[KEY_LEN];
    char salt_b64[B64_BUF];
    char key_b64[B64_BUF];
    size_t pwlen = strnlen(password, MH_PASSWORD_MAX + 1);

    if (outlen > 0)
        out[0] = '\0';
    if (outlen < MH_PASSWORD_HASH_MAX) {
        mh_log(MH_LOG_ERROR, "password: hash buffer of %zu bytes, %d needed", outlen,
               MH_PASSWORD_HASH_MAX);
        goto fail;
    }
    if (pwlen > MH_PASSWORD_MAX) {
        mh_log(MH_LOG_ERROR, "password: longer than %d bytes", MH_PASSWORD_MAX);
        goto fail;
    }
    if (RAND_bytes(salt, sizeof(salt)) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "password: random salt");
        goto fail;
    }
    if (scrypt_derive(password, pwlen, salt, SCRYPT_LN, SCRYPT_R, SCRYPT_P, key) != 0)
        goto fail;
    b64_encode(salt, sizeof(salt), false, salt_b64);
    b64_encode(key, sizeof(key), false, key_b64);
    int n = snprintf(out, outlen, "$scrypt$ln=%d,r=%d,p=%d$%s$%s", SCRYPT_LN, SCRYPT_R, SCRYPT_P,
                     salt_b64, key_b64);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        mh_log(MH_LOG_ERROR, "password: hash encoding does not fit");
        goto fail;
    }
    rc = 0;
fail:
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(key_b64, sizeof(key_b64));
    return rc;
}

int mh_password_verify(const char *password, const char *encoded)
{
    int rc = -1;
    uint8_t salt[SALT_LEN];
    uint8_t want[KEY_LEN];
    uint8_t got[KEY_LEN];
    const char *s = encoded;
    long ln = 0, r = 0, p = 0;

    /* Parse everything before spending any memory or time on scrypt. */
    if (strnlen(encoded, MH_PASSWORD_HASH_MAX) >= MH_PASSWORD_HASH_MAX)
        goto fail;
    if (parse_param(&s, "$scrypt$ln=", LN_MIN, LN_MAX, &ln) != 0 ||
        parse_param(&s, ",r=", R_MIN, R_MAX, &r) != 0 ||
        parse_param(&s, ",p=", P_MIN, P_MAX, &p) != 0 || *s != '$')
        goto fail;
    s++;
    const char *sep = strchr(s, '$');
    if (sep == NULL || b64_decode_exact(s, (size_t)(sep - s), salt, SALT_LEN) != 0 ||
        b64_decode_exact(sep + 1, strlen(sep + 1), want, KEY_LEN) != 0)
        goto fail;

    size_t pwlen = strnlen(password, MH_PASSWORD_MAX + 1);
    if (pwlen > MH_PASSWORD_MAX) {
        /* mh_password_hash never hashed such a password; no need to pay scrypt to say no. */
        rc = 0;
        goto fail;
    }
    if (scrypt_derive(password, pwlen, salt, ln, r, p, got) != 0)
        goto fail;
    rc = CRYPTO_memcmp(got, want, KEY_LEN) == 0 ? 1 : 0;
fail:
    OPENSSL_cleanse(got, sizeof(got));
    OPENSSL_cleanse(want, sizeof(want));
    return rc;
}

int mh_password_acceptable(const char *password, char *err, size_t errlen)
{
    int rc = -1;
    size_t len = strnlen(password, MH_PASSWORD_MAX + 1);

    if (len < MH_PASSWORD_MIN) {
        snprintf(err, errlen, "password too short: at least %d bytes are needed", MH_PASSWORD_MIN);
        goto fail;
    }
    if (len > MH_PASSWORD_MAX) {
        snprintf(err, errlen, "password too long: at most %d bytes", MH_PASSWORD_MAX);
        goto fail;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)password[i];
        if (c < 0x20 || c == 0x7f) {
            snprintf(err, errlen, "password contains a control character (tab, newline...)");
            goto fail;
        }
    }
    rc = 0;
fail:
    return rc;
}

int mh_password_generate(char *out, size_t outlen)
{
    int rc = -1;
    uint8_t raw[GENERATED_RANDOM_LEN];
    char b64[B64_BUF];

    if (outlen > 0)
        out[0] = '\0';
    if (outlen <= MH_PASSWORD_GENERATED_LEN) {
        mh_log(MH_LOG_ERROR, "password: buffer of %zu bytes, %d needed", outlen,
               MH_PASSWORD_GENERATED_LEN + 1);
        goto fail;
    }
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "password: random bytes");
        goto fail;
    }
    /* 18 bytes are exactly 24 characters: no padding to strip. */
    b64_encode(raw, sizeof(raw), true, b64);
    memcpy(out, b64, MH_PASSWORD_GENERATED_LEN + 1);
    rc = 0;
fail:
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(b64, sizeof(b64));
    return rc;
}

int mh_token_new(char *out, size_t outlen)
{
    int rc = -1;
    uint8_t raw[TOKEN_RANDOM_LEN];
    char b64[B64_BUF];

    if (outlen > 0)
        out[0] = '\0';
    if (outlen < MH_TOKEN_MAX) {
        mh_log(MH_LOG_ERROR, "token: buffer of %zu bytes, %d needed", outlen, MH_TOKEN_MAX);
        goto fail;
    }
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "token: random bytes");
        goto fail;
    }
    b64_encode(raw, sizeof(raw), true, b64);
    snprintf(out, outlen, "%s%s", MH_TOKEN_PREFIX, b64);
    rc = 0;
fail:
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(b64, sizeof(b64));
    return rc;
}

int mh_token_hash(const char *token, uint8_t out[MH_TOKEN_HASH_LEN])
{
    int rc = -1;
    unsigned int len = 0;

    if (EVP_Digest(token, strlen(token), out, &len, EVP_sha256(), NULL) != 1 ||
        len != MH_TOKEN_HASH_LEN) {
        mh_log_openssl(MH_LOG_ERROR, "token: sha256");
        goto fail;
    }
    rc = 0;
fail:
    return rc;
}

bool mh_token_well_formed(const char *token)
{
    size_t plen = strlen(MH_TOKEN_PREFIX);
    if (strncmp(token, MH_TOKEN_PREFIX, plen) != 0)
        return false;
    const char *s = token + plen;
    size_t i = 0;
    /* Stops one past the expected length at most: a long string is not read to its end. */
    while (i <= TOKEN_CHARS && s[i] != '\0') {
        if (!b64_char(s[i], true))
            return false;
        i++;
    }
    return i == TOKEN_CHARS && s[i] == '\0';
}
