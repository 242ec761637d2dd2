#ifndef API_ADMIN_INTERNAL_H
#define API_ADMIN_INTERNAL_H

/*
 * meterhub-admin, the operators' command line (docs/contracts.md). main.c parses the command
 * line (args.c) and calls one job per command; each job is one file, connects to PostgreSQL
 * itself and returns 0 or -1 after logging why (exit status 1). Single-threaded.
 *
 * Output: JSON objects one per line on stdout (jansson), CSV for readings; errors, progress
 * and timings on stderr through mh_log. Nothing ever prints a key or a password: the
 * connection string is never echoed.
 */

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit statuses. */
#define API_ADMIN_EXIT_OK 0
#define API_ADMIN_EXIT_FAIL 1  /* operational error: database, files, unknown id */
#define API_ADMIN_EXIT_USAGE 2 /* malformed command line */

/* ---- command line (args.c) --------------------------------------------------------------- */

typedef enum api_admin_cmd {
    API_ADMIN_CMD_HELP,
    API_ADMIN_CMD_MIGRATE,
    API_ADMIN_CMD_ACCOUNT_ADD,
    API_ADMIN_CMD_ACCOUNT_PASSWD,
    API_ADMIN_CMD_DEVICE_ADD,
    API_ADMIN_CMD_DEVICE_REVOKE,
    API_ADMIN_CMD_DEVICE_LIST,
    API_ADMIN_CMD_READINGS,
} api_admin_cmd_t;

/* The parsed command line. Strings are borrowed from argv. NULL: not given. */
typedef struct api_admin_args {
    api_admin_cmd_t cmd;
    /* global */
    const char *pg_uri;
    const char *pki_dir;
    const char *sql_dir;
    /* account add NAME [--if-missing] [--password-file F | --generate-password];
     * account passwd NAME (--password-file F | --generate-password) */
    const char *name;
    bool if_missing;
    const char *password_file; /* "-": standard input */
    bool generate_password;
    /* device add; device list [--account A] */
    const char *account;
    const char *out_dir;
    long count;               /* default 1 */
    long sensors;             /* default 1 */
    long days;                /* default MH_CERT_DAYS_DEFAULT */
    long not_before_days_ago; /* default 0 */
    const char *hardware;     /* default: the database's (MH_HARDWARE_DEFAULT) */
    /* device revoke ID; readings SENSOR-ID */
    const char *id;
    bool has_from, has_to;
    int64_t from, to; /* Unix seconds, inclusive */
} api_admin_args_t;

/* Bounds of the readings range options: 1970 to the end of year 9999. */
#define API_ADMIN_TS_MAX 253402300799LL

/*
 * Parses argv[1..argc-1]. Global options may come before or after the command; options take
 * their value as the next argument or after '='; "--" ends the options. -h/--help anywhere
 * (before "--") gives API_ADMIN_CMD_HELP. Returns 0, or -1 with a one-line message in err
 * (a usage error). Pure: reads neither the environment nor files.
 */
int api_admin_args_parse(int argc, char **argv, api_admin_args_t *out, char *err, size_t errlen);

/* The usage text. */
extern const char api_admin_usage[];

/* ---- what the jobs share (session.c) ----------------------------------------------------- */

/* Where to find things, after the command line and the environment were consulted. */
typedef struct api_admin_ctx {
    const char *pg_uri;  /* never printed */
    const char *pki_dir; /* NULL when neither --pki nor $MH_PKI_DIR */
    const char *sql_dir;
} api_admin_ctx_t;

/* Connects as "meterhub-admin" with notices below WARNING silenced. Returns an owned
 * connection or NULL (logged). */
PGconn *api_admin_connect(const api_admin_ctx_t *ctx);

/* ---- jobs -------------------------------------------------------------------------------- */

/* migrate.c: applies the migrations of ctx->sql_dir not yet recorded. */
int api_admin_migrate(const api_admin_ctx_t *ctx);

/*
 * Parses a migration file name "NNN_name.sql" (digits, '_', at least one character, ".sql").
 * Returns 0 with *version set, or -1 when name is not a migration file. Pure.
 */
int api_admin_migration_version(const char *name, int *version);

/*
 * accounts.c. A password comes from args->password_file (first line; a file must not be
 * accessible by group or others) and must pass mh_password_acceptable, or is generated and
 * printed once on stdout as "password: <pw>" after the JSON line, only once it is stored. Only
 * its scrypt hash (common/password.h) reaches the database.
 *
 * account add: creates args->name, with the password's hash when one is given. With
 * --if-missing an existing account is left as it is, password included (said on stderr).
 * account passwd: sets or replaces the password of an existing account.
 */
int api_admin_account_add(const api_admin_ctx_t *ctx, const api_admin_args_t *args);
int api_admin_account_passwd(const api_admin_ctx_t *ctx, const api_admin_args_t *args);

/* devices.c */
int api_admin_device_add(const api_admin_ctx_t *ctx, const api_admin_args_t *args);
int api_admin_device_revoke(const api_admin_ctx_t *ctx, const char *id);
int api_admin_device_list(const api_admin_ctx_t *ctx, const char *account);

/* readings.c: CSV "ts,value" of a sensor, oldest first, within [from, to] when given. */
int api_admin_readings(const api_admin_ctx_t *ctx, const api_admin_args_t *args);

/* Formats v in the shortest "%.<p>g" form (p = 15, 16 or 17) that reads back as exactly v.
 * out must hold at least 32 bytes. Pure. */
void api_admin_format_double(double v, char *out, size_t outlen);

#endif
