#ifndef MH_IDS_H
#define MH_IDS_H

/*
 * Public identifiers of devices and sensors: 32 lowercase hex digits (128 random bits), as
 * Flukso uses. MH_ID_LEN excludes the terminating NUL.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MH_ID_LEN 32

/* Fills out[MH_ID_LEN + 1] with a fresh random id from OpenSSL's CSPRNG. Returns 0 or -1. */
int mh_id_random(char *out);

/* True if s is exactly MH_ID_LEN lowercase hex digits. */
bool mh_id_valid(const char *s);
/* Same for a string of known length (not NUL-terminated). */
bool mh_id_valid_n(const char *s, size_t len);

/* True if s (NUL-terminated) is exactly len lowercase hex digits: ids, digests, key ids. */
bool mh_hex_valid(const char *s, size_t len);

/* A hardware name (devices.hardware, a manifest's "hardware"): [a-z0-9][a-z0-9._-]{0,31}. */
#define MH_HARDWARE_MAX 32
bool mh_hardware_valid(const char *s);

/* Writes 2*len lowercase hex digits and a NUL into out. */
void mh_hex_encode(const uint8_t *in, size_t len, char *out);

#endif
