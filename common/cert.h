#ifndef MH_CERT_H
#define MH_CERT_H

/*
 * What meterhub reads from a device certificate: its SHA-256 fingerprint (over the DER
 * encoding; the key of the devices table) and the device id in the subject's commonName.
 */

#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#define MH_FINGERPRINT_LEN 32

/* SHA-256 of the certificate's DER encoding into out[32]. cert is borrowed. Returns 0 or -1. */
int mh_cert_fingerprint(X509 *cert, uint8_t *out);

/* Copies the subject commonName into out (NUL-terminated). Returns 0, or -1 if there is no
 * commonName or it does not fit in outlen. cert is borrowed. */
int mh_cert_subject_cn(X509 *cert, char *out, size_t outlen);

#endif
