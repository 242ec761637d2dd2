#include "common/tool.h"

#include "common/log.h"
#include "common/pg.h"

#include <stdio.h>
#include <string.h>

PGconn *mh_tool_connect(const char *conninfo, const char *application_name)
{
    PGconn *conn = mh_pg_connect(conninfo, application_name);
    if (conn == NULL)
        goto fail;
    if (mh_pg_exec(conn, "SET client_min_messages = warning") != 0)
        goto fail;
    return conn;
fail:
    PQfinish(conn);
    return NULL;
}

void mh_tool_log_pg(PGconn *conn, const PGresult *res, const char *what)
{
    char msg[512];
    const char *text = res != NULL ? PQresultErrorMessage(res) : "";
    if (text[0] == '\0' && conn != NULL)
        text = PQerrorMessage(conn);
    snprintf(msg, sizeof(msg), "%s", text[0] != '\0' ? text : "unexpected result");
    msg[strcspn(msg, "\n")] = '\0';
    mh_log(MH_LOG_ERROR, "%s: %s", what, msg);
}

int mh_tool_print_json(json_t *obj)
{
    int rc = -1;
    if (obj == NULL) {
        mh_log(MH_LOG_ERROR, "cannot build the JSON output");
        goto fail;
    }
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
