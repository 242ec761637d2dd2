/*
 * migrate: applies deploy/sql/NNN_*.sql in version order, each file and its schema_migrations
 * row in one transaction, so a file is either wholly applied and recorded or not at all.
 * A session advisory lock serialises concurrent runs: the second waits, then finds nothing
 * left to do. A migration file must therefore not contain BEGIN/COMMIT of its own, nor
 * statements that cannot run in a transaction block (CREATE INDEX CONCURRENTLY, VACUUM).
 */
#include "admin_internal.h"
#include "common/tool.h"
#include "common/fileio.h"

#include "common/alloc.h"
#include "common/log.h"
#include "common/pg.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* "mhmigrat" in ASCII: the advisory lock key every meterhub-admin migrate takes. */
#define MIGRATE_LOCK_KEY "7883671447186596212"
/* A migration larger than this is not a hand-written schema file. */
#define MIGRATION_MAX_BYTES (16 * 1024 * 1024)

typedef struct migration {
    int version;
    char *name;
} migration_t;

int api_admin_migration_version(const char *name, int *version)
{
    size_t len = strlen(name);
    size_t digits = strspn(name, "0123456789");
    /* digits, '_', at least one character, ".sql" */
    if (digits == 0 || name[digits] != '_' || len < digits + 1 + 1 + 4 ||
        strcmp(name + len - 4, ".sql") != 0)
        return -1;
    long v = 0;
    for (size_t i = 0; i < digits; i++) {
        v = v * 10 + (name[i] - '0');
        if (v > INT_MAX)
            return -1;
    }
    *version = (int)v;
    return 0;
}

static int cmp_migration(const void *a, const void *b)
{
    const migration_t *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

static void free_migrations(migration_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].name);
    free(m);
}

/* The migration files of dir, sorted by version. Returns 0 or -1 (logged). */
static int list_migrations(const char *dir, migration_t **out, size_t *nout)
{
    int rc = -1;
    DIR *d = NULL;
    migration_t *m = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    char path[PATH_MAX];
    struct stat st;

    d = opendir(dir);
    if (d == NULL) {
        mh_log(MH_LOG_ERROR, "migrations directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    while ((e = readdir(d)) != NULL) {
        int version;
        if (api_admin_migration_version(e->d_name, &version) != 0)
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= sizeof(path) ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            m = mh_realloc(m, cap * sizeof(*m));
        }
        m[n].version = version;
        m[n].name = mh_strdup(e->d_name);
        n++;
    }
    qsort(m, n, sizeof(*m), cmp_migration);
    for (size_t i = 1; i < n; i++) {
        if (m[i].version == m[i - 1].version) {
            mh_log(MH_LOG_ERROR, "migrations %s and %s have the same version", m[i - 1].name,
                   m[i].name);
            goto fail;
        }
    }
    if (n == 0) {
        mh_log(MH_LOG_ERROR, "no NNN_*.sql migration in %s", dir);
        goto fail;
    }
    *out = m;
    *nout = n;
    m = NULL;
    n = 0;
    rc = 0;
fail:
    free_migrations(m, n);
    if (d != NULL)
        closedir(d);
    return rc;
}

/* Reads a migration file; NULL (logged) if unreadable, too large or not text. */
static char *read_sql(const char *dir, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return mh_read_text_file(path, MIGRATION_MAX_BYTES);
}

/* Logs a failed migration as "file:line: message", the line from the error position. */
static void log_migration_error(const PGresult *res, const char *name, const char *sql)
{
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
    const char *context = PQresultErrorField(res, PG_DIAG_CONTEXT);
    long line = 0;
    if (pos != NULL) {
        /* The position counts characters (1-based); counting bytes is close enough for the
         * ASCII that schema files are, and only ever an approximation for anything else. */
        long p = strtol(pos, NULL, 10);
        line = 1;
        for (long i = 0; i < p - 1 && sql[i] != '\0'; i++)
            if (sql[i] == '\n')
                line++;
    }
    if (primary == NULL) {
        mh_tool_log_pg(NULL, res, name);
        return;
    }
    if (line > 0)
        mh_log(MH_LOG_ERROR, "%s:%ld: %s", name, line, primary);
    else
        mh_log(MH_LOG_ERROR, "%s: %s%s%.300s", name, primary, context ? " (in " : "",
               context ? context : "");
}

