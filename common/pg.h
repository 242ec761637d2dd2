#ifndef MH_PG_H
#define MH_PG_H

/*
 * PostgreSQL helpers shared by the daemons and the CLI. The conninfo string is a libpq URI or
 * key=value list; passwords belong in a passfile (?passfile=...), never in logs.
 */

#include <libpq-fe.h>

/*
 * Connects with a 5-second connect timeout, application_name set and the session time zone
 * UTC. Returns an owned connection (PQfinish), or NULL after logging the reason.
 */
PGconn *mh_pg_connect(const char *conninfo, const char *application_name);

/* The same without logging, for reconnect loops that log once per outage: on failure returns
 * NULL with the reason in err. */
PGconn *mh_pg_connect_quiet(const char *conninfo, const char *application_name, char *err,
                            size_t errlen);

/* Runs sql (no parameters) and expects PGRES_COMMAND_OK or PGRES_TUPLES_OK. Returns 0, or
 * -1 after logging the server's message. */
int mh_pg_exec(PGconn *conn, const char *sql);

/* True when the connection is gone (server stopped or network broken), as opposed to an
 * error in the statement: the caller should reconnect and retry rather than give up. */
int mh_pg_conn_lost(PGconn *conn);

#endif
