/*
 * Run functions: what each request does on a database thread. Input was validated on the
 * loop; here are the token check, the account binding and the statements. Every statement
 * runs as meterhub_api under row-level security, so a mistake in a WHERE clause cannot reach
 * another account's rows.
 */
#include "api_internal.h"

#include "common/log.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *text_or_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null() : json_string(PQgetvalue(r, row, col));
}

static json_t *token_json(const PGresult *r, int row)
{
    /* Columns: id, name, scope, created_at, expires_at, revoked_at. */
    return json_pack("{s:I, s:s, s:s, s:o, s:o, s:o}", "id",
                     (json_int_t)strtoll(PQgetvalue(r, row, 0), NULL, 10), "name",
                     PQgetvalue(r, row, 1), "scope", PQgetvalue(r, row, 2), "created_at",
                     text_or_null(r, row, 3), "expires_at", text_or_null(r, row, 4), "revoked_at",
                     text_or_null(r, row, 5));
}

/*
 * As the token's account: one UPDATE ... RETURNING of at most one row, keyed by value, then
 * commit. Answers 204, or 404 with not_found when no row was the account's to change (another
 * account's and a missing one look the same). Returns true when a row changed.
 */
static bool run_update_one(api_job_t *job, PGconn *pg, const char *sql, const char *value,
                           const char *what, const char *not_found)
{
    if (api_db_begin_as(job, pg) < 0)
        return false;
    PGresult *r = api_db_exec(job, pg, sql, 1, &value, what);
    if (r == NULL)
        return false;
    int n = PQntuples(r);
    PQclear(r);
    if (api_db_commit(job, pg) != 0)
        return false;
    if (n == 0) {
        api_job_error(job, 404, "not_found", "%s", not_found);
        return false;
    }
    job->status = 204;
    return true;
}

void api_run_login(api_job_t *job, PGconn *pg)
{
    const char *password = json_string_value(json_object_get(job->in, "password"));
    const char *scope = json_string_value(json_object_get(job->in, "scope"));
    const char *name = json_string_value(json_object_get(job->in, "name"));
    char token[MH_TOKEN_MAX], ttl[24], account[24], spent[MH_PASSWORD_HASH_MAX];
    uint8_t hash[32];
    PGresult *r = NULL;
    int ok = 0;

    const char *login_values[1] = {job->username};
    r = PQexecParams(pg, "SELECT account_id, password_hash FROM api_login($1)", 1, NULL,
                     login_values, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        api_db_fail(job, pg, "login lookup");
        goto done;
    }
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 1)) {
        ok = mh_password_verify(password, PQgetvalue(r, 0, 1));
        if (ok < 0)
            mh_log(MH_LOG_ERROR, "api: account %s has a malformed password hash", job->username);
    } else {
        /* No such account, or no password: spend the same time, so that timing does not tell
         * which usernames exist. */
        mh_password_hash(password, spent, sizeof(spent));
        OPENSSL_cleanse(spent, sizeof(spent));
    }
    if (ok != 1) {
        job->login_failed = true;
        api_job_error(job, 401, "invalid_credentials", "wrong username or password");
        goto done;
    }
    snprintf(account, sizeof(account), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    r = NULL;
    job->login_ok = true;

    if (mh_token_new(token, sizeof(token)) != 0 || mh_token_hash(token, hash) != 0) {
        api_job_error(job, 500, "internal", "could not make a token");
        goto done;
    }
    snprintf(ttl, sizeof(ttl), "%lld", job->id);
    r = PQexec(pg, "BEGIN");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        api_db_fail(job, pg, "BEGIN");
        goto done;
    }
    PQclear(r);
    const char *bind_values[1] = {account};
    r = PQexecParams(pg, "SELECT set_config('meterhub.account', $1, true)", 1, NULL, bind_values,
                     NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        api_db_fail(job, pg, "binding the account");
        goto done;
    }
    PQclear(r);
    const char *values[5] = {account, name, scope, (const char *)hash, ttl};
    int lengths[5] = {0, 0, 0, sizeof(hash), 0};
    int formats[5] = {0, 0, 0, 1, 0};
    r = PQexecParams(pg,
                     "INSERT INTO api_tokens (account_id, name, scope, token_hash, expires_at)"
                     " VALUES ($1::bigint, $2, $3, $4::bytea,"
                     " now() + make_interval(secs => $5::bigint))"
                     " RETURNING id, name, scope, " ISO_UTC("created_at") ", " ISO_UTC(
                         "expires_at") ", NULL::text",
                     5, NULL, values, lengths, formats, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        api_db_fail(job, pg, "creating a token");
        goto done;
    }
    json_t *out = token_json(r, 0);
    json_object_del(out, "revoked_at");
    json_object_set_new(out, "token", json_string(token));
    if (api_db_commit(job, pg) != 0) {
        json_decref(out);
        goto done;
    }
    job->status = 201;
    job->out = out;
