/*
 * The public release log: GET /v1/firmware (a page of it) and GET /v1/firmware/{release}.
 * Anyone may read it, with no token: a meter's owner, or anyone else, can check what any meter
 * may be offered. A token, if sent, is not even looked at, so that it changes nothing. The
 * API role reads releases, release_keys and release_log, which hold no account data, with no
 * account bound (deploy/sql/011_api_upgrades.sql).
 */
#include "api_internal.h"

#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIRMWARE_LIMIT_DEFAULT 100
#define FIRMWARE_LIMIT_MAX 1000
/* Log sequence numbers are bigint, from 1. */
#define FIRMWARE_SEQ_MAX 999999999999999999LL

static json_int_t int_at(const PGresult *r, int row, int col)
{
    return (json_int_t)strtoll(PQgetvalue(r, row, col), NULL, 10);
}

json_t *api_release_json(const PGresult *r, int row, int col)
{
    /* The column order of API_RELEASE_COLUMNS, then the log entry's seq, prev and hash. */
    json_t *log = json_pack("{s:I, s:s, s:s}", "seq", int_at(r, row, col + 14), "prev",
                            PQgetvalue(r, row, col + 15), "hash", PQgetvalue(r, row, col + 16));
    return json_pack(
        "{s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:o}", "release",
        PQgetvalue(r, row, col), "version", PQgetvalue(r, row, col + 1), "hardware",
        PQgetvalue(r, row, col + 2), "size", int_at(r, row, col + 3), "image_sha256",
        PQgetvalue(r, row, col + 4), "manifest_sha256", PQgetvalue(r, row, col + 5), "manifest",
        PQgetvalue(r, row, col + 6), "signature", PQgetvalue(r, row, col + 7), "key_id",
        PQgetvalue(r, row, col + 8), "key_fingerprint", PQgetvalue(r, row, col + 9), "issued",
        int_at(r, row, col + 10), "expires", int_at(r, row, col + 11), "notes",
        PQgetvalue(r, row, col + 12), "published_at", PQgetvalue(r, row, col + 13), "log", log);
}

/*
 * The releases of the public log after seq $1, at most $2, by seq, each row with the log's head
 * (its newest entry) too. One statement, so one snapshot. No row when the log is empty; one
 * row without a release when nothing follows $1.
 */
static const char page_sql[] =
    "WITH head AS (SELECT seq, entry_hash FROM release_log ORDER BY seq DESC LIMIT 1)"
    " SELECT " API_RELEASE_COLUMNS ", l.seq, l.prev_hash, l.entry_hash, h.seq, h.entry_hash"
    " FROM head h LEFT JOIN (release_log l JOIN releases r ON r.id = l.release_id"
    "                        JOIN release_keys k ON k.key_id = r.key_id) ON l.seq > $1::bigint"
    " ORDER BY l.seq LIMIT $2::bigint";

static void run_firmware_list(api_job_t *job, PGconn *pg)
{
    char after[24], limit[24];
    snprintf(after, sizeof(after), "%lld", (long long)job->page.after);
    snprintf(limit, sizeof(limit), "%ld", job->page.limit);
    const char *values[2] = {after, limit};

    if (api_db_begin_as(job, pg) < 0)
        return;
    PGresult *r = api_db_exec(job, pg, page_sql, 2, values, "reading the release log");
    if (r == NULL)
        return;
    json_t *releases = json_array();
    json_t *head = json_null();
    json_int_t last = 0, head_seq = 0;
    int n = PQntuples(r);
    for (int i = 0; i < n && !PQgetisnull(r, i, 0); i++) {
        json_array_append_new(releases, api_release_json(r, i, 0));
        last = int_at(r, i, 14);
    }
    if (n > 0 && !PQgetisnull(r, 0, API_RELEASE_NCOLUMNS)) {
        head_seq = int_at(r, 0, API_RELEASE_NCOLUMNS);
        head = json_pack("{s:I, s:s}", "seq", head_seq, "hash",
                         PQgetvalue(r, 0, API_RELEASE_NCOLUMNS + 1));
    }
    PQclear(r);
    if (api_db_commit(job, pg) != 0) {
        json_decref(releases);
        json_decref(head);
        return;
    }
    /* A next page only when this one stopped short of the head. */
    json_t *next =
        json_array_size(releases) > 0 && last < head_seq ? json_integer(last) : json_null();
    job->out =
        json_pack("{s:o, s:o, s:o}", "releases", releases, "log_head", head, "next_after", next);
    job->status = 200;
}

