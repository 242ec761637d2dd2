#include "device-sim/counters.h"

#include "common/alloc.h"
#include "common/log.h"
#include "common/pg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct sensor_slot {
    const char *id;
    size_t index; /* into the values array */
} sensor_slot_t;

static int cmp_slot(const void *a, const void *b)
{
    return strcmp(((const sensor_slot_t *)a)->id, ((const sensor_slot_t *)b)->id);
}

int sim_counters_load(const char *pg_uri, const sim_fleet_t *fleet, size_t ndevices,
                      double **values, size_t *stride)
{
    PGconn *conn = NULL;
    PGresult *res = NULL;
    sensor_slot_t *slots = NULL;
    char *ids = NULL;
    double *out = NULL;
    size_t n = 0, width = 1;
    int rc = -1;

    for (size_t d = 0; d < ndevices; d++)
        if (fleet->devices[d].nsensors > width)
            width = fleet->devices[d].nsensors;
    out = mh_malloc(ndevices * width * sizeof(*out));
    for (size_t i = 0; i < ndevices * width; i++)
        out[i] = NAN;

    /* One text[] parameter "{id,id,...}" and a sorted index to map rows back. */
    slots = mh_malloc(ndevices * width * sizeof(*slots));
    ids = mh_malloc(ndevices * width * (MH_ID_LEN + 1) + 3);
    char *p = ids;
    *p++ = '{';
    for (size_t d = 0; d < ndevices; d++) {
        const sim_fleet_device_t *dev = &fleet->devices[d];
        for (size_t s = 0; s < dev->nsensors; s++) {
            if (n > 0)
                *p++ = ',';
            memcpy(p, dev->sensor_ids[s], MH_ID_LEN);
            p += MH_ID_LEN;
            slots[n].id = dev->sensor_ids[s];
            slots[n].index = d * width + s;
            n++;
        }
    }
    *p++ = '}';
    *p = '\0';
    qsort(slots, n, sizeof(*slots), cmp_slot);

    conn = mh_pg_connect(pg_uri, "meterhub-sim");
    if (conn == NULL)
        goto fail;
    const char *params[1] = {ids};
    res = PQexecParams(conn,
                       "SELECT s.id, r.value FROM sensors s CROSS JOIN LATERAL ("
                       " SELECT value FROM readings WHERE sensor = s.sid"
                       " ORDER BY ts DESC LIMIT 1) r"
                       " WHERE s.id = ANY($1::text[]) AND s.type = 'counter'",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mh_log(MH_LOG_ERROR, "counters: %s", PQerrorMessage(conn));
        goto fail;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        sensor_slot_t key = {.id = PQgetvalue(res, row, 0)};
        sensor_slot_t *hit = bsearch(&key, slots, n, sizeof(*slots), cmp_slot);
        if (hit != NULL)
            out[hit->index] = strtod(PQgetvalue(res, row, 1), NULL);
    }
    *values = out;
    *stride = width;
    out = NULL;
    rc = 0;
fail:
    PQclear(res);
    if (conn != NULL)
        PQfinish(conn);
    free(out);
    free(slots);
    free(ids);
    return rc;
}
