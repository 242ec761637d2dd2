#include "pg.h"
#include "log.h"

#include <string.h>

PGconn *mh_pg_connect(const char *conninfo, const char *application_name)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", "options", NULL};
    const char *vals[] = {conninfo, "5", application_name, "-c TimeZone=UTC", NULL};
    /* expand_dbname=1: the first dbname is parsed as a conninfo/URI; later keys override
     * only what the conninfo does not say. */
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL) {
        mh_log(MH_LOG_ERROR, "postgres: out of memory connecting");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
        msg[strcspn(msg, "\n")] = '\0';
        mh_log(MH_LOG_ERROR, "postgres: connect: %s", msg);
        PQfinish(conn);
        return NULL;
    }
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
