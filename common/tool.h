#ifndef MH_TOOL_H
#define MH_TOOL_H

/*
 * What the operators' tools (meterhub-admin, meterhub-release) share besides their command
 * line (common/argv.h): how they connect to PostgreSQL and how they print a result.
 */

#include <jansson.h>
#include <libpq-fe.h>

/* mh_pg_connect as application_name, with PostgreSQL's notices ("relation already exists,
 * skipping" and friends) silenced: they are noise for an operator. Returns an owned
 * connection, or NULL (logged). conninfo is never logged. */
PGconn *mh_tool_connect(const char *conninfo, const char *application_name);

/* Logs "what: " and the first line of the server's message: res's, or when res has none (NULL,
 * or not an error) conn's. */
void mh_tool_log_pg(PGconn *conn, const PGresult *res, const char *what);

/*
 * Prints obj (takes ownership; NULL: building it failed) as one JSON line on stdout, keys in
 * insertion order, jansson's default separators ({"a": 1, "b": [2, 3]}), and reals with 15
 * significant digits so that 12.34 prints as written. Returns 0, or -1 (logged).
 */
int mh_tool_print_json(json_t *obj);

#endif