done:
    OPENSSL_cleanse(token, sizeof(token));
    PQclear(r);
}

void api_run_tokens_list(api_job_t *job, PGconn *pg)
{
    PGresult *r = NULL;
    if (api_db_begin_as(job, pg) < 0)
        return;
    r = PQexec(pg, "SELECT id, name, scope, " ISO_UTC("created_at") ", " ISO_UTC(
                       "expires_at") ", " ISO_UTC("revoked_at") " FROM api_tokens ORDER BY id");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        api_db_fail(job, pg, "listing tokens");
        return;
    }
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(list, token_json(r, i));
    PQclear(r);
    if (api_db_commit(job, pg) != 0) {
        json_decref(list);
        return;
    }
    job->status = 200;
    job->out = json_pack("{s:o}", "tokens", list);
}

void api_run_token_delete(api_job_t *job, PGconn *pg)
{
    char id[24];
    snprintf(id, sizeof(id), "%lld", job->id);
    /* Another account's token, one already revoked, or none: the same answer. */
    run_update_one(job, pg,
                   "UPDATE api_tokens SET revoked_at = now()"
                   " WHERE id = $1::bigint AND revoked_at IS NULL RETURNING id",
                   id, "revoking a token", "no such token");
}

void api_run_me(api_job_t *job, PGconn *pg)
{
    PGresult *r = NULL;
    if (api_db_begin_as(job, pg) < 0)
        return;
    r = PQexec(pg,
               "SELECT id, name, " ISO_UTC(
                   "created_at") ","
                                 " (SELECT count(*) FROM devices), (SELECT count(*) FROM sensors)"
                                 " FROM accounts");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        PQclear(r);
        api_db_fail(job, pg, "reading the account");
        return;
    }
    json_t *out = json_pack("{s:I, s:s, s:s, s:I, s:I}", "id",
                            (json_int_t)strtoll(PQgetvalue(r, 0, 0), NULL, 10), "name",
                            PQgetvalue(r, 0, 1), "created_at", PQgetvalue(r, 0, 2), "devices",
                            (json_int_t)strtoll(PQgetvalue(r, 0, 3), NULL, 10), "sensors",
                            (json_int_t)strtoll(PQgetvalue(r, 0, 4), NULL, 10));
    PQclear(r);
    if (api_db_commit(job, pg) != 0) {
        json_decref(out);
        return;
    }
    job->status = 200;
    job->out = out;
}

/*
 * DELETE /v1/me: erases the account. Its devices are revoked first, in a transaction of their
 * own, so that ingest refuses them within a directory refresh while the erase (years of
 * readings take a while) runs; api_erase_account() (deploy/sql/009_api_erase.sql) then
 * deletes every row of the account in one transaction. Should that fail, the devices stay
 * revoked and the owner can ask again.
 */
void api_run_erase(api_job_t *job, PGconn *pg)
{
    long long account = api_db_begin_as(job, pg);
    if (account < 0)
        return;
    PGresult *r = api_db_exec(job, pg,
                              "UPDATE devices SET status = 'revoked',"
                              " revoked_at = coalesce(revoked_at, now()) WHERE status <> 'revoked'",
                              0, NULL, "revoking the devices");
    if (r == NULL)
        return;
    PQclear(r);
    if (api_db_commit(job, pg) != 0 || api_db_bind(job, pg, account) != 0)
        return;
    /* Deleting millions of readings may outlast the pool's statement timeout; the erase holds
     * the writers back only for its last, short step. */
    r = api_db_exec(job, pg, "SET LOCAL statement_timeout = '10min'", 0, NULL, "erasing");
    if (r == NULL)
        return;
    PQclear(r);
    r = api_db_exec(job, pg, "SELECT api_erase_account()", 0, NULL, "erasing the account");
    if (r == NULL)
        return;
    PQclear(r);
    if (api_db_commit(job, pg) != 0)
        return;
    mh_log(MH_LOG_INFO, "api: account %lld erased at its owner's request (%s)", account, job->peer);
    job->status = 204;
}

