#ifndef MH_PROVISION_H
#define MH_PROVISION_H

/*
 * Provisioning: the device CA, device certificates, and the account/device/sensor rows that go
 * with them. Shared by meterhub-admin (operators, bulk load-test fleets), the people API (a
 * device registered with a CSR) and the load simulator.
 *
 * Layers, each usable on its own:
 *   1. mh_device_ca_*    - load the device CA from a PKI directory; issue a certificate for a
 *                          fresh key pair, or sign a CSR's public key. No database, no files.
 *   2. mh_prov_batch_*   - generate N devices (ids, keys, certificates, sensor ids) in memory.
 *   3. mh_prov_insert    - insert a batch into PostgreSQL inside the caller's transaction, in
 *                          chunks of MH_PROV_CHUNK devices (two statements per chunk).
 *   4. mh_prov_stage_*   - write a batch's files into a staging directory, then publish them
 *                          (rename into place) or discard them.
 *   mh_prov_run() wires 2-4 together in the only safe order (see there).
 *
 * Device certificates: ECDSA P-256 key, subject O=meterhub device, CN=<device id>, a 128-bit
 * random serial, basicConstraints critical CA:FALSE, keyUsage critical digitalSignature,
 * extendedKeyUsage clientAuth, subject and authority key identifiers, SHA-256 signature by the
 * device CA. See docs/contracts.md for the PKI layout.
 *
 * Threading: a mh_device_ca_t is immutable once loaded and may be used by several threads at
 * once. A batch belongs to one thread at a time. A PGconn must not be shared between threads,
 * as usual with libpq. Errors are logged through mh_log; no function logs key material.
 */

#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cert.h"
#include "ids.h"

/* Defaults and bounds of the issuing options. */
#define MH_CERT_DAYS_DEFAULT 3650
#define MH_CERT_DAYS_MAX 36500
/* Upper bound on a CSR's PEM text: a P-384 or RSA-4096 request fits many times over. */
#define MH_CSR_MAX_BYTES 16384
/* Devices per INSERT statement in mh_prov_insert. */
#define MH_PROV_CHUNK 1000
/* Bounds of what mh_prov_batch_generate accepts. */
#define MH_PROV_MAX_DEVICES 1000000
#define MH_PROV_MAX_SENSORS 64
/* Longest account name (the accounts.name CHECK constraint). */
#define MH_ACCOUNT_NAME_MAX 64

/* ---- device CA and certificates ---------------------------------------------------------- */

typedef struct mh_device_ca mh_device_ca_t;

/*
 * Loads DIR/device-ca.key, DIR/device-ca.crt and DIR/ca.crt. Checks that the key matches the
 * certificate, that the certificate is a CA and that it is issued (directly or not) by a
 * certificate in ca.crt, so that every certificate issued later verifies against the chain
 * the PKI directory hands out. A key file readable by group or others is loaded with a
 * warning. Returns an owned CA (mh_device_ca_free), or NULL after logging why.
 */
mh_device_ca_t *mh_device_ca_load(const char *dir);

/*
 * Builds a CA from objects already in memory (tests, the simulator's throwaway PKI). Takes
 * ownership of key and cert, also on failure; trust_pem (the PEM text clients are given as
 * ca.crt) is copied. Same checks as mh_device_ca_load. Returns an owned CA or NULL (logged).
 */
mh_device_ca_t *mh_device_ca_new(EVP_PKEY *key, X509 *cert, const char *trust_pem);

/* NULL is a no-op. */
void mh_device_ca_free(mh_device_ca_t *ca);

/* The device CA certificate. Borrowed: valid as long as ca. */
X509 *mh_device_ca_cert(const mh_device_ca_t *ca);

/* The PEM text of DIR/ca.crt, what OUT/ca.crt receives. Borrowed: valid as long as ca. */
const char *mh_device_ca_trust_pem(const mh_device_ca_t *ca);

/* Longest devices.hardware (docs/upgrade.md: [a-z0-9][a-z0-9._-]{0,31}), and the column's
 * default (deploy/sql/010_upgrade.sql). */
#define MH_HARDWARE_DEFAULT "flm02"

typedef struct mh_issue_opts {
    int days;                /* validity from notBefore, 1..MH_CERT_DAYS_MAX */
    int not_before_days_ago; /* notBefore = now - this many days, 0..MH_CERT_DAYS_MAX */
    /* Batches only (ignored by the certificate functions): the devices' hardware, borrowed;
     * NULL: the database's default (flm02). */
    const char *hardware;
} mh_issue_opts_t;

