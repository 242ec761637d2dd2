#ifndef SIM_RAMP_H
#define SIM_RAMP_H

/*
 * The ramp scenario's controller: starts with --ramp-start devices, and every --ramp-every
 * seconds measures the step that ended (requests, errors, p50/p99 of what was answered during
 * it) and either ends the ramp (p99 over --ramp-p99-ms, errors over 1%, or the whole fleet
 * ran within bounds: the run's stop flag is raised) or switches on --ramp-step more devices.
 * The knee is the last step within bounds.
 *
 * Threading: main thread only. The workers see only run->rank (read-only) and run->active
 * (atomic), and switch devices on at their next tick.
 */

#include "device-sim/sim_internal.h"
#include "device-sim/stats.h"

typedef struct sim_ramp sim_ramp_t;

/* A ramp over run's devices, split among nthreads workers as main.c splits them (slice i is
 * [n * i / nthreads, n * (i + 1) / nthreads)). Sets run->rank (borrowed from the ramp, which
 * must outlive the workers) and run->active. Call before the workers are made. Owned. */
sim_ramp_t *sim_ramp_new(sim_run_t *run, unsigned nthreads);

/* Called often (every 50 ms) while the workers run: measures and moves to the next step when
 * one is over. Takes snapshots of the workers. */
void sim_ramp_poll(sim_ramp_t *r, sim_worker_t **workers, size_t nworkers);

/* The steps (borrowed from the ramp), the knee and how it ended, into report. */
void sim_ramp_report(const sim_ramp_t *r, sim_report_t *report);

/* NULL is a no-op. */
void sim_ramp_free(sim_ramp_t *r);

#endif