/*
 * POST /v1/accounts (self-registration; checked on the loop): hashes the password and creates
 * the account through api_register_account(), which refuses a taken name. The API role
 * cannot insert accounts itself.
 */
void api_run_register(api_job_t *job, PGconn *pg)
{
    const char *password = json_string_value(json_object_get(job->in, "password"));
    char hash[MH_PASSWORD_HASH_MAX];
    PGresult *r = NULL;

    job->address_used = true;
    if (mh_password_hash(password, hash, sizeof(hash)) != 0) {
        api_job_error(job, 500, "internal", "could not hash the password");
        goto done;
    }
    const char *values[2] = {job->username, hash};
    r = PQexecParams(pg, "SELECT id, name FROM api_register_account($1, $2)", 2, NULL, values, NULL,
                     NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        api_db_fail(job, pg, "creating an account");
        goto done;
    }
    if (PQntuples(r) != 1) {
        api_job_error(job, 409, "account_exists", "an account of that name exists");
        goto done;
    }
    job->out = json_pack("{s:I, s:s}", "id", (json_int_t)strtoll(PQgetvalue(r, 0, 0), NULL, 10),
                         "name", PQgetvalue(r, 0, 1));
    job->status = 201;
    mh_log(MH_LOG_INFO, "api: account %s registered itself (%s)", PQgetvalue(r, 0, 0), job->peer);
done:
    PQclear(r);
    OPENSSL_cleanse(hash, sizeof(hash));
}

/* ---- devices and sensors ---- */

#define DEVICE_COLUMNS                                                                             \
    "d.id, d.status, " ISO_UTC("d.created_at") ", " ISO_UTC("d.revoked_at") ", " ISO_UTC(          \
        "d.last_seen") ", d.firmware_version, d.remote_upgrade,"                                   \
                       " coalesce((SELECT json_agg(s.id ORDER BY s.sid) FROM sensors s"            \
                       " WHERE s.device_did = d.did), '[]'), d.name, d.location_lat,"              \
                       " d.location_lon, array_to_json(d.secret_names), d.hardware,"               \
                       " d.upgrade_consent"

/* Never d.secrets: the API role cannot read it (008_api_device_config.sql), only its names. */
static json_t *device_json(const PGresult *r, int row)
{
    json_error_t jerr;
    json_t *sensors = json_loads(PQgetvalue(r, row, 7), 0, &jerr);
    json_t *names = json_loads(PQgetvalue(r, row, 11), 0, &jerr);
    json_t *ru =
        PQgetisnull(r, row, 6) ? json_null() : json_boolean(PQgetvalue(r, row, 6)[0] == 't');
    json_t *location = PQgetisnull(r, row, 9)
                           ? json_null()
                           : json_pack("{s:f, s:f}", "lat", strtod(PQgetvalue(r, row, 9), NULL),
                                       "lon", strtod(PQgetvalue(r, row, 10), NULL));
    return json_pack("{s:s, s:o, s:s, s:o, s:o, s:o, s:s, s:o, s:o, s:s, s:o, s:o, s:o}", "id",
                     PQgetvalue(r, row, 0), "name", text_or_null(r, row, 8), "status",
                     PQgetvalue(r, row, 1), "created_at", text_or_null(r, row, 2), "revoked_at",
                     text_or_null(r, row, 3), "last_seen", text_or_null(r, row, 4), "hardware",
                     PQgetvalue(r, row, 12), "firmware_version", text_or_null(r, row, 5),
                     "remote_upgrade", ru, "upgrade_consent", PQgetvalue(r, row, 13), "location",
                     location, "secret_names", names ? names : json_array(), "sensors",
                     sensors ? sensors : json_array());
}

#define SENSOR_COLUMNS "s.id, d.id, s.kind, s.type, s.unit, " ISO_UTC("s.created_at") ", s.name"

static json_t *sensor_json(const PGresult *r, int row)
{
    return json_pack("{s:s, s:o, s:s, s:s, s:s, s:s, s:o}", "id", PQgetvalue(r, row, 0), "name",
                     text_or_null(r, row, 6), "device", PQgetvalue(r, row, 1), "kind",
                     PQgetvalue(r, row, 2), "type", PQgetvalue(r, row, 3), "unit",
                     PQgetvalue(r, row, 4), "created_at", text_or_null(r, row, 5));
}

