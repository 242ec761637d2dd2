#ifndef API_UNITS_H
#define API_UNITS_H

/*
 * Resolutions and units of reads: pure tables, no I/O, shared by the /v1 and the
 * Flukso-compatible reads. Every string returned is static.
 */

#include <stdbool.h>
#include <stddef.h>

/* Finest first: a resolution is allowed when it is not finer than the one granted. */
typedef enum api_resolution {
    API_RES_RAW,
    API_RES_MINUTE,
    API_RES_15MIN,
    API_RES_HOUR,
    API_RES_DAY,
    API_RES_MONTH,
    API_RES_COUNT
} api_resolution_t;

/* The resolution called name ("raw", "minute", "15min", "hour", "day", "month"), or -1. */
int api_resolution_parse(const char *name);
/* Its name; "?" when out of range. */
const char *api_resolution_name(int res);
/* Its bucket length in seconds (0 for raw; 31 days for a month, an upper bound). */
long api_resolution_seconds(int res);

/*
 * How a sensor's stored values become the values of a read:
 *   API_VALUE_LAST: the last reading of each bucket (a counter's index), times factor;
 *   API_VALUE_MEAN: the mean of the bucket (a gauge), times factor;
 *   API_VALUE_RATE: a counter's increase per second since the previous reading or bucket,
 *                   times factor (Wh per second times 3600 is W).
 */
typedef enum api_value_mode { API_VALUE_LAST, API_VALUE_MEAN, API_VALUE_RATE } api_value_mode_t;

typedef struct api_unit_rule {
    const char *sensor_unit; /* the stored unit: "Wh", "W", "L", "L/min", "m3" */
    const char *type;        /* "counter" or "gauge" */
    const char *unit;        /* the unit of the answer */
    api_value_mode_t mode;
    double factor;
} api_unit_rule_t;

/*
 * The rule for reading a sensor of sensor_unit and type in unit; an empty or NULL unit means
 * the sensor's own (its index for a counter, its value for a gauge). NULL when that unit
 * cannot be derived from this sensor.
 */
const api_unit_rule_t *api_unit_rule(const char *sensor_unit, const char *type, const char *unit);

/* Writes the units a sensor of sensor_unit and type can be read in, comma-separated, into
 * out (always terminated). */
void api_unit_list(const char *sensor_unit, const char *type, char *out, size_t outlen);

/* The value mode's name, as the SQL of a read takes it: "last", "mean" or "rate". */
const char *api_value_mode_name(api_value_mode_t mode);

/*
 * Flukso's unit names: "watt", "kwhperyear", "lpermin", "lperday", "m3peryear" map to W,
 * kWh/year, L/min, L/day, m3/year. NULL for any other.
 */
const char *api_flukso_unit(const char *name);

#endif