/* { MH_CERT_DAYS_DEFAULT, 0, NULL } */
void mh_issue_opts_init(mh_issue_opts_t *opts);

/* A device's credentials. key_pem is NULL for a certificate issued from a CSR. */
typedef struct mh_device_cred {
    char id[MH_ID_LEN + 1];
    uint8_t fingerprint[MH_FINGERPRINT_LEN]; /* SHA-256 of the certificate's DER */
    char *cert_pem;                          /* owned */
    char *key_pem;                           /* owned, PKCS#8 PEM; wiped when disposed */
} mh_device_cred_t;

/* Frees and wipes what cred holds and zeroes it. Safe on a zeroed or disposed cred. */
void mh_device_cred_dispose(mh_device_cred_t *cred);

/*
 * Generates a P-256 key pair and issues a certificate for device_id (must be mh_id_valid) with
 * opts (NULL: defaults). Fills *out, which the caller disposes. Returns 0, or -1 (logged) with
 * *out zeroed.
 */
int mh_device_ca_issue(const mh_device_ca_t *ca, const char *device_id, const mh_issue_opts_t *opts,
                       mh_device_cred_t *out);

/*
 * Signs the public key of a PEM certificate request for device_id. The request's signature
 * must verify (proof of possession); only its public key is used: the requested subject and
 * extensions are ignored and the certificate gets exactly the fields mh_device_ca_issue gives.
 * Accepted keys: EC P-256 or P-384, RSA 2048..4096 bits. csr_len is bounded by
 * MH_CSR_MAX_BYTES. Fills *out (key_pem NULL). Returns 0, or -1 (logged) with *out zeroed.
 */
int mh_device_ca_sign_csr(const mh_device_ca_t *ca, const char *device_id, const char *csr_pem,
                          size_t csr_len, const mh_issue_opts_t *opts, mh_device_cred_t *out);

/* What is wrong with a certificate request (mh_csr_check). */
typedef enum mh_csr_status {
    MH_CSR_OK = 0,
    MH_CSR_MALFORMED,     /* not a PEM certificate request of at most MH_CSR_MAX_BYTES */
    MH_CSR_KEY_REFUSED,   /* a key type or size mh_device_ca_sign_csr does not accept */
    MH_CSR_BAD_SIGNATURE, /* not signed by its own key: no proof of possession */
} mh_csr_status_t;

/*
 * Checks a PEM certificate request exactly as mh_device_ca_sign_csr does (size, format, key,
 * signature), but without logging, and leaves this thread's OpenSSL error queue empty: for
 * requests that come from outside (the people API), where a refusal is the sender's mistake,
 * told to them with mh_csr_status_text, not an error of ours. Any thread.
 */
mh_csr_status_t mh_csr_check(const char *csr_pem, size_t csr_len);

/* One sentence for whoever sent a refused request. Borrowed static text. */
const char *mh_csr_status_text(mh_csr_status_t status);

/* ---- sensors and accounts ---------------------------------------------------------------- */

typedef struct mh_sensor_spec {
    const char *kind; /* "electricity", "gas", "water" */
    const char *type; /* "counter", "gauge" */
    const char *unit; /* "Wh", "L", "W" */
} mh_sensor_spec_t;

/* Sensor i (0-based) of a provisioned device, cycling: electricity counter Wh, gas counter L,
 * water counter L, electricity gauge W. Borrowed static data. */
const mh_sensor_spec_t *mh_sensor_spec_cycle(size_t i);

/* True if name is a valid account name: 1..64 characters of [A-Za-z0-9._@-], the first a
 * letter or digit (the same rule as the accounts table's CHECK). */
bool mh_account_name_valid(const char *name);

/*
 * Finds the account called name, creating it if missing. *created tells which (may be NULL).
 * Safe against a concurrent creation of the same name. Works inside or outside a transaction.
 * Returns 0 with *id set, or -1 (logged).
 */
int mh_prov_account_ensure(PGconn *conn, const char *name, int64_t *id, bool *created);

/*
 * Sets a device's status to revoked; revoked_at keeps the time of the first revocation, so
 * revoking twice is harmless. *found is false when no device has that id (then nothing
 * changes and 0 is returned). Returns 0, or -1 (logged) on a database error.
 */
int mh_prov_device_revoke(PGconn *conn, const char *device_id, bool *found);

/* ---- batches ----------------------------------------------------------------------------- */

typedef struct mh_prov_device {
    mh_device_cred_t cred; /* cred.id is the device id */
    size_t nsensors;
    char (*sensor_ids)[MH_ID_LEN + 1]; /* nsensors ids; spec of sensor i: mh_sensor_spec_cycle */
} mh_prov_device_t;