/*
 * Runs a read of rows as the token's account: all of them (job->path_id empty) into
 * {"<list_key>": [...]}, or the one with that id into a bare object, 404 when none. Row-level
 * security decides what "all" means; the id is compared as text, so a malformed one is
 * simply not found.
 */
static void run_read(api_job_t *job, PGconn *pg, const char *sql_all, const char *sql_one,
                     const char *list_key, json_t *(*row_json)(const PGresult *, int),
                     const char *what)
{
    PGresult *r = NULL;
    if (api_db_begin_as(job, pg) < 0)
        return;
    if (job->path_id[0] == '\0') {
        r = PQexec(pg, sql_all);
    } else {
        const char *values[1] = {job->path_id};
        r = PQexecParams(pg, sql_one, 1, NULL, values, NULL, NULL, 0);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        api_db_fail(job, pg, what);
        return;
    }
    json_t *out;
    if (job->path_id[0] == '\0') {
        json_t *list = json_array();
        for (int i = 0; i < PQntuples(r); i++)
            json_array_append_new(list, row_json(r, i));
        out = json_pack("{s:o}", list_key, list);
    } else {
        out = PQntuples(r) == 1 ? row_json(r, 0) : NULL;
    }
    PQclear(r);
    if (api_db_commit(job, pg) != 0) {
        json_decref(out);
        return;
    }
    if (out == NULL) {
        /* Another account's, or none: the same answer, so existence does not leak. */
        api_job_error(job, 404, "not_found", "no such %s",
                      list_key[0] == 'd' ? "device" : "sensor");
        return;
    }
    job->status = 200;
    job->out = out;
}

#define DEVICE_ONE_SQL "SELECT " DEVICE_COLUMNS " FROM devices d WHERE d.id = $1"
#define SENSOR_ONE_SQL                                                                             \
    "SELECT " SENSOR_COLUMNS " FROM sensors s JOIN devices d ON d.did = s.device_did"              \
    " WHERE s.id = $1"

void api_run_devices_read(api_job_t *job, PGconn *pg)
{
    job->dump_flags = API_DEVICE_DUMP_FLAGS;
    run_read(job, pg, "SELECT " DEVICE_COLUMNS " FROM devices d ORDER BY d.did", DEVICE_ONE_SQL,
             "devices", device_json, "reading devices");
}

void api_run_sensors_read(api_job_t *job, PGconn *pg)
{
    run_read(job, pg,
             "SELECT " SENSOR_COLUMNS " FROM sensors s JOIN devices d ON d.did = s.device_did"
             " ORDER BY s.sid",
             SENSOR_ONE_SQL, "sensors", sensor_json, "reading sensors");
}

/* One row of sql ($1 = id) as JSON; see api_device_read_one. */
static int read_one(api_job_t *job, PGconn *pg, const char *sql, const char *id,
                    json_t *(*row_json)(const PGresult *, int), json_t **out, const char *what)
{
    const char *values[1] = {id};
    PGresult *r = api_db_exec(job, pg, sql, 1, values, what);
    if (r == NULL)
        return -1;
    *out = PQntuples(r) == 1 ? row_json(r, 0) : NULL;
    PQclear(r);
    return *out != NULL ? 1 : 0;
}

int api_device_read_one(api_job_t *job, PGconn *pg, const char *id, json_t **out)
{
    return read_one(job, pg, DEVICE_ONE_SQL, id, device_json, out, "reading a device");
}

int api_sensor_read_one(api_job_t *job, PGconn *pg, const char *id, json_t **out)
{
    return read_one(job, pg, SENSOR_ONE_SQL, id, sensor_json, out, "reading a sensor");
}

void api_run_device_revoke(api_job_t *job, PGconn *pg)
{
    /* Revoking twice is fine (204 both times); only a device not ours is 404. */
    if (run_update_one(job, pg,
                       "UPDATE devices SET status = 'revoked',"
                       " revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING id",
                       job->path_id, "revoking a device", "no such device"))
        mh_log(MH_LOG_INFO, "api: device %s revoked by its owner", job->path_id);
}

/* ---- sharing and audit ---- */

/* The sharing settings of sensor $1 as one JSON object (text), or no row when the bound
 * account has no such sensor. */
