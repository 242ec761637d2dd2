/* What the database jobs share: a connection, one JSON line of output, server messages. */
#include "release_internal.h"

#include "common/log.h"
#include "common/pg.h"

#include <stdio.h>
#include <string.h>

PGconn *upg_rel_connect(const upg_rel_ctx_t *ctx)
{
    PGconn *conn = mh_pg_connect(ctx->pg_uri, "meterhub-release");
    if (conn == NULL)
        goto fail;
    if (mh_pg_exec(conn, "SET client_min_messages = warning") != 0)
        goto fail;
    return conn;
fail:
    PQfinish(conn);
    return NULL;
}

int upg_rel_print_json(json_t *obj)
{
    int rc = -1;
    if (obj == NULL) {
        mh_log(MH_LOG_ERROR, "cannot build the JSON output");
        goto fail;
    }
    /* 15 significant digits print a percentage such as 12.34 as written, not 12.340000000000001. */
    if (json_dumpf(obj, stdout, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15)) != 0 ||
        fputc('\n', stdout) == EOF) {
        mh_log(MH_LOG_ERROR, "cannot write the output");
        goto fail;
    }
    rc = 0;
fail:
    json_decref(obj);
    return rc;
}

void upg_rel_log_pg(PGconn *conn, const PGresult *res, const char *what)
{
    char msg[512];
    const char *text = res != NULL ? PQresultErrorMessage(res) : "";
    if (text[0] == '\0' && conn != NULL)
        text = PQerrorMessage(conn);
    snprintf(msg, sizeof(msg), "%s", text[0] != '\0' ? text : "unexpected result");
    msg[strcspn(msg, "\n")] = '\0';
    mh_log(MH_LOG_ERROR, "%s: %s", what, msg);
}

PGresult *upg_rel_query(PGconn *conn, const char *what, const char *sql, int nparams,
                        const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        upg_rel_log_pg(conn, res, what);
        PQclear(res);
        return NULL;
    }
    return res;
}

void upg_rel_rollback(PGconn *conn)
{
    PQclear(PQexec(conn, "ROLLBACK"));
}
