/* What every job needs: a database connection and a way to print one JSON line. */
#include "admin_internal.h"

#include "common/log.h"
#include "common/pg.h"

#include <stdio.h>
#include <string.h>

PGconn *api_admin_connect(const api_admin_ctx_t *ctx)
{
    PGconn *conn = mh_pg_connect(ctx->pg_uri, "meterhub-admin");
    if (conn == NULL)
        goto fail;
    /* "relation already exists, skipping" and friends are noise for an operator. */
    if (mh_pg_exec(conn, "SET client_min_messages = warning") != 0)
        goto fail;
    return conn;
fail:
    PQfinish(conn);
    return NULL;
}

int api_admin_print_json(json_t *obj)
{
    int rc = -1;
    if (obj == NULL) {
        mh_log(MH_LOG_ERROR, "cannot build the JSON output");
        goto fail;
    }
    /* jansson's default separators give the contract's layout: {"a": 1, "b": [2, 3]}. */
    if (json_dumpf(obj, stdout, JSON_PRESERVE_ORDER) != 0 || fputc('\n', stdout) == EOF) {
        mh_log(MH_LOG_ERROR, "cannot write the output");
        goto fail;
    }
    rc = 0;
fail:
    json_decref(obj);
    return rc;
}

void api_admin_log_pg(PGconn *conn, const PGresult *res, const char *what)
{
    char msg[512];
    const char *text = res != NULL ? PQresultErrorMessage(res) : "";
    if (text[0] == '\0' && conn != NULL)
        text = PQerrorMessage(conn);
    snprintf(msg, sizeof(msg), "%s", text[0] != '\0' ? text : "unexpected result");
    msg[strcspn(msg, "\n")] = '\0';
    mh_log(MH_LOG_ERROR, "%s: %s", what, msg);
}
