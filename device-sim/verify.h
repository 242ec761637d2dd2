#ifndef SIM_VERIFY_H
#define SIM_VERIFY_H

/*
 * --verify: the no-loss proof. After a run, every reading the simulator got a 2xx for must be
 * stored exactly once with exactly its value, and nothing else may be stored for the
 * simulated sensors between the run's first and last timestamps (readings sent without a definite
 * answer, e.g. a timeout, may be stored or not: they are counted apart).
 *
 * It is checked as sets, not counts: the acknowledged (sensor id, ts, value) are copied
 * (COPY) into a temporary table and compared with `readings` in both directions with
 * EXCEPT ALL, joined through sensors.id -> sensors.sid and readings.ts = to_timestamp(ts),
 * values compared as float8. The writer stores asynchronously, so the check first waits
 * (bounded) until nothing acknowledged is missing.
 *
 * Main thread, after every worker has been joined.
 */

#include <stddef.h>
#include <stdint.h>

#include "device-sim/sim_internal.h"
#include "device-sim/stats.h"

/*
 * Runs the check on the database at pg_uri (an admin URI that reads every table) for the
 * first ndevices of fleet but those with exclude[d] != 0 (exclude may be NULL), over the readings
 * with timestamps in [from_ts, to_ts] (the run's window: readings of an earlier run of the same
 * fleet outside it are not this run's). acked and unanswered are arrays of nlogs logs each (one per
 * worker). Waits at most timeout_s for the writer. Fills *out; its state is SIM_VERIFY_PASSED,
 * SIM_VERIFY_FAILED or SIM_VERIFY_ERROR (logged). Returns 0 when the check could run, -1 otherwise.
 */
int sim_verify_run(const char *pg_uri, const sim_fleet_t *fleet, size_t ndevices,
                   const uint8_t *exclude, int64_t from_ts, int64_t to_ts,
                   const sim_ack_log_t *const *acked, const sim_ack_log_t *const *unanswered,
                   size_t nlogs, unsigned timeout_s, sim_verify_result_t *out);

#endif
