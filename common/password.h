#ifndef MH_PASSWORD_H
#define MH_PASSWORD_H

/*
 * Account passwords and API bearer tokens (people API, issue 4).
 *
 * Passwords are stored as scrypt hashes (OpenSSL), encoded as one string that carries its own
 * parameters, so they can be raised later without invalidating stored hashes:
 *
 *     $scrypt$ln=15,r=8,p=1$<salt>$<key>
 *
 * N = 2^ln, a 16-byte random salt and a 32-byte derived key, both standard base64 without
 * '=' padding. The accounts.password_hash CHECK constraint (deploy/sql/003_api.sql) relies on
 * the "$scrypt$" prefix.
 *
 * Tokens are "mht_" followed by 32 random bytes in base64url without padding (43 characters).
 * Only their SHA-256 is stored (api_tokens.token_hash); the token itself is shown once.
 *
 * Threading: every function may be called from any thread. mh_password_hash and
 * mh_password_verify take tens of milliseconds of CPU and 32 MiB of memory with the default
 * parameters: never call them on an event loop thread. No function logs a password or a token;
 * OpenSSL failures are logged through mh_log.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Buffer size for an encoded hash, NUL included (the default parameters need 89 bytes). */
#define MH_PASSWORD_HASH_MAX 128
/* Bounds of an acceptable password, in bytes. */
#define MH_PASSWORD_MIN 10
#define MH_PASSWORD_MAX 1024
/* Length of a password from mh_password_generate (NUL excluded): 18 random bytes. */
#define MH_PASSWORD_GENERATED_LEN 24

#define MH_TOKEN_PREFIX "mht_"
/* Length of a token (NUL excluded): the prefix and 43 base64url characters. */
#define MH_TOKEN_LEN 47
/* Buffer size for a token, NUL included. */
#define MH_TOKEN_MAX 64
/* Length of a token hash (SHA-256). */
#define MH_TOKEN_HASH_LEN 32

/*
 * Hashes password (at most MH_PASSWORD_MAX bytes; the policy is the caller's business, see
 * mh_password_acceptable) with scrypt N=2^15, r=8, p=1 and a fresh random salt. Writes the
 * NUL-terminated encoding into out, which must hold MH_PASSWORD_HASH_MAX bytes. Returns 0, or
 * -1 (a password too long, a small buffer or an OpenSSL failure, logged) with out emptied.
 */
int mh_password_hash(const char *password, char *out, size_t outlen);

/*
 * Checks password against an encoding made by mh_password_hash. Returns 1 on a match, 0 on a
 * mismatch (also for a password longer than MH_PASSWORD_MAX, which no hash can match), -1 when
 * encoded is malformed or its parameters are out of the accepted ranges (ln 10..20, r 1..16,
 * p 1..4: a stored hash must not make us spend unbounded memory or time), or on an OpenSSL
 * failure (logged). The comparison takes constant time.
 */
int mh_password_verify(const char *password, const char *encoded);

/*
 * The password policy: MH_PASSWORD_MIN..MH_PASSWORD_MAX bytes, no control characters (bytes
 * below 0x20, and 0x7f; bytes of UTF-8 sequences are fine). Returns 0, or -1 with a one-line
 * message in err that never quotes the password.
 */
int mh_password_acceptable(const char *password, char *err, size_t errlen);

/*
 * Writes a random password of MH_PASSWORD_GENERATED_LEN base64url characters (144 bits) and a
 * NUL into out (outlen > MH_PASSWORD_GENERATED_LEN). It satisfies mh_password_acceptable.
 * Returns 0, or -1 (logged) with out emptied.
 */
int mh_password_generate(char *out, size_t outlen);

/*
 * Writes a fresh token (MH_TOKEN_LEN characters and a NUL) into out, which must hold
 * MH_TOKEN_MAX bytes. Returns 0, or -1 (logged) with out emptied.
 */
int mh_token_new(char *out, size_t outlen);

/* SHA-256 of the whole token string, what api_tokens.token_hash stores. The caller should
 * check mh_token_well_formed first (it bounds the length). Returns 0, or -1 (logged). */
int mh_token_hash(const char *token, uint8_t out[MH_TOKEN_HASH_LEN]);

/* True only for MH_TOKEN_PREFIX followed by exactly 43 characters of [A-Za-z0-9_-]. */
bool mh_token_well_formed(const char *token);

#endif