static const char one_sql[] = "SELECT " API_RELEASE_COLUMNS ", l.seq, l.prev_hash, l.entry_hash"
                              " FROM release_log l JOIN releases r ON r.id = l.release_id"
                              " JOIN release_keys k ON k.key_id = r.key_id WHERE r.id = $1";

static void run_firmware_one(api_job_t *job, PGconn *pg)
{
    const char *values[1] = {job->path_id};
    if (api_db_begin_as(job, pg) < 0)
        return;
    PGresult *r = api_db_exec(job, pg, one_sql, 1, values, "reading a release");
    if (r == NULL)
        return;
    json_t *out = PQntuples(r) == 1 ? api_release_json(r, 0, 0) : NULL;
    PQclear(r);
    if (api_db_commit(job, pg) != 0) {
        json_decref(out);
        return;
    }
    if (out == NULL) {
        api_job_error(job, 404, "not_found", "no such release");
        return;
    }
    job->out = out;
    job->status = 200;
}

/* Reads the query into job->page; false with msg set for a 400. */
static bool page_params(struct evkeyvalq *kvs, api_job_t *job, char *msg, size_t msglen)
{
    bool have_after = false, have_limit = false;
    int64_t v = 0;

    job->page.after = 0;
    job->page.limit = FIRMWARE_LIMIT_DEFAULT;
    for (struct evkeyval *kv = kvs->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
        bool after = strcmp(kv->key, "after") == 0;
        if (!after && strcmp(kv->key, "limit") != 0) {
            snprintf(msg, msglen, "unknown parameter '%.40s' (after, limit)", kv->key);
            return false;
        }
        if (after ? have_after : have_limit) {
            snprintf(msg, msglen, "parameter '%s' given twice", kv->key);
            return false;
        }
        if (after && !api_parse_int64(kv->value, 0, FIRMWARE_SEQ_MAX, &v)) {
            snprintf(msg, msglen, "after: a log sequence number, 0 or more");
            return false;
        }
        if (!after && !api_parse_int64(kv->value, 1, FIRMWARE_LIMIT_MAX, &v)) {
            snprintf(msg, msglen, "limit: 1 to %d", FIRMWARE_LIMIT_MAX);
            return false;
        }
        if (after) {
            job->page.after = v;
            have_after = true;
        } else {
            job->page.limit = (long)v;
            have_limit = true;
        }
    }
    return true;
}

void api_get_firmware(api_server_t *srv, struct evhttp_request *req, const char *release)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq kvs;
    char msg[200];

    /* Anonymous, whatever the request carries: no token is taken from it, none is checked. */
    api_job_t *job = api_job_new(srv, req, release != NULL ? run_firmware_one : run_firmware_list,
                                 API_SCOPE_NONE);
    job->anonymous_ok = true;
    if (release != NULL) {
        snprintf(job->path_id, sizeof(job->path_id), "%s", release);
        api_db_submit(srv, job);
        return;
    }
    /* It initialises kvs, also when it fails. */
    bool ok = evhttp_parse_query_str(query != NULL ? query : "", &kvs) == 0;
    if (!ok)
        snprintf(msg, sizeof(msg), "malformed query string");
    else
        ok = page_params(&kvs, job, msg, sizeof(msg));
    evhttp_clear_headers(&kvs);
    if (!ok) {
        free(job);
        api_send_error(srv, req, 400, "invalid_request", msg, 0);
        return;
    }
    api_db_submit(srv, job);
}
