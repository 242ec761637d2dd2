#ifndef SIM_COUNTERS_H
#define SIM_COUNTERS_H

/*
 * Where a fleet's counters stand: the newest value the service stored for each counter sensor,
 * so that a fleet run again continues its meters (sim_profile_continue) instead of starting
 * them over from their seeded values, which ingest would refuse as decreasing counters.
 */

#include <stddef.h>

#include "device-sim/fleet.h"

/*
 * Reads the newest stored reading of every counter sensor of the first ndevices devices.
 * Fills *values (owned by the caller, free()) with ndevices * *stride doubles: the value of
 * sensor s of device d at [d * stride + s], NaN where nothing is stored. Returns 0, or -1
 * (logged). Main thread, before the workers start.
 */
int sim_counters_load(const char *pg_uri, const sim_fleet_t *fleet, size_t ndevices,
                      double **values, size_t *stride);

#endif