/* Runs sql; for statements whose result we do not need. */
static int exec_ok(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        mh_tool_log_pg(conn, res, what);
        rc = -1;
    }
    PQclear(res);
    return rc;
}

/* Applies one file and records it, in one transaction. */
static int apply_one(PGconn *conn, const char *dir, const migration_t *m)
{
    int rc = -1;
    char *sql = NULL;
    PGresult *res = NULL;
    bool in_tx = false;
    char version[16];
    const char *params[2] = {version, m->name};

    sql = read_sql(dir, m->name);
    if (sql == NULL)
        goto fail;
    if (exec_ok(conn, "BEGIN", "migrate: begin") != 0)
        goto fail;
    in_tx = true;
    /* The whole file in one simple query: all its statements run in our transaction. */
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_migration_error(res, m->name, sql);
        goto fail;
    }
    PQclear(res);
    snprintf(version, sizeof(version), "%d", m->version);
    res = PQexecParams(conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                       NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        mh_tool_log_pg(conn, res, "migrate: record");
        goto fail;
    }
    in_tx = false;
    if (exec_ok(conn, "COMMIT", m->name) != 0)
        goto fail;
    rc = 0;
fail:
    PQclear(res);
    if (in_tx && !mh_pg_conn_lost(conn))
        PQclear(PQexec(conn, "ROLLBACK"));
    free(sql);
    return rc;
}

/* Versions already applied, with their recorded names. */
static PGresult *applied_versions(PGconn *conn)
{
    PGresult *res = PQexec(conn, "SELECT version, name FROM schema_migrations ORDER BY version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mh_tool_log_pg(conn, res, "migrate: schema_migrations");
        PQclear(res);
        return NULL;
    }
    return res;
}

static int find_applied(const PGresult *res, int version)
{
    for (int i = 0; i < PQntuples(res); i++)
        if (atoi(PQgetvalue(res, i, 0)) == version)
            return i;
    return -1;
}

int api_admin_migrate(const api_admin_ctx_t *ctx)
{
    int rc = -1;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    PGresult *applied = NULL;
    migration_t *m = NULL;
    size_t n = 0, done = 0;
    bool locked = false;

    if (list_migrations(ctx->sql_dir, &m, &n) != 0)
        goto fail;
    conn = api_admin_connect(ctx);
    if (conn == NULL)
        goto fail;

    res = PQexec(conn, "SELECT pg_try_advisory_lock(" MIGRATE_LOCK_KEY ")");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mh_tool_log_pg(conn, res, "migrate: lock");
        goto fail;
    }
    if (PQgetvalue(res, 0, 0)[0] != 't') {
        mh_log(MH_LOG_INFO, "another migrate is running; waiting for it");
        if (exec_ok(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "migrate: lock") != 0)
            goto fail;
    }
    locked = true;

    if (exec_ok(conn,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version int PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                "migrate: create schema_migrations") != 0)
        goto fail;
    applied = applied_versions(conn);
    if (applied == NULL)
        goto fail;
    for (int i = 0; i < PQntuples(applied); i++) {
        int v = atoi(PQgetvalue(applied, i, 0));
        bool known = false;
        for (size_t k = 0; k < n; k++) {
            if (m[k].version != v)
                continue;
            known = true;
            if (strcmp(m[k].name, PQgetvalue(applied, i, 1)) != 0)
                mh_log(MH_LOG_WARN, "version %d was applied as %s but the file is now %s", v,
                       PQgetvalue(applied, i, 1), m[k].name);
        }
        if (!known)
            mh_log(MH_LOG_WARN, "version %d (%s) is applied but has no file in %s", v,
                   PQgetvalue(applied, i, 1), ctx->sql_dir);
    }

    for (size_t k = 0; k < n; k++) {
        if (find_applied(applied, m[k].version) >= 0)
            continue;
        if (apply_one(conn, ctx->sql_dir, &m[k]) != 0) {
            mh_log(MH_LOG_ERROR,
                   "migrate: %s failed and was rolled back (%zu applied before it in this run)",
                   m[k].name, done);
            goto fail;
        }
        printf("applied %s\n", m[k].name);
        fflush(stdout);
        done++;
    }
    if (done == 0)
        printf("nothing to apply: %d migrations already applied\n", PQntuples(applied));
    rc = 0;
fail:
    if (locked && !mh_pg_conn_lost(conn))
        PQclear(PQexec(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
    PQclear(applied);
    PQclear(res);
    PQfinish(conn);
    free_migrations(m, n);
    return rc;
}
