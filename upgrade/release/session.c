/* What the database jobs share: a connection, queries that log their failure, ROLLBACK. */
#include "release_internal.h"

#include "common/log.h"
#include "common/pg.h"
#include "common/tool.h"

#include <stdio.h>
#include <string.h>

PGconn *upg_rel_connect(const upg_rel_ctx_t *ctx)
{
    return mh_tool_connect(ctx->pg_uri, "meterhub-release");
}

PGresult *upg_rel_query(PGconn *conn, const char *what, const char *sql, int nparams,
                        const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        mh_tool_log_pg(conn, res, what);
        PQclear(res);
        return NULL;
    }
    return res;
}

void upg_rel_rollback(PGconn *conn)
{
    PQclear(PQexec(conn, "ROLLBACK"));
}
