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

#define ISO_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

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
    PGresult *r = NULL;
    if (api_db_begin_as(job, pg) < 0)
        return;
    snprintf(id, sizeof(id), "%lld", job->id);
    const char *values[1] = {id};
    r = PQexecParams(pg,
                     "UPDATE api_tokens SET revoked_at = now()"
                     " WHERE id = $1::bigint AND revoked_at IS NULL RETURNING id",
                     1, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        api_db_fail(job, pg, "revoking a token");
        return;
    }
    int n = PQntuples(r);
    PQclear(r);
    if (api_db_commit(job, pg) != 0)
        return;
    if (n == 0) {
        /* Another account's token, one already revoked, or none: the same answer. */
        api_job_error(job, 404, "not_found", "no such token");
        return;
    }
    job->status = 204;
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
