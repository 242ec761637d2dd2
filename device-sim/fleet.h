#ifndef SIM_FLEET_H
#define SIM_FLEET_H

/*
 * The simulated fleet: each device's id, sensor ids, certificate and private key, loaded once
 * and shared read-only by the worker threads (X509 and EVP_PKEY are reference counted and
 * safe to use from several threads once loaded; SSL_use_certificate takes its own reference).
 *
 * A fleet comes from disk (what `meterhub-admin device add --count N --out DIR` leaves: the
 * files DIR/<device id>/{device.key,device.crt} and, since the admin prints the ids on stdout,
 * its output lines saved to a file) or is provisioned by the simulator itself through
 * mh_prov_run, the same path as meterhub-admin.
 */

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>

#include "common/ids.h"

typedef struct sim_fleet_device {
    char id[MH_ID_LEN + 1];
    size_t nsensors;
    char (*sensor_ids)[MH_ID_LEN + 1];
    X509 *cert;
    EVP_PKEY *key;
} sim_fleet_device_t;

typedef struct sim_fleet {
    sim_fleet_device_t *devices;
    size_t count;
} sim_fleet_t;

/*
 * Loads the first `max` devices (0: all) listed in json_file, one JSON object per line with
 * "device" and "sensors" (meterhub-admin's output), with their files in dir/<device id>/ (or
 * directly in dir for a fleet of one). Returns an owned fleet or NULL (logged).
 */
sim_fleet_t *sim_fleet_load(const char *dir, const char *json_file, size_t max);

/*
 * Provisions count devices with nsensors sensors each for account, through mh_prov_run: keys
 * and certificates from the device CA in pki_dir, rows in the database at pg_uri. With out_dir
 * the files are written there (as meterhub-admin does) together with out_dir/fleet.json, so
 * the fleet can be loaded again; without, the keys live only in memory. Returns an owned fleet
 * or NULL (logged).
 */
sim_fleet_t *sim_fleet_provision(const char *pg_uri, const char *pki_dir, const char *account,
                                 size_t count, size_t nsensors, const char *out_dir);

/* NULL is a no-op. */
void sim_fleet_free(sim_fleet_t *fleet);

#endif
