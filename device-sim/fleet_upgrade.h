#ifndef SIM_FLEET_UPGRADE_H
#define SIM_FLEET_UPGRADE_H

/*
 * The fleet's firmware settings: which meters' own configuration allows remote upgrades (a
 * share of the fleet, fixed per device id so that a script can tell which), and which meters'
 * owners consented (the --expect-consent list: consent itself is set in meterhub-api; the
 * simulator only learns it to hold the service to it). Main thread, before the run.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device-sim/fleet.h"

/* Whether the meter with this id has remote upgrades on when a share `fraction` (0..1) of the
 * fleet has: the first 4 bytes of SHA-256("remote_upgrade:" id), big-endian, modulo 10000,
 * below round(fraction x 10000). Salted, so it is not the rollout bucket of the same id. */
bool sim_remote_upgrade_flag(const char *device_id, double fraction);

/*
 * Reads the device ids of path (one per line; blank lines and lines starting with # ignored;
 * each must be 32 lowercase hex digits) and marks the first ndevices of fleet listed in it:
 * *out (owned, free()) holds ndevices bytes, 1 for a listed device. *listed counts them; ids
 * not in the run are ignored (counted in *others). Returns 0, or -1 (logged) when the file
 * cannot be read or holds a line that is not an id.
 */
int sim_consent_load(const char *path, const sim_fleet_t *fleet, size_t ndevices, uint8_t **out,
                     size_t *listed, size_t *others);

#endif
