#include "device-sim/verify.h"

#include "common/alloc.h"
#include "common/log.h"
#include "common/pg.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* COPY data is sent in chunks of about this size. */
#define SIM_COPY_CHUNK 65536
#define SIM_VERIFY_POLL_MS 250

typedef struct copy_buf {
    PGconn *conn;
    char data[SIM_COPY_CHUNK + 128];
    size_t len;
    int failed;
} copy_buf_t;

static void copy_flush(copy_buf_t *c)
{
    if (c->len == 0 || c->failed)
        return;
    if (PQputCopyData(c->conn, c->data, (int)c->len) != 1) {
        mh_log(MH_LOG_ERROR, "verify: COPY: %s", PQerrorMessage(c->conn));
        c->failed = 1;
    }
    c->len = 0;
}

static void copy_line(copy_buf_t *c, const char *id, int64_t ts, double value)
{
    /* %.17g: the text parses back to the very same float8. */
    int n = snprintf(c->data + c->len, sizeof(c->data) - c->len, "%s\t%" PRId64 "\t%.17g\n", id, ts,
                     value);
    if (n > 0)
        c->len += (size_t)n;
    if (c->len >= SIM_COPY_CHUNK)
        copy_flush(c);
}

static int copy_end(copy_buf_t *c)
{
    copy_flush(c);
    if (PQputCopyEnd(c->conn, c->failed ? "client error" : NULL) != 1) {
        mh_log(MH_LOG_ERROR, "verify: COPY end: %s", PQerrorMessage(c->conn));
        return -1;
    }
    int rc = c->failed ? -1 : 0;
    PGresult *res;
    while ((res = PQgetResult(c->conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            mh_log(MH_LOG_ERROR, "verify: COPY: %s", PQresultErrorMessage(res));
            rc = -1;
        }
        PQclear(res);
    }
    return rc;
}

static int copy_begin(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    int ok = PQresultStatus(res) == PGRES_COPY_IN;
    if (!ok)
        mh_log(MH_LOG_ERROR, "verify: %s", PQresultErrorMessage(res));
    PQclear(res);
    return ok ? 0 : -1;
}

static int copy_log(PGconn *conn, const char *table, const sim_fleet_t *fleet,
                    const sim_ack_log_t *const *logs, size_t nlogs)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "COPY %s (sensor, ts, value) FROM STDIN", table);
    if (copy_begin(conn, sql) != 0)
        return -1;
    copy_buf_t *c = mh_calloc(1, sizeof(*c));
    c->conn = conn;
    for (size_t l = 0; l < nlogs; l++)
        for (size_t i = 0; i < logs[l]->n; i++) {
            const sim_ack_t *a = &logs[l]->v[i];
            copy_line(c, fleet->devices[a->device].sensor_ids[a->sensor], a->ts, a->value);
        }
    int rc = copy_end(c);
    free(c);
    return rc;
}

static int copy_sensors(PGconn *conn, const sim_fleet_t *fleet, size_t ndevices,
                        const uint8_t *exclude)
{
    if (copy_begin(conn, "COPY sim_sensor (id) FROM STDIN") != 0)
        return -1;
    copy_buf_t *c = mh_calloc(1, sizeof(*c));
    c->conn = conn;
    for (size_t d = 0; d < ndevices; d++)
        for (size_t s = 0; s < fleet->devices[d].nsensors && !(exclude && exclude[d]); s++) {
            memcpy(c->data + c->len, fleet->devices[d].sensor_ids[s], MH_ID_LEN);
            c->len += MH_ID_LEN;
            c->data[c->len++] = '\n';
            if (c->len >= SIM_COPY_CHUNK)
                copy_flush(c);
        }
    int rc = copy_end(c);
    free(c);
    return rc;
}

/* Runs a query returning one row of integers into v[0..n). */
static int query_counts(PGconn *conn, const char *sql, uint64_t *v, int n)
{
    PGresult *res = PQexec(conn, sql);
    int rc = -1;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != n) {
        mh_log(MH_LOG_ERROR, "verify: %s", PQresultErrorMessage(res));
        goto out;
    }
    for (int i = 0; i < n; i++)
        v[i] = strtoull(PQgetvalue(res, 0, i), NULL, 10);
    rc = 0;