static const char sharing_sql[] =
    "SELECT json_build_object('sensor', s.id,"
    " 'visibility', coalesce(sh.visibility, 'private'),"
    " 'grants', coalesce((SELECT json_agg(json_build_object('account',"
    " api_account_name(g.grantee_id), 'resolution', g.resolution) ORDER BY g.grantee_id)"
    " FROM sensor_grants g WHERE g.sensor_sid = s.sid), '[]'),"
    " 'public_resolution', coalesce(sh.public_resolution, 'day'),"
    " 'public_delay_hours', coalesce(sh.public_delay_hours, 24))::text, s.sid"
    " FROM sensors s LEFT JOIN sensor_sharing sh ON sh.sensor_sid = s.sid WHERE s.id = $1";

/* Reads the settings into *text (malloc'd) and *sid. Returns 1, 0 when not found, -1 after
 * api_db_fail. */
static int sharing_read(api_job_t *job, PGconn *pg, char **text, char *sid, size_t sidlen)
{
    const char *values[1] = {job->path_id};
    PGresult *r = PQexecParams(pg, sharing_sql, 1, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        api_db_fail(job, pg, "reading sharing");
        return -1;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        return 0;
    }
    *text = strdup(PQgetvalue(r, 0, 0));
    snprintf(sid, sidlen, "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    return *text != NULL ? 1 : -1;
}

static void answer_json_text(api_job_t *job, const char *text)
{
    json_error_t jerr;
    job->out = json_loads(text, 0, &jerr);
    job->status = job->out != NULL ? 200 : 500;
    if (job->out == NULL)
        api_job_error(job, 500, "internal", "unexpected answer from the database");
}

void api_run_sharing_get(api_job_t *job, PGconn *pg)
{
    char *text = NULL, sid[24];
    if (api_db_begin_as(job, pg) < 0)
        return;
    int found = sharing_read(job, pg, &text, sid, sizeof(sid));
    if (found < 0)
        return;
    if (api_db_commit(job, pg) != 0) {
        free(text);
        return;
    }
    if (found == 0) {
        api_job_error(job, 404, "not_found", "no such sensor");
        return;
    }
    answer_json_text(job, text);
    free(text);
}

/* Runs one statement of the sharing change; false after api_db_fail. */
static bool step(api_job_t *job, PGconn *pg, const char *sql, int n, const char *const *values,
                 PGresult **out)
{
    PGresult *r = api_db_exec(job, pg, sql, n, values, "changing sharing");
    if (r == NULL)
        return false;
    if (out != NULL)
        *out = r;
    else
        PQclear(r);
    return true;
}

void api_run_sharing_put(api_job_t *job, PGconn *pg)
{
    char *before = NULL, *after = NULL, *grants = NULL, sid[24], acc[24], delay[16];
    PGresult *r = NULL;
    long long account = api_db_begin_as(job, pg);
    if (account < 0)
        return;
    int found = sharing_read(job, pg, &before, sid, sizeof(sid));
    if (found <= 0) {
        if (found == 0) {
            api_db_commit(job, pg);
            api_job_error(job, 404, "not_found", "no such sensor");
        }
        return;
    }
    snprintf(acc, sizeof(acc), "%lld", account);
    snprintf(delay, sizeof(delay), "%lld",
             json_integer_value(json_object_get(job->in, "public_delay_hours")));
    grants = json_dumps(json_object_get(job->in, "grants"), JSON_COMPACT);
    const char *visibility = json_string_value(json_object_get(job->in, "visibility"));
    const char *pubres = json_string_value(json_object_get(job->in, "public_resolution"));

    /* Every grantee must be another existing account. */
    const char *check[2] = {grants, acc};
    if (!step(job, pg,
              "SELECT x.account FROM json_to_recordset($1::json) AS x (account text)"
              " WHERE api_account_id(x.account) IS NULL OR api_account_id(x.account) = $2::bigint"
              " LIMIT 1",
              2, check, &r))
        goto done;
    if (PQntuples(r) == 1) {
        char name[80];
        snprintf(name, sizeof(name), "%.64s", PQgetvalue(r, 0, 0));
        PQclear(r);
        r = NULL;
        PGresult *rb = PQexec(pg, "ROLLBACK");
        PQclear(rb);
        api_job_error(job, 400, "invalid_request",
                      "grants: '%s' is not another account (no such account, or yourself)", name);
        goto done;
    }
    PQclear(r);
    r = NULL;
    const char *upsert[5] = {sid, acc, visibility, pubres, delay};
    const char *del[1] = {sid};
    const char *ins[3] = {sid, acc, grants};
    if (!step(job, pg,
              "INSERT INTO sensor_sharing AS o (sensor_sid, account_id, visibility,"
              " public_resolution, public_delay_hours) VALUES ($1, $2, $3, $4, $5)"
              " ON CONFLICT (sensor_sid) DO UPDATE SET visibility = excluded.visibility,"
              " public_resolution = excluded.public_resolution,"
              " public_delay_hours = excluded.public_delay_hours, updated_at = now()",
              5, upsert, NULL) ||
        !step(job, pg, "DELETE FROM sensor_grants WHERE sensor_sid = $1", 1, del, NULL) ||
        !step(job, pg,
              "INSERT INTO sensor_grants (sensor_sid, account_id, grantee_id, resolution)"
              " SELECT $1, $2, api_account_id(x.account), x.resolution"
              " FROM json_to_recordset($3::json) AS x (account text, resolution text)",
              3, ins, NULL))
        goto done;
    if (sharing_read(job, pg, &after, sid, sizeof(sid)) <= 0)
        goto done;
    const char *audit[4] = {acc, job->path_id, before, after};
    if (!step(job, pg,
              "INSERT INTO audit_log (account_id, actor_id, kind, sensor_id, detail)"
              " VALUES ($1, $1, 'sharing_changed', $2,"
              " jsonb_build_object('before', $3::jsonb, 'after', $4::jsonb))",
              4, audit, NULL))
        goto done;
    if (api_db_commit(job, pg) != 0)
        goto done;
    mh_log(MH_LOG_INFO, "api: sharing of sensor %s changed by its owner", job->path_id);
    answer_json_text(job, after);
done:
    free(before);
    free(after);
    free(grants);
}

/* The newest 1000 entries of the trail: sharing changes, firmware consent, approvals, offers
 * and outcomes, and reads by anyone else counted per sensor, reader and day (their time is the
 * day's latest read). Its timestamps, as ISO 8601 text: */
#define AUDIT_AT ISO_UTC("a.at")
#define AUDIT_LAST_AT ISO_UTC("f.last_at")
#define AUDIT_FIRST_AT ISO_UTC("f.first_at")

static const char audit_sql[] =
    "SELECT coalesce(json_agg(x.e ORDER BY x.at DESC, x.id DESC), '[]')::text FROM ("
    " SELECT * FROM ("
    "  (SELECT a.at, a.id, CASE WHEN a.device_id IS NULL"
    "   THEN json_build_object('id', a.id, 'at', " AUDIT_AT ","
    "   'actor', api_account_name(a.actor_id), 'kind', a.kind, 'sensor', a.sensor_id,"
    "   'detail', a.detail)"
    /* Firmware entries (010_upgrade.sql) name a device instead of a sensor. */
    "   ELSE json_build_object('id', a.id, 'at', " AUDIT_AT ","
    "   'actor', api_account_name(a.actor_id), 'kind', a.kind, 'device', a.device_id,"
    "   'detail', a.detail) END AS e FROM audit_log a ORDER BY a.id DESC LIMIT 1000)"
    "  UNION ALL"
    "  (SELECT f.last_at, 0, json_build_object('at', " AUDIT_LAST_AT ","
    "   'actor', CASE WHEN f.reader_id = 0 THEN NULL ELSE api_account_name(f.reader_id) END,"
    "   'kind', 'foreign_read', 'sensor', f.sensor_id, 'detail', json_build_object("
    "   'reader', CASE WHEN f.reader_id = 0 THEN 'public' ELSE 'account' END,"
    "   'day', f.day, 'reads', f.reads, 'points', f.points,"
    "   'first_at', " AUDIT_FIRST_AT ")) FROM foreign_reads f"
    "   ORDER BY f.last_at DESC LIMIT 1000)"
    " ) u ORDER BY u.at DESC, u.id DESC LIMIT 1000) x";

void api_run_audit(api_job_t *job, PGconn *pg)
{
    PGresult *r = NULL;
    if (api_db_begin_as(job, pg) < 0)
        return;
    r = PQexec(pg, audit_sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        PQclear(r);
        api_db_fail(job, pg, "reading the audit trail");
        return;
    }
    char *text = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (text == NULL || api_db_commit(job, pg) != 0) {
        free(text);
        return;
    }
    json_error_t jerr;
    json_t *entries = json_loads(text, 0, &jerr);
    free(text);
    job->out = json_pack("{s:o}", "entries", entries ? entries : json_array());
    job->status = 200;
}
