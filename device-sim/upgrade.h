#ifndef SIM_UPGRADE_H
#define SIM_UPGRADE_H

/*
 * What a careful meter checks before it installs firmware (docs/upgrade.md "The careful
 * meter"): the offer of a heartbeat answer before anything is downloaded, and the image while
 * and after it is downloaded. It trusts nothing in the offer but what it can check with its
 * pinned release key, its own hardware, version and clock, and its verified copy of the public
 * release log.
 *
 * Pure (OpenSSL and jansson only); any thread, no shared state.
 */

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/release.h"
#include "device-sim/release_log.h"

/* Why a meter refuses (or fails) an upgrade: the reason of its upgrade_report. */
typedef enum sim_upgrade_reason {
    SIM_UPG_OK,              /* nothing wrong */
    SIM_UPG_OFFER,           /* "offer": the offer is not of the documented shape */
    SIM_UPG_SIGNATURE,       /* "signature": not signed by the pinned key */
    SIM_UPG_MANIFEST,        /* "manifest": signed, but not a valid manifest */
    SIM_UPG_HARDWARE,        /* "hardware": for other hardware */
    SIM_UPG_ROLLBACK,        /* "rollback": not newer than the running version */
    SIM_UPG_EXPIRED,         /* "expired": the manifest has expired */
    SIM_UPG_NOT_IN_LOG,      /* "not_in_log": the public log does not show this release */
    SIM_UPG_SIZE,            /* "size": the image is not exactly the manifest's size */
    SIM_UPG_SHA256,          /* "sha256": the image is not the manifest's */
    SIM_UPG_LOG_UNAVAILABLE, /* "log_unavailable" (failed): the public log could not be read */
    SIM_UPG_DOWNLOAD,        /* "download" (failed): no complete image after every attempt */
    SIM_UPG_REASONS,
} sim_upgrade_reason_t;

/* The reason's report string, e.g. "not_in_log". Static, borrowed. */
const char *sim_upgrade_reason_name(sim_upgrade_reason_t r);
/* True for the reasons reported as outcome "failed" (the meter could not finish), false for
 * those reported as "refused" (a check said no). */
bool sim_upgrade_reason_is_failure(sim_upgrade_reason_t r);

/* An offer as the heartbeat answer carries it, decoded but not yet trusted. */
typedef struct sim_upgrade_offer {
    char release[MH_RELEASE_ID_LEN + 1];
    uint8_t *manifest; /* owned */
    size_t manifest_len;
    uint8_t signature[MH_RELEASE_SIG_LEN];
    int64_t log_seq;
    char log_prev[MH_RELEASE_HASH_HEX + 1];
    char log_hash[MH_RELEASE_HASH_HEX + 1];
    char url[64];
    bool parsed;     /* manifest holds the parsed manifest (after a check got that far) */
    mh_manifest_t m; /* valid when parsed */
} sim_upgrade_offer_t;

/* What the meter knows of itself. All borrowed. */
typedef struct sim_meter_self {
    EVP_PKEY *key;        /* the pinned release public key */
    const char *hardware; /* e.g. "flm02" */
    const char *version;  /* the running firmware version */
    int64_t now;          /* its clock, Unix seconds */
} sim_meter_self_t;

typedef enum sim_upgrade_verdict {
    SIM_UPGRADE_ACCEPT,   /* download it */
    SIM_UPGRADE_REFUSE,   /* *reason says why */
    SIM_UPGRADE_NEED_LOG, /* everything else holds, but the log entry is beyond the copy's
                           * head: fetch the log again and check again */
} sim_upgrade_verdict_t;

/*
 * Decodes the "upgrade" object of a heartbeat answer (borrowed) into *out: release, manifest
 * and signature (base64), log {seq, prev, hash}, url. Only the shape is checked. Returns 0,
 * or -1 with *reason SIM_UPG_OFFER (out then needs no dispose).
 */
int sim_upgrade_offer_parse(const json_t *upgrade, sim_upgrade_offer_t *out,
                            sim_upgrade_reason_t *reason);
void sim_upgrade_offer_dispose(sim_upgrade_offer_t *o);

/*
 * The checks before download, in this order: the signature over the manifest bytes with the
 * pinned key (signature); the manifest parses (manifest); the release id is the manifest's
 * and the url is /firmware/<that id> (offer); the hardware is the meter's (hardware); the
 * version is newer than the running one, which must itself be comparable (rollback); the
 * manifest has not expired at self->now (expired); log.hash is the entry hash of this
 * manifest and signature at log.seq after log.prev, and the log copy (borrowed, may be
 * NULL: no copy) holds that very entry (not_in_log, or NEED_LOG when log.seq lies beyond its
 * head and the chain is not broken). Fills o->m on the way (o->parsed).
 */
sim_upgrade_verdict_t sim_upgrade_offer_check(sim_upgrade_offer_t *o, const sim_meter_self_t *self,
                                              const sim_release_log_t *log,
                                              sim_upgrade_reason_t *reason);

/*
 * The image as it arrives: at most `size` bytes are taken, hashed as they come (a download
 * resumed with Range goes on from `received`). Nothing is kept but the digest state.
 */
typedef struct sim_image_check {
    EVP_MD_CTX *ctx;
    int64_t size;     /* the manifest's */
    int64_t received; /* bytes taken so far */
    char sha256[MH_RELEASE_HASH_HEX + 1];
} sim_image_check_t;

/* Starts a check for an image of size bytes whose SHA-256 is sha256 (hex). -1 (logged) when
 * OpenSSL fails. */
int sim_image_check_init(sim_image_check_t *c, int64_t size, const char *sha256);
/* Takes len more bytes: SIM_UPG_SIZE, and nothing taken, when they would go beyond size. */
sim_upgrade_reason_t sim_image_check_feed(sim_image_check_t *c, const uint8_t *buf, size_t len);
/* Starts over from byte 0 (a server that answered a Range request with the whole image). */
int sim_image_check_restart(sim_image_check_t *c);
/* After the last byte: SIM_UPG_SIZE when fewer than size bytes came, SIM_UPG_SHA256 when the
 * digest differs, SIM_UPG_OK otherwise. */
sim_upgrade_reason_t sim_image_check_finish(sim_image_check_t *c);
void sim_image_check_dispose(sim_image_check_t *c);

#endif
