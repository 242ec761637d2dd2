/*
 * rollout create | pause | resume | abort | set | status. A rollout targets the active devices
 * of its release's hardware whose bucket (upg_bucket, docs/upgrade.md) is below its percent,
 * and, when it has a list, only those listed. Which devices that is gets computed by
 * PostgreSQL with the very expression upg_candidates uses, so what this tool reports is what
 * the offer rule does.
 */
#include "release_internal.h"

#include "common/tool.h"
#include "common/alloc.h"
#include "common/ids.h"
#include "common/fileio.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A --devices file: 32 hex, a newline and some comments per device. */
#define LIST_FILE_MAX ((size_t)UPG_REL_MAX_LIST * 64)

/* The devices rollout ro targets now (ro: an alias in the enclosing query). */
#define TARGETED_SQL                                                                               \
    "(SELECT count(*) FROM devices d"                                                              \
    " WHERE d.hardware = r.hardware AND d.status = 'active'"                                       \
    " AND upg_bucket(d.id) < ro.percent_bp"                                                        \
    " AND (NOT ro.has_list OR EXISTS (SELECT 1 FROM rollout_devices rd"                            \
    " WHERE rd.rollout_id = ro.id AND rd.did = d.did)))"

/* ---- the device list ---------------------------------------------------------------------- */

void upg_rel_free_list(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

int upg_rel_parse_device_list(const char *buf, size_t len, char ***ids, size_t *n, char *err,
                              size_t errlen)
{
    char **out = NULL;
    size_t count = 0, cap = 0, line = 0;
    const char *p = buf, *end = buf + len;

    *ids = NULL;
    *n = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol != NULL ? eol + 1 : end;
        const char *a = p, *b = eol != NULL ? eol : end;
        line++;
        while (a < b && blank(*a))
            a++;
        while (b > a && blank(b[-1]))
            b--;
        p = next;
        if (a == b || *a == '#')
            continue;
        if (!mh_id_valid_n(a, (size_t)(b - a))) {
            snprintf(err, errlen, "line %zu: not a device id (32 lowercase hex): '%.*s'", line,
                     (int)((b - a) > 40 ? 40 : (b - a)), a);
            goto fail;
        }
        if (count == UPG_REL_MAX_LIST) {
            snprintf(err, errlen, "line %zu: more than %d devices", line, UPG_REL_MAX_LIST);
            goto fail;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            out = mh_realloc(out, cap * sizeof(*out));
        }
        out[count++] = mh_strndup(a, MH_ID_LEN);
    }
    *ids = out;
    *n = count;
    return 0;
fail:
    upg_rel_free_list(out, count);
    return -1;
}

