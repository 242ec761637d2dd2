#ifndef SIM_PROFILE_H
#define SIM_PROFILE_H

/*
 * Household consumption profiles: plausible and deterministic per (seed, device, sensor).
 * Electricity: a base load, a morning and an evening peak, appliance bursts; gas: heating in
 * the morning and evening, more in winter; water: short draws (showers, taps) mostly in the
 * morning and evening. Counters integrate the instantaneous rate, so they never decrease;
 * gauges report the instantaneous power. Occasional gaps (a reading a meter skips) are part
 * of the profile, so every run with the same seed yields the same series.
 * No allocation, no locking: a sim_profile_t belongs to one thread.
 */

#include <stdbool.h>
#include <stdint.h>

typedef enum sim_sensor_kind {
    SIM_ELECTRICITY_WH, /* counter, Wh */
    SIM_GAS_L,          /* counter, L */
    SIM_WATER_L,        /* counter, L */
    SIM_POWER_W,        /* gauge, W */
} sim_sensor_kind_t;

/* Sensor i of a device has kind i % 4, matching meterhub-admin's provisioning order. */
sim_sensor_kind_t sim_profile_kind(unsigned sensor_index);
bool sim_profile_is_counter(sim_sensor_kind_t kind);

typedef struct sim_profile {
    sim_sensor_kind_t kind;
    uint64_t rng;     /* per-sensor stream, derived from (seed, device, sensor) */
    uint64_t key;     /* household key, from (seed, device, sensor / 4): the consumption of
                         sensors 0..3 is one household's, so the power gauge is the rate
                         the electricity counter integrates */
    double household; /* scale factor of this household, ~0.5..2 */
    double counter;   /* running counter value */
    int64_t last_ts;  /* timestamp of the last reading generated; 0 before the first */
    double gap_prob;  /* probability that a reading is skipped */
} sim_profile_t;

/* Initialises the profile of sensor `sensor_index` of device `device_index` for a seed. */
void sim_profile_init(sim_profile_t *p, uint64_t seed, uint64_t device_index,
                      unsigned sensor_index);

/*
 * A counter whose meter already stands at `value` (what the service last stored for it, from
 * an earlier run of the same fleet) goes on from there instead of from its seeded start, as a
 * real meter's counter survives a reboot. No effect on gauges or when value is lower.
 */
void sim_profile_continue(sim_profile_t *p, double value);

/*
 * The reading at ts (seconds, UTC; strictly after the previous call's ts). Returns true and
 * sets *value, or false when the meter skips this reading (a gap); a counter still advances
 * through a gap so the next reading reflects the consumption in between.
 */
bool sim_profile_next(sim_profile_t *p, int64_t ts, double *value);

#endif
