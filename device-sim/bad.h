#ifndef SIM_BAD_H
#define SIM_BAD_H

/*
 * The misbehaving devices of the mixed-bad scenario: which devices misbehave and how (drawn
 * from the seed, so a run can be repeated), the certificates of those that present one from
 * another CA (a throwaway CA made in memory, never written anywhere), the device each
 * "other device's sensor" attacker aims at, and the revocation in PostgreSQL of those that
 * play revoked devices.
 *
 * Threading: built and revoked by the main thread before the workers start; read-only after.
 */

#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#include "device-sim/fleet.h"
#include "device-sim/stats.h"

typedef struct sim_bad {
    size_t n;         /* devices of the run */
    uint8_t *kind;    /* sim_bad_kind_t of each device; SIM_BAD_NONE for a good one */
    uint32_t *victim; /* other-sensor attackers: the (good) device whose sensors they post to */
    X509 **cert;      /* wrong-CA devices: their certificate from the throwaway CA; else NULL */
    uint32_t devices[SIM_BAD_KINDS]; /* how many devices of each kind */
} sim_bad_t;

/*
 * Picks round(fraction * ndevices) devices of the first ndevices of fleet (at most
 * ndevices - 1: one device at least stays good, to be attacked and verified), shuffled by
 * seed, and gives them the kinds in turn, so that five bad devices exercise every kind.
 * Makes the throwaway CA and the wrong-CA devices' certificates (same subject and key as the
 * device's own). Returns an owned sim_bad_t or NULL (logged).
 */
sim_bad_t *sim_bad_new(const sim_fleet_t *fleet, size_t ndevices, double fraction, uint64_t seed);

/* Revokes the revoked-kind devices in the database at pg_uri (an admin URI), as
 * `meterhub-admin device revoke` does. For good: use a fleet made for the run. Returns 0 or
 * -1 (logged). */
int sim_bad_revoke(const sim_bad_t *bad, const sim_fleet_t *fleet, const char *pg_uri);

/* NULL is a no-op. */
void sim_bad_free(sim_bad_t *bad);

#endif