typedef struct mh_prov_batch {
    mh_prov_device_t *devices;
    size_t count;
    char hardware[MH_HARDWARE_MAX + 1]; /* of every device; "": the database's default */
} mh_prov_batch_t;

/* Progress of a long operation: `done` of `total` items of `phase` ("keys", "database",
 * "files"). Called on the calling thread, at most every MH_PROV_CHUNK items and at the end. */
typedef void (*mh_prov_progress_fn)(const char *phase, size_t done, size_t total, void *arg);

/*
 * Generates count devices (1..MH_PROV_MAX_DEVICES) with nsensors sensors each
 * (0..MH_PROV_MAX_SENSORS): random ids, P-256 keys, certificates, and opts->hardware (must be
 * valid) for all of them. Nothing touches the database or the disk. Returns an owned batch
 * (mh_prov_batch_free), or NULL (logged).
 */
mh_prov_batch_t *mh_prov_batch_generate(const mh_device_ca_t *ca, size_t count, size_t nsensors,
                                        const mh_issue_opts_t *opts, mh_prov_progress_fn progress,
                                        void *arg);

/* Wipes the keys and frees everything. NULL is a no-op. */
void mh_prov_batch_free(mh_prov_batch_t *batch);

/*
 * Inserts the batch's devices and sensors for account_id. Must be called inside a transaction
 * the caller owns (refused otherwise): on failure the caller rolls back and nothing of the
 * batch remains. Round trips: two per MH_PROV_CHUNK devices. Returns 0, or -1 (logged).
 */
int mh_prov_insert(PGconn *conn, int64_t account_id, const mh_prov_batch_t *batch,
                   mh_prov_progress_fn progress, void *arg);

/* ---- files ------------------------------------------------------------------------------- */

/*
 * Files of a batch in out_dir: a batch of one device writes out_dir/device.key (0600),
 * out_dir/device.crt and out_dir/ca.crt (copy of the PKI's ca.crt); a larger batch writes the
 * same three files into out_dir/<device id>/ for each device.
 *
 * They are first written into a fresh staging directory out_dir/.mh-staging-XXXXXX (same file
 * system, mode 0700) and synced to disk; publishing renames them into place, discarding
 * removes exactly what was written. Publishing a single device replaces existing files of
 * that name in out_dir.
 */
typedef struct mh_prov_stage mh_prov_stage_t;

/* Creates out_dir if missing, writes the staging directory. Returns an owned stage, or NULL
 * (logged) after removing whatever it had written. batch and trust_pem are borrowed and need
 * not outlive the call. */
mh_prov_stage_t *mh_prov_stage_write(const mh_prov_batch_t *batch, const char *out_dir,
                                     const char *trust_pem, mh_prov_progress_fn progress,
                                     void *arg);

/* Renames the staged files into out_dir and removes the staging directory. Returns 0, or -1
 * (logged, naming the staging directory that still holds the files not yet moved). */
int mh_prov_stage_publish(mh_prov_stage_t *stage);

/* Removes the staged files and the staging directory. */
void mh_prov_stage_discard(mh_prov_stage_t *stage);

/* Frees the stage object (not the files). NULL is a no-op. */
void mh_prov_stage_free(mh_prov_stage_t *stage);

/* ---- all together ------------------------------------------------------------------------ */

typedef struct mh_prov_timing {
    double keys_s, files_s, db_s, publish_s; /* seconds spent in each step */
} mh_prov_timing_t;

/*
 * Provisions count devices with nsensors sensors each for account (created if missing), with
 * files in out_dir (NULL: no files, the keys live only in the returned batch).
 *
 * Order, chosen so that no file ever names a device that does not exist and no failure leaves
 * a half-done fleet:
 *   1. generate everything in memory;
 *   2. write the files into a staging directory and sync them;
 *   3. BEGIN; ensure the account; insert; COMMIT;
 *   4. rename the files into place.
 * If 2 or 3 fails, the transaction is rolled back and the staging directory removed. If 4
 * fails (rare: a rename in one directory), the devices exist and their files are in the
 * staging directory, which the error message names. conn must not be in a transaction.
 *
 * Returns the owned batch (ids, certificates, keys) or NULL (logged). *account_id is set when
 * not NULL; timing, when not NULL, receives the time per step.
 */
mh_prov_batch_t *mh_prov_run(PGconn *conn, const mh_device_ca_t *ca, const char *account,
                             size_t count, size_t nsensors, const mh_issue_opts_t *opts,
                             const char *out_dir, mh_prov_progress_fn progress, void *arg,
                             int64_t *account_id, mh_prov_timing_t *timing);

#endif
