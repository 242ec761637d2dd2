#include "pg.h"
#include "log.h"

#include <string.h>

PGconn *mh_pg_connect_quiet(const char *conninfo, const char *application_name, char *err,
                            size_t errlen)
{
    /* Our defaults first: with expand_dbname=1, what the operator's conninfo says overrides
     * earlier keywords, so their connect_timeout, application_name or options win. */
    const char *keys[] = {"connect_timeout", "application_name", "options", "dbname", NULL};
    const char *vals[] = {"5", application_name, "-c TimeZone=UTC", conninfo, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "%s", PQerrorMessage(conn));
        err[strcspn(err, "\n")] = '\0';
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

PGconn *mh_pg_connect(const char *conninfo, const char *application_name)
{
    char err[512];
    PGconn *conn = mh_pg_connect_quiet(conninfo, application_name, err, sizeof(err));
    if (conn == NULL)
        mh_log(MH_LOG_ERROR, "postgres: connect: %s", err);
    return conn;
}

int mh_pg_exec(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
        msg[strcspn(msg, "\n")] = '\0';
        mh_log(MH_LOG_ERROR, "postgres: %s", msg);
        rc = -1;
    }
    PQclear(res);
    return rc;
}

int mh_pg_conn_lost(PGconn *conn)
{
    return conn == NULL || PQstatus(conn) != CONNECTION_OK;
}