/* "{id,id,...}": a text[] literal (ids are hex: nothing to quote). Owned. */
static char *array_literal(char **ids, size_t n)
{
    char *out = mh_malloc(2 + n * (MH_ID_LEN + 1) + 1);
    char *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            *p++ = ',';
        memcpy(p, ids[i], MH_ID_LEN);
        p += MH_ID_LEN;
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

/* ---- output ------------------------------------------------------------------------------- */

/* Basis points as a JSON number of percent: 1000 -> 10, 1250 -> 12.5. */
static json_t *percent_json(const char *bp_text)
{
    long bp = strtol(bp_text, NULL, 10);
    if (bp % 100 == 0)
        return json_integer(bp / 100);
    return json_real((double)bp / 100.0);
}

static json_int_t col_int(const PGresult *res, int row, int col)
{
    return (json_int_t)strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* Prints rollout id as {id, release, percent, devices, state}. */
static int print_rollout(PGconn *conn, const char *id)
{
    int rc = -1;
    const char *params[1] = {id};
    PGresult *res = upg_rel_query(conn, "rollout: reading it back",
                                  "SELECT ro.id, ro.release_id, ro.percent_bp, " TARGETED_SQL
                                  ", ro.state FROM rollouts ro"
                                  " JOIN releases r ON r.id = ro.release_id WHERE ro.id = $1",
                                  1, params);
    if (res == NULL || PQntuples(res) != 1) {
        if (res != NULL)
            mh_log(MH_LOG_ERROR, "rollout %s: gone", id);
        goto fail;
    }
    rc = mh_tool_print_json(json_pack("{s:I, s:s, s:o, s:I, s:s}", "id", col_int(res, 0, 0),
                                      "release", PQgetvalue(res, 0, 1), "percent",
                                      percent_json(PQgetvalue(res, 0, 2)), "devices",
                                      col_int(res, 0, 3), "state", PQgetvalue(res, 0, 4)));
fail:
    PQclear(res);
    return rc;
}

/* ---- create ------------------------------------------------------------------------------- */

/* The listed ids that name no device: refused, up to five of them named. */
static int check_listed(PGconn *conn, const char *array, size_t n)
{
    int rc = -1;
    const char *params[1] = {array};
    PGresult *res =
        upg_rel_query(conn, "rollout create: checking the device list",
                      "SELECT u.id, d.did IS NULL, d.status, d.hardware"
                      " FROM unnest($1::text[]) AS u(id) LEFT JOIN devices d ON d.id = u.id",
                      1, params);
    if (res == NULL)
        goto fail;
    int unknown = 0;
    char names[5 * (MH_ID_LEN + 2) + 1] = "";
    for (int i = 0; i < PQntuples(res); i++) {
        if (strcmp(PQgetvalue(res, i, 1), "t") != 0)
            continue;
        if (unknown < 5) {
            strcat(names, unknown ? ", " : "");
            strcat(names, PQgetvalue(res, i, 0));
        }
        unknown++;
    }
    if (unknown > 0) {
        mh_log(MH_LOG_ERROR, "rollout create: %d of the %zu listed device(s) do not exist: %s%s",
               unknown, n, names, unknown > 5 ? ", ..." : "");
        goto fail;
    }
    rc = 0;
fail:
    PQclear(res);
    return rc;
}

int upg_rel_rollout_create(const upg_rel_ctx_t *ctx, const upg_rel_args_t *args)
{
    int rc = -1;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    char **ids = NULL;
    size_t nids = 0;
    char *array = NULL;
    char err[256], bp[16], id[24];
    bool in_tx = false;

    if (args->devices_file != NULL) {
        size_t len = 0;
        char *text = mh_read_file(args->devices_file, LIST_FILE_MAX, "device list", &len);
        if (text == NULL)
            goto fail;
        int prc = upg_rel_parse_device_list(text, len, &ids, &nids, err, sizeof(err));
        free(text);
        if (prc != 0) {
            mh_log(MH_LOG_ERROR, "device list %s: %s", args->devices_file, err);
            goto fail;
        }
        if (nids == 0) {
            mh_log(MH_LOG_ERROR, "device list %s: no device ids", args->devices_file);
            goto fail;
        }
        array = array_literal(ids, nids);
    }

    conn = upg_rel_connect(ctx);
    if (conn == NULL)
        goto fail;
    res = upg_rel_query(conn, "rollout create: BEGIN", "BEGIN", 0, NULL);
    if (res == NULL)
        goto fail;
    in_tx = true;
    PQclear(res);

    const char *rparams[1] = {args->release};
    res = upg_rel_query(conn, "rollout create: reading the release",
                        "SELECT hardware, version, expires_at <= now() FROM releases WHERE id = $1",
                        1, rparams);
    if (res == NULL)
        goto fail;
    if (PQntuples(res) == 0) {
        mh_log(MH_LOG_ERROR, "rollout create: no such release %s", args->release);
        goto fail;
    }
    if (args->hardware != NULL && strcmp(args->hardware, PQgetvalue(res, 0, 0)) != 0) {
        mh_log(MH_LOG_ERROR, "rollout create: release %s is for hardware %s, not %s", args->release,
               PQgetvalue(res, 0, 0), args->hardware);
        goto fail;
    }
    if (strcmp(PQgetvalue(res, 0, 2), "t") == 0)
        mh_log(MH_LOG_WARN, "rollout create: release %s has expired: it will not be offered",
               args->release);
    PQclear(res);
    res = NULL;

    if (array != NULL && check_listed(conn, array, nids) != 0)
        goto fail;

    snprintf(bp, sizeof(bp), "%d", args->percent_bp);
    const char *iparams[3] = {args->release, bp, array != NULL ? "t" : "f"};
    res = upg_rel_query(conn, "rollout create",
                        "INSERT INTO rollouts (release_id, percent_bp, has_list)"
                        " VALUES ($1, $2::int, $3::boolean) RETURNING id",
                        3, iparams);
    if (res == NULL)
        goto fail;
    snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    res = NULL;
    if (array != NULL) {
        const char *lparams[2] = {id, array};
        res = upg_rel_query(conn, "rollout create: the device list",
                            "INSERT INTO rollout_devices (rollout_id, did)"
                            " SELECT $1::bigint, d.did FROM devices d WHERE d.id = ANY ($2::text[])"
                            " ON CONFLICT DO NOTHING",
                            2, lparams);
        if (res == NULL)
            goto fail;
        PQclear(res);
        res = NULL;
    }
    res = upg_rel_query(conn, "rollout create: COMMIT", "COMMIT", 0, NULL);
    if (res == NULL)
        goto fail;
    in_tx = false;
    rc = print_rollout(conn, id);
fail:
    PQclear(res);
    if (in_tx && conn != NULL)
        upg_rel_rollback(conn);
    PQfinish(conn);
    free(array);
    upg_rel_free_list(ids, nids);
    return rc;
}

/* ---- pause, resume, abort, set ------------------------------------------------------------ */

int upg_rel_rollout_change(const upg_rel_ctx_t *ctx, const upg_rel_args_t *args)
{
    int rc = -1;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    char id[24], bp[16];
    bool in_tx = false;
    const char *want = NULL, *verb = NULL;

    switch (args->cmd) {
    case UPG_REL_CMD_ROLLOUT_PAUSE:
        want = "paused";
        verb = "pause";
        break;
    case UPG_REL_CMD_ROLLOUT_RESUME:
        want = "active";
        verb = "resume";
        break;
    case UPG_REL_CMD_ROLLOUT_ABORT:
        want = "aborted";
        verb = "abort";
        break;
    default: /* set: the state stays */
        verb = "set";
        break;
    }
    snprintf(id, sizeof(id), "%lld", (long long)args->id);
    snprintf(bp, sizeof(bp), "%d", args->percent_bp);

    conn = upg_rel_connect(ctx);
    if (conn == NULL)
        goto fail;
    res = upg_rel_query(conn, "rollout: BEGIN", "BEGIN", 0, NULL);
    if (res == NULL)
        goto fail;
    in_tx = true;
    PQclear(res);
    const char *sparams[1] = {id};
    res = upg_rel_query(conn, "rollout: reading it",
                        "SELECT state FROM rollouts WHERE id = $1 FOR UPDATE", 1, sparams);
    if (res == NULL)
        goto fail;
    if (PQntuples(res) == 0) {
        mh_log(MH_LOG_ERROR, "rollout %s: no such rollout", id);
        goto fail;
    }
    bool aborted = strcmp(PQgetvalue(res, 0, 0), "aborted") == 0;
    PQclear(res);
    res = NULL;
    /* Aborting is final: nothing but another abort (a no-op) applies to an aborted rollout. */
    if (aborted && args->cmd != UPG_REL_CMD_ROLLOUT_ABORT) {
        mh_log(MH_LOG_ERROR, "rollout %s: cannot %s: it is aborted, and aborting is final", id,
               verb);
        goto fail;
    }
    const char *uparams[3] = {id, want, args->has_percent ? bp : NULL};
    res = upg_rel_query(conn, "rollout: changing it",
                        "UPDATE rollouts SET state = coalesce($2, state),"
                        " percent_bp = coalesce($3::int, percent_bp), changed_at = now()"
                        " WHERE id = $1 AND (state IS DISTINCT FROM coalesce($2, state)"
                        " OR percent_bp IS DISTINCT FROM coalesce($3::int, percent_bp))",
                        3, uparams);
    if (res == NULL)
        goto fail;
    if (strcmp(PQcmdTuples(res), "0") == 0)
        mh_log(MH_LOG_INFO, "rollout %s: unchanged", id);
    PQclear(res);
    res = upg_rel_query(conn, "rollout: COMMIT", "COMMIT", 0, NULL);
    if (res == NULL)
        goto fail;
    in_tx = false;
    rc = print_rollout(conn, id);
fail:
    PQclear(res);
    if (in_tx && conn != NULL)
        upg_rel_rollback(conn);
    PQfinish(conn);
    return rc;
}

/* ---- status ------------------------------------------------------------------------------- */

int upg_rel_rollout_status(const upg_rel_ctx_t *ctx, const upg_rel_args_t *args)
{
    int rc = -1;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    char id[24];

    snprintf(id, sizeof(id), "%lld", (long long)args->id);
    const char *params[1] = {args->has_id ? id : NULL};
    conn = upg_rel_connect(ctx);
    if (conn == NULL)
        goto fail;
    /* Each offer row counts once as offered; downloaded_at stays set once a download ended,
     * whatever the meter reported after. */
    res = upg_rel_query(
        conn, "rollout status",
        "SELECT ro.id, ro.release_id, r.version, r.hardware, ro.percent_bp, ro.state, " TARGETED_SQL
        ","
        " count(o.did), count(o.downloaded_at),"
        " count(*) FILTER (WHERE o.state = 'installed'),"
        " count(*) FILTER (WHERE o.state = 'failed'),"
        " count(*) FILTER (WHERE o.state = 'refused')"
        " FROM rollouts ro JOIN releases r ON r.id = ro.release_id"
        " LEFT JOIN upgrade_offers o ON o.rollout_id = ro.id"
        " WHERE $1::bigint IS NULL OR ro.id = $1::bigint"
        " GROUP BY ro.id, r.id ORDER BY ro.id",
        1, params);
    if (res == NULL)
        goto fail;
    if (args->has_id && PQntuples(res) == 0) {
        mh_log(MH_LOG_ERROR, "rollout %s: no such rollout", id);
        goto fail;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:o, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "id",
                              col_int(res, i, 0), "release", PQgetvalue(res, i, 1), "version",
                              PQgetvalue(res, i, 2), "hardware", PQgetvalue(res, i, 3), "percent",
                              percent_json(PQgetvalue(res, i, 4)), "state", PQgetvalue(res, i, 5),
                              "targeted", col_int(res, i, 6), "offered", col_int(res, i, 7),
                              "downloaded", col_int(res, i, 8), "installed", col_int(res, i, 9),
                              "failed", col_int(res, i, 10), "refused", col_int(res, i, 11));
        if (mh_tool_print_json(o) != 0)
            goto fail;
    }
    rc = 0;
fail:
    PQclear(res);
    PQfinish(conn);
    return rc;
}
