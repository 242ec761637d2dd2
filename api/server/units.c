/*
 * Resolutions and units. A counter stores a cumulative index (Wh, L, m3); its rates are
 * derived at read time from the increase between readings. A gauge stores the instantaneous
 * value (W, L/min); its buckets are means.
 */
#include "units.h"

#include <stdio.h>
#include <string.h>

static const char *const resolution_names[API_RES_COUNT] = {"raw",  "minute", "15min",
                                                            "hour", "day",    "month"};
static const long resolution_seconds[API_RES_COUNT] = {0, 60, 900, 3600, 86400, 31 * 86400};

int api_resolution_parse(const char *name)
{
    for (int i = 0; i < API_RES_COUNT; i++)
        if (strcmp(name, resolution_names[i]) == 0)
            return i;
    return -1;
}

const char *api_resolution_name(int res)
{
    return res >= 0 && res < API_RES_COUNT ? resolution_names[res] : "?";
}

long api_resolution_seconds(int res)
{
    return res >= 0 && res < API_RES_COUNT ? resolution_seconds[res] : 0;
}

/* Seconds in a year of 365 days, for the "per year" units. */
#define YEAR_S 31536000.0

static const api_unit_rule_t rules[] = {
    /* Electricity. */
    {"Wh", "counter", "Wh", API_VALUE_LAST, 1},
    {"Wh", "counter", "kWh", API_VALUE_LAST, 1e-3},
    {"Wh", "counter", "W", API_VALUE_RATE, 3600},
    {"Wh", "counter", "kWh/year", API_VALUE_RATE, YEAR_S / 1000},
    {"W", "gauge", "W", API_VALUE_MEAN, 1},
    {"W", "gauge", "kW", API_VALUE_MEAN, 1e-3},
    {"W", "gauge", "kWh/year", API_VALUE_MEAN, YEAR_S / 3600 / 1000},
    /* Water and gas, in litres or cubic metres. */
    {"L", "counter", "L", API_VALUE_LAST, 1},
    {"L", "counter", "m3", API_VALUE_LAST, 1e-3},
    {"L", "counter", "L/min", API_VALUE_RATE, 60},
    {"L", "counter", "L/day", API_VALUE_RATE, 86400},
    {"L", "counter", "m3/year", API_VALUE_RATE, YEAR_S / 1000},
    {"m3", "counter", "m3", API_VALUE_LAST, 1},
    {"m3", "counter", "L", API_VALUE_LAST, 1000},
    {"m3", "counter", "L/min", API_VALUE_RATE, 60000},
    {"m3", "counter", "L/day", API_VALUE_RATE, 86400000},
    {"m3", "counter", "m3/year", API_VALUE_RATE, YEAR_S},
    {"L/min", "gauge", "L/min", API_VALUE_MEAN, 1},
    {"L/min", "gauge", "L/day", API_VALUE_MEAN, 1440},
    {"L/min", "gauge", "m3/year", API_VALUE_MEAN, YEAR_S / 60 / 1000},
};

/* A sensor whose unit and type no rule names (a W counter, say) still reads as itself. */
static const api_unit_rule_t identity_counter = {NULL, "counter", NULL, API_VALUE_LAST, 1};
static const api_unit_rule_t identity_gauge = {NULL, "gauge", NULL, API_VALUE_MEAN, 1};

const api_unit_rule_t *api_unit_rule(const char *sensor_unit, const char *type, const char *unit)
{
    bool own = unit == NULL || unit[0] == '\0';
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
        if (strcmp(rules[i].sensor_unit, sensor_unit) == 0 && strcmp(rules[i].type, type) == 0 &&
            strcmp(rules[i].unit, own ? sensor_unit : unit) == 0)
            return &rules[i];
    if (own || strcmp(unit, sensor_unit) == 0)
        return strcmp(type, "counter") == 0 ? &identity_counter : &identity_gauge;
    return NULL;
}

void api_unit_list(const char *sensor_unit, const char *type, char *out, size_t outlen)
{
    size_t len = 0;
    int n = snprintf(out, outlen, "%s", sensor_unit);
    len = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]) && len < outlen; i++) {
        if (strcmp(rules[i].sensor_unit, sensor_unit) != 0 || strcmp(rules[i].type, type) != 0 ||
            strcmp(rules[i].unit, sensor_unit) == 0)
            continue;
        n = snprintf(out + len, outlen - len, ", %s", rules[i].unit);
        len += n > 0 ? (size_t)n : 0;
    }
}

const char *api_value_mode_name(api_value_mode_t mode)
{
    return mode == API_VALUE_RATE ? "rate" : mode == API_VALUE_MEAN ? "mean" : "last";
}

const char *api_flukso_unit(const char *name)
{
    static const char *const map[][2] = {{"watt", "W"},
                                         {"kwhperyear", "kWh/year"},
                                         {"lpermin", "L/min"},
                                         {"lperday", "L/day"},
                                         {"m3peryear", "m3/year"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(name, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}