out:
    PQclear(res);
    return rc;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int sim_verify_run(const char *pg_uri, const sim_fleet_t *fleet, size_t ndevices,
                   const uint8_t *exclude, int64_t from_ts, int64_t to_ts,
                   const sim_ack_log_t *const *acked, const sim_ack_log_t *const *unanswered,
                   size_t nlogs, unsigned timeout_s, sim_verify_result_t *out)
{
    PGconn *conn = NULL;
    char sql[2048];
    uint64_t v[2];
    double t0 = mono_s();

    memset(out, 0, sizeof(*out));
    out->state = SIM_VERIFY_ERROR;
    for (size_t l = 0; l < nlogs; l++)
        out->acked += acked[l]->n;
    conn = mh_pg_connect(pg_uri, "meterhub-sim-verify");
    if (conn == NULL)
        goto fail;
    if (mh_pg_exec(conn, "CREATE TEMP TABLE sim_sensor (id text PRIMARY KEY);"
                         "CREATE TEMP TABLE sim_acked (sensor text, ts bigint, value float8);"
                         "CREATE TEMP TABLE sim_unanswered (sensor text, ts bigint, value "
                         "float8)") != 0)
        goto fail;
    if (copy_sensors(conn, fleet, ndevices, exclude) != 0 ||
        copy_log(conn, "sim_acked", fleet, acked, nlogs) != 0 ||
        copy_log(conn, "sim_unanswered", fleet, unanswered, nlogs) != 0)
        goto fail;
    /* Everything in terms of readings' own columns, so the comparisons are exact. */
    if (mh_pg_exec(conn,
                   "CREATE TEMP TABLE sim_sid AS SELECT s.sid, s.id FROM sensors s "
                   "JOIN sim_sensor USING (id);"
                   "CREATE TEMP TABLE sim_expect AS SELECT d.sid AS sensor, to_timestamp(a.ts) "
                   "AS ts, a.value FROM sim_acked a JOIN sim_sid d ON d.id = a.sensor;"
                   "CREATE TEMP TABLE sim_maybe AS SELECT DISTINCT d.sid AS sensor, "
                   "to_timestamp(u.ts) AS ts, u.value FROM sim_unanswered u "
                   "JOIN sim_sid d ON d.id = u.sensor;"
                   "ANALYZE sim_sid; ANALYZE sim_expect; ANALYZE sim_maybe") != 0)
        goto fail;
    if (query_counts(conn,
                     "SELECT (SELECT count(*) FROM sim_sensor) - (SELECT count(*) FROM sim_sid), "
                     "(SELECT count(*) FROM sim_acked) - (SELECT count(*) FROM sim_expect)",
                     v, 2) != 0)
        goto fail;
    if (v[0] != 0 || v[1] != 0) {
        mh_log(MH_LOG_ERROR, "verify: %" PRIu64 " of the fleet's sensors are not in the database",
               v[0]);
        goto fail;
    }

    /* Acknowledged but not (yet) stored, as a multiset: a reading acknowledged twice would
     * be missing once. Polled until the writer has caught up, or the bound. */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM (SELECT sensor, ts, value FROM sim_expect "
             "EXCEPT ALL SELECT r.sensor, r.ts, r.value FROM readings r "
             "JOIN sim_sid d ON d.sid = r.sensor WHERE r.ts BETWEEN to_timestamp(%" PRId64 ") "
             "AND to_timestamp(%" PRId64 ")) m",
             from_ts, to_ts);
    for (;;) {
        if (query_counts(conn, sql, &out->missing, 1) != 0)
            goto fail;
        out->wait_s = mono_s() - t0;
        if (out->missing == 0 || out->wait_s >= timeout_s)
            break;
        usleep(SIM_VERIFY_POLL_MS * 1000);
    }

    /* Stored for the fleet's sensors since the run's first timestamp, never acknowledged. */
    snprintf(sql, sizeof(sql),
             "CREATE TEMP TABLE sim_extra AS SELECT r.sensor, r.ts, r.value FROM readings r "
             "JOIN sim_sid d ON d.sid = r.sensor WHERE r.ts BETWEEN to_timestamp(%" PRId64 ") "
             "AND to_timestamp(%" PRId64 ") EXCEPT ALL SELECT sensor, ts, value FROM sim_expect",
             from_ts, to_ts);
    if (mh_pg_exec(conn, sql) != 0)
        goto fail;
    if (query_counts(conn,
                     "SELECT count(*) FILTER (WHERE m.sensor IS NULL), "
                     "count(*) FILTER (WHERE m.sensor IS NOT NULL) FROM sim_extra x "
                     "LEFT JOIN sim_maybe m ON m.sensor = x.sensor AND m.ts = x.ts "
                     "AND m.value = x.value",
                     v, 2) != 0)
        goto fail;
    out->extra = v[0];
    out->unanswered_stored = v[1];
    out->state = out->missing == 0 && out->extra == 0 ? SIM_VERIFY_PASSED : SIM_VERIFY_FAILED;
    PQfinish(conn);
    return 0;
fail:
    out->wait_s = mono_s() - t0;
    PQfinish(conn);
    return -1;
}
