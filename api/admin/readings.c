/*
 * readings SENSOR-ID [--from T] [--to T]: CSV "ts,value", oldest first. Rows come through a
 * cursor FETCH_ROWS at a time in binary form, so a sensor with years of readings streams in
 * bounded memory and every double arrives exactly as stored.
 */
#include "admin_internal.h"

#include "common/tool.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/pg.h"

#include <endian.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FETCH_ROWS "10000"

void api_admin_format_double(double v, char *out, size_t outlen)
{
    /* For a normal double, %.15g gives the shortest form whenever that has at most 15 digits
     * (any 15-digit decimal survives the round trip, and %g drops trailing zeros); otherwise
     * the nearest 16-digit form reads back if any does; 17 digits always do. Subnormals have
     * fewer significant bits, so their shortest form is searched from 1 digit up. */
    int first = fpclassify(v) == FP_SUBNORMAL ? 1 : 15;
    for (int prec = first; prec < 17; prec++) {
        snprintf(out, outlen, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
    snprintf(out, outlen, "%.17g", v);
}

static uint64_t be64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return be64toh(v);
}

/* Prints the rows of one FETCH. Returns the row count, or -1 (logged). */
static int print_rows(const PGresult *res)
{
    int n = PQntuples(res);
    char value[40];
    for (int i = 0; i < n; i++) {
        if (PQgetlength(res, i, 0) != 8 || PQgetlength(res, i, 1) != 8) {
            mh_log(MH_LOG_ERROR, "readings: unexpected binary row from the server");
            return -1;
        }
        int64_t ts = (int64_t)be64(PQgetvalue(res, i, 0));
        uint64_t bits = be64(PQgetvalue(res, i, 1));
        double v;
        memcpy(&v, &bits, sizeof(v));
        api_admin_format_double(v, value, sizeof(value));
        if (printf("%" PRId64 ",%s\n", ts, value) < 0) {
            mh_log(MH_LOG_ERROR, "readings: cannot write the output");
            return -1;
        }
    }
    return n;
}

static int exec_cmd(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc != 0)
        mh_tool_log_pg(conn, res, what);
    PQclear(res);
    return rc;
}

int api_admin_readings(const api_admin_ctx_t *ctx, const api_admin_args_t *args)
{
    int rc = -1;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    char sid[24], from[24], to[24];
    bool in_tx = false;

    if (!mh_id_valid(args->id)) {
        mh_log(MH_LOG_ERROR, "sensor '%.80s': no such sensor", args->id);
        goto fail;
    }
    conn = api_admin_connect(ctx);
    if (conn == NULL)
        goto fail;

    const char *idparam[1] = {args->id};
    res = PQexecParams(conn, "SELECT sid FROM sensors WHERE id = $1", 1, NULL, idparam, NULL, NULL,
                       0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mh_tool_log_pg(conn, res, "readings: sensor");
        goto fail;
    }
    if (PQntuples(res) != 1) {
        mh_log(MH_LOG_ERROR, "sensor %s: no such sensor", args->id);
        goto fail;
    }
    snprintf(sid, sizeof(sid), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    res = NULL;

    snprintf(from, sizeof(from), "%" PRId64, args->from);
    snprintf(to, sizeof(to), "%" PRId64, args->to);
    const char *params[3] = {sid, args->has_from ? from : NULL, args->has_to ? to : NULL};

    if (exec_cmd(conn, "BEGIN READ ONLY", "readings: begin") != 0)
        goto fail;
    in_tx = true;
    res = PQexecParams(conn,
                       "DECLARE r NO SCROLL CURSOR FOR"
                       " SELECT floor(extract(epoch FROM ts))::int8, value FROM readings"
                       " WHERE sensor = $1::int8"
                       " AND ts >= coalesce(to_timestamp($2::float8), '-infinity')"
                       " AND ts <= coalesce(to_timestamp($3::float8), 'infinity')"
                       " ORDER BY ts",
                       3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        mh_tool_log_pg(conn, res, "readings: query");
        goto fail;
    }
    PQclear(res);
    res = NULL;

    if (printf("ts,value\n") < 0)
        goto fail;
    for (;;) {
        /* resultFormat 1: int8 and float8 in binary, no text round trip. */
        res = PQexecParams(conn, "FETCH " FETCH_ROWS " FROM r", 0, NULL, NULL, NULL, NULL, 1);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            mh_tool_log_pg(conn, res, "readings: fetch");
            goto fail;
        }
        int n = print_rows(res);
        if (n < 0)
            goto fail;
        PQclear(res);
        res = NULL;
        if (n == 0)
            break;
    }
    in_tx = false;
    if (exec_cmd(conn, "COMMIT", "readings: commit") != 0)
        goto fail;
    rc = 0;
fail:
    PQclear(res);
    if (in_tx && !mh_pg_conn_lost(conn))
        PQclear(PQexec(conn, "ROLLBACK"));
    PQfinish(conn);
    return rc;
}
