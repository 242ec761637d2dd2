#ifndef MH_RELEASE_H
#define MH_RELEASE_H

/*
 * Firmware releases as docs/upgrade.md defines them: Ed25519 release keys, the signed
 * manifest, release ids, versions and the hash-chained release log. Shared by the operators'
 * meterhub-release (signs, verifies, publishes) and the careful meter of meterhub-sim
 * (verifies). Pure functions over OpenSSL and jansson: no I/O except the key file helpers.
 *
 * Every function returns 0 on success and -1 on failure with a one-line reason in err (when
 * err is not NULL), unless its comment says otherwise.
 */

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MH_RELEASE_FORMAT "meterhub-manifest/1"
#define MH_RELEASE_SIG_LEN 64     /* Ed25519 signature */
#define MH_RELEASE_PUBKEY_LEN 32  /* raw Ed25519 public key */
#define MH_RELEASE_ID_LEN 32      /* hex characters of a release id */
#define MH_RELEASE_KEY_ID_LEN 16  /* hex characters of a key id */
#define MH_RELEASE_HASH_HEX 64    /* hex characters of a SHA-256 */
#define MH_RELEASE_MAX_VERSION 39 /* 4 x 9 digits and 3 dots */
#define MH_RELEASE_MAX_HARDWARE 32
#define MH_RELEASE_MAX_NOTES 4096
#define MH_RELEASE_MAX_SIZE (256LL << 20) /* largest image: 256 MiB */
#define MH_RELEASE_MAX_MANIFEST 8192      /* bytes of a manifest, notes included */
#define MH_RELEASE_VERSION_PARTS 4

/* ---- keys --------------------------------------------------------------------------------- */

/* A fresh Ed25519 key pair. Returns an owned key, or NULL (OpenSSL errors logged). */
EVP_PKEY *mh_release_keygen(void);

/* Loads a PKCS#8 PEM private key (must be Ed25519). Returns owned, or NULL with err. */
EVP_PKEY *mh_release_load_private(const char *path, char *err, size_t errlen);
/* Loads a SubjectPublicKeyInfo PEM public key (must be Ed25519). Returns owned, or NULL. */
EVP_PKEY *mh_release_load_public(const char *path, char *err, size_t errlen);
/* The same from a PEM held in memory. */
EVP_PKEY *mh_release_public_from_pem(const char *pem, size_t len, char *err, size_t errlen);

/* The raw 32-byte public key of key (private or public). key is borrowed. */
int mh_release_raw_public(EVP_PKEY *key, uint8_t out[MH_RELEASE_PUBKEY_LEN]);
/* fingerprint: 64 hex + NUL (SHA-256 of the raw public key); key_id: its first 16 hex + NUL.
 * Either may be NULL. */
int mh_release_key_ids(EVP_PKEY *key, char fingerprint[MH_RELEASE_HASH_HEX + 1],
                       char key_id[MH_RELEASE_KEY_ID_LEN + 1]);

/* ---- versions ----------------------------------------------------------------------------- */

/* Parses "2.4.1" into {2,4,1,0}. -1 for anything that is not 1 to 4 dot-separated decimal
 * numbers of 1 to 9 digits (no err: callers say what was wrong). */
int mh_release_version_parse(const char *s, uint32_t out[MH_RELEASE_VERSION_PARTS]);
/* <0, 0, >0 as a is older than, the same as, newer than b. */
int mh_release_version_cmp(const uint32_t a[MH_RELEASE_VERSION_PARTS],
                           const uint32_t b[MH_RELEASE_VERSION_PARTS]);

/* ---- manifests ---------------------------------------------------------------------------- */

typedef struct mh_manifest {
    char version[MH_RELEASE_MAX_VERSION + 1];
    uint32_t version_key[MH_RELEASE_VERSION_PARTS];
    char hardware[MH_RELEASE_MAX_HARDWARE + 1];
    int64_t size;
    char sha256[MH_RELEASE_HASH_HEX + 1]; /* of the image, lowercase hex */
    char *notes;                          /* owned: mh_manifest_dispose */
    int64_t issued, expires;              /* Unix seconds */
    char key_id[MH_RELEASE_KEY_ID_LEN + 1];
} mh_manifest_t;

/*
 * Parses and checks manifest bytes (docs/upgrade.md): valid UTF-8 JSON, exactly the nine keys
 * with the right types and ranges, no duplicates, expires > issued. Does not check the
 * signature nor the clock. On success fills m (dispose it); on failure m needs no dispose.
 */
int mh_manifest_parse(const uint8_t *buf, size_t len, mh_manifest_t *m, char *err, size_t errlen);
void mh_manifest_dispose(mh_manifest_t *m);

/* Writes the canonical manifest bytes of m (one compact JSON line in the documented key
 * order, then "\n") into *out (owned, free()), its length into *outlen. Checks m's fields the
 * way mh_manifest_parse would. */
int mh_manifest_serialize(const mh_manifest_t *m, uint8_t **out, size_t *outlen, char *err,
                          size_t errlen);

/* The release id of manifest bytes: first 32 hex characters of their SHA-256, + NUL. */
int mh_release_id(const uint8_t *manifest, size_t len, char out[MH_RELEASE_ID_LEN + 1]);

/* Ed25519 signature of manifest bytes with a private key. */
int mh_release_sign(EVP_PKEY *key, const uint8_t *manifest, size_t len,
                    uint8_t sig[MH_RELEASE_SIG_LEN], char *err, size_t errlen);
/* 0 when sig is a valid signature of manifest by pub; -1 with err otherwise. */
int mh_release_verify(EVP_PKEY *pub, const uint8_t *manifest, size_t len,
                      const uint8_t sig[MH_RELEASE_SIG_LEN], char *err, size_t errlen);

/* ---- the release log ---------------------------------------------------------------------- */

/* entry_hash of docs/upgrade.md, 64 hex + NUL. prev: 64 hex (64 '0's for seq 1);
 * manifest_sha256: 64 hex of the manifest bytes' SHA-256; sig: the raw signature. */
int mh_release_log_hash(int64_t seq, const char *prev, const char *manifest_sha256,
                        const uint8_t sig[MH_RELEASE_SIG_LEN], char out[MH_RELEASE_HASH_HEX + 1]);

/* ---- encodings ---------------------------------------------------------------------------- */

/* Lowercase hex of SHA-256(buf) into out (65 bytes). */
void mh_sha256_hex(const uint8_t *buf, size_t len, char out[MH_RELEASE_HASH_HEX + 1]);
/* Standard base64 with padding, no newlines. Returns an owned NUL-terminated string. */
char *mh_base64_encode(const uint8_t *buf, size_t len);
/* Decodes standard base64 (padding required, no whitespace but one trailing newline).
 * Returns an owned buffer of *outlen bytes, or NULL for malformed input. */
uint8_t *mh_base64_decode(const char *s, size_t len, size_t *outlen);

#endif
