/* device add | revoke | list */
#include "admin_internal.h"

#include "common/tool.h"
#include "common/log.h"
#include "common/provision.h"

#include <string.h>

/* Progress on stderr for fleets large enough to take a while. */
static void progress(const char *phase, size_t done, size_t total, void *arg)
{
    (void)arg;
    mh_log(MH_LOG_INFO, "%s: %zu/%zu devices", phase, done, total);
}

static json_t *device_json(const char *account, const mh_prov_device_t *d, const char *hardware)
{
    json_t *sensors = json_array();
    for (size_t s = 0; s < d->nsensors; s++)
        json_array_append_new(sensors, json_string(d->sensor_ids[s]));
    return json_pack("{s:s, s:s, s:o, s:s}", "account", account, "device", d->cred.id, "sensors",
                     sensors, "hardware", hardware);
}

int api_admin_device_add(const api_admin_ctx_t *ctx, const api_admin_args_t *args)
{
    int rc = -1;
    mh_device_ca_t *ca = NULL;
    PGconn *conn = NULL;
    mh_prov_batch_t *batch = NULL;
    mh_prov_timing_t t;
    mh_issue_opts_t opts;
    size_t count = (size_t)args->count;
    const char *out_dir = args->out_dir ? args->out_dir : ".";

    if (!mh_account_name_valid(args->account)) {
        mh_log(MH_LOG_ERROR, "account '%.80s': invalid name", args->account);
        goto fail;
    }
    mh_issue_opts_init(&opts);
    opts.days = (int)args->days;
    opts.not_before_days_ago = (int)args->not_before_days_ago;
    opts.hardware = args->hardware;

    ca = mh_device_ca_load(ctx->pki_dir);
    if (ca == NULL)
        goto fail;
    conn = api_admin_connect(ctx);
    if (conn == NULL)
        goto fail;
    batch = mh_prov_run(conn, ca, args->account, count, (size_t)args->sensors, &opts, out_dir,
                        count > MH_PROV_CHUNK ? progress : NULL, NULL, NULL, &t);
    if (batch == NULL)
        goto fail;
    for (size_t i = 0; i < batch->count; i++)
        if (mh_tool_print_json(
                device_json(args->account, &batch->devices[i],
                            args->hardware ? args->hardware : MH_HARDWARE_DEFAULT)) != 0)
            goto fail;
    if (count > 1)
        mh_log(MH_LOG_INFO,
               "provisioned %zu devices with %ld sensors each in %.2f s (keys and certificates "
               "%.2f s, files %.2f s, database %.2f s, rename %.2f s)",
               count, args->sensors, t.keys_s + t.files_s + t.db_s + t.publish_s, t.keys_s,
               t.files_s, t.db_s, t.publish_s);
    rc = 0;
fail:
    mh_prov_batch_free(batch);
    PQfinish(conn);
    mh_device_ca_free(ca);
    return rc;
}

int api_admin_device_revoke(const api_admin_ctx_t *ctx, const char *id)
{
    int rc = -1;
    PGconn *conn = NULL;
    bool found = false;

    conn = api_admin_connect(ctx);
    if (conn == NULL)
        goto fail;
    if (mh_prov_device_revoke(conn, id, &found) != 0)
        goto fail;
    if (!found) {
        mh_log(MH_LOG_ERROR, "device '%.80s': no such device", id);
        goto fail;
    }
    rc = mh_tool_print_json(json_pack("{s:s, s:s}", "device", id, "status", "revoked"));
fail:
    PQfinish(conn);
    return rc;
}

/* Column i of a row as a JSON string, or null when SQL NULL. */
static json_t *col_string(const PGresult *res, int col)
{
    if (PQgetisnull(res, 0, col))
        return json_null();
    return json_string(PQgetvalue(res, 0, col));
}

/* The sensor ids come joined by ',' (ids are hex, so the separator is unambiguous). */
static json_t *col_id_list(const PGresult *res, int col)
{
    json_t *list = json_array();
    if (PQgetisnull(res, 0, col))
        return list;
    const char *p = PQgetvalue(res, 0, col);
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        json_array_append_new(list, json_stringn(p, len));
        p += len;
        if (*p == ',')
            p++;
    }
    return list;
}

static json_t *col_bool(const PGresult *res, int col)
{
    if (PQgetisnull(res, 0, col))
        return json_null();
    return json_boolean(PQgetvalue(res, 0, col)[0] == 't');
}

/* Timestamps as RFC 3339 UTC strings, e.g. 2025-01-31T12:00:00Z. */
static const char list_sql[] =
    "SELECT a.name, d.id,"
    " (SELECT string_agg(s.id, ',' ORDER BY s.sid) FROM sensors s WHERE s.device_did = d.did),"
    " d.status, encode(d.cert_fingerprint, 'hex'),"
    " to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " to_char(d.revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " to_char(d.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " d.firmware_version, d.remote_upgrade, d.hardware"
    " FROM devices d JOIN accounts a ON a.id = d.account_id"
    " WHERE $1::text IS NULL OR a.name = $1::text"
    " ORDER BY d.did";

static int print_device_row(const PGresult *res)
{
    json_t *o = json_object();
    json_object_set_new(o, "account", col_string(res, 0));
    json_object_set_new(o, "device", col_string(res, 1));
    json_object_set_new(o, "sensors", col_id_list(res, 2));
    json_object_set_new(o, "status", col_string(res, 3));
    json_object_set_new(o, "fingerprint", col_string(res, 4));
    json_object_set_new(o, "created_at", col_string(res, 5));
    json_object_set_new(o, "revoked_at", col_string(res, 6));
    json_object_set_new(o, "last_seen", col_string(res, 7));
    json_object_set_new(o, "firmware_version", col_string(res, 8));
    json_object_set_new(o, "remote_upgrade", col_bool(res, 9));
    json_object_set_new(o, "hardware", col_string(res, 10));
    return mh_tool_print_json(o);
}

static int account_exists(PGconn *conn, const char *account, bool *exists)
{
    const char *params[1] = {account};
    PGresult *res = PQexecParams(conn, "SELECT 1 FROM accounts WHERE name = $1", 1, NULL, params,
                                 NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mh_tool_log_pg(conn, res, "device list");
        goto fail;
    }
    *exists = PQntuples(res) > 0;
    rc = 0;
fail:
    PQclear(res);
    return rc;
}

int api_admin_device_list(const api_admin_ctx_t *ctx, const char *account)
{
    int rc = -1;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    const char *params[1] = {account};
    size_t rows = 0;
    bool failed = false;

    conn = api_admin_connect(ctx);
    if (conn == NULL)
        goto fail;
    /* Single-row mode: a fleet of any size streams through one row at a time. */
    if (PQsendQueryParams(conn, list_sql, 1, NULL, params, NULL, NULL, 0) != 1 ||
        PQsetSingleRowMode(conn) != 1) {
        mh_tool_log_pg(conn, NULL, "device list");
        goto fail;
    }
    /* Drain every result even after a failure, so the connection ends in a clean state. */
    while ((res = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE && !failed) {
            if (print_device_row(res) != 0)
                failed = true;
            rows++;
        } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK) {
            mh_tool_log_pg(conn, res, "device list");
            failed = true;
        }
        PQclear(res);
    }
    if (failed)
        goto fail;
    if (rows == 0 && account != NULL) {
        bool exists = false;
        if (account_exists(conn, account, &exists) != 0)
            goto fail;
        if (!exists) {
            mh_log(MH_LOG_ERROR, "account '%.80s': no such account", account);
            goto fail;
        }
    }
    rc = 0;
fail:
    PQfinish(conn);
    return rc;
}
