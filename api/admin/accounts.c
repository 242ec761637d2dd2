/*
 * account add NAME [--if-missing] [--password-file F | --generate-password]
 * account passwd NAME (--password-file F | --generate-password)
 */
#include "admin_internal.h"

#include "common/tool.h"
#include "common/alloc.h"
#include "common/config.h"
#include "common/log.h"
#include "common/password.h"
#include "common/provision.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* mh_config_read_secret_file reads at most this many bytes: a first line this long may have
 * been cut, and a password silently cut is worse than one refused. */
#define SECRET_FILE_READ_MAX 1023

/* A password the operator gave or we generated. Wiped when disposed. */
typedef struct password {
    char *text; /* owned; NULL: none given */
    bool generated;
} password_t;

static void password_dispose(password_t *pw)
{
    if (pw->text != NULL) {
        OPENSSL_cleanse(pw->text, strlen(pw->text));
        free(pw->text);
    }
    pw->text = NULL;
}

/* The first line of standard input, without its line end, bounded like the policy. */
static char *read_stdin_line(void)
{
    char buf[MH_PASSWORD_MAX + 2];
    char *line = NULL;
    size_t n = 0;
    int c = 0;

    while (n < sizeof(buf) - 1 && (c = getchar()) != EOF && c != '\n') {
        if (c == '\0') {
            mh_log(MH_LOG_ERROR, "password from standard input: contains a NUL byte");
            goto fail;
        }
        buf[n++] = (char)c;
    }
    if (ferror(stdin)) {
        mh_log(MH_LOG_ERROR, "password from standard input: read error");
        goto fail;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r")] = '\0';
    /* Longer than buf-1 is refused by the policy, which sees MH_PASSWORD_MAX + 1 bytes. */
    line = mh_strdup(buf);
fail:
    OPENSSL_cleanse(buf, sizeof(buf));
    return line;
}

/*
 * Fills *pw from the command line's password option, if any, checked against the policy.
 * Returns 0 (pw->text NULL when no option was given) or -1 (logged).
 */
static int password_get(const api_admin_args_t *args, password_t *pw)
{
    int rc = -1;
    char err[256];

    pw->text = NULL;
    pw->generated = false;
    if (args->generate_password) {
        pw->text = mh_calloc(1, MH_PASSWORD_GENERATED_LEN + 1);
        if (mh_password_generate(pw->text, MH_PASSWORD_GENERATED_LEN + 1) != 0)
            goto fail;
        pw->generated = true;
    } else if (args->password_file != NULL && strcmp(args->password_file, "-") == 0) {
        pw->text = read_stdin_line();
        if (pw->text == NULL)
            goto fail;
    } else if (args->password_file != NULL) {
        /* The same rule as every other secret file: not readable by group or others. */
        pw->text = mh_config_read_secret_file(args->password_file, err, sizeof(err));
        if (pw->text == NULL) {
            mh_log(MH_LOG_ERROR, "password file %s", err);
            goto fail;
        }
        if (strlen(pw->text) >= SECRET_FILE_READ_MAX) {
            mh_log(MH_LOG_ERROR,
                   "password file %s: first line too long (a password file holds at most %d "
                   "bytes)",
                   args->password_file, SECRET_FILE_READ_MAX - 1);
            goto fail;
        }
    }
    if (pw->text != NULL && mh_password_acceptable(pw->text, err, sizeof(err)) != 0) {
        mh_log(MH_LOG_ERROR, "%s", err);
        goto fail;
    }
    rc = 0;
fail:
    if (rc != 0)
        password_dispose(pw);
    return rc;
}

/* Prints the JSON line of an account, then a generated password, once. */
static int print_result(const char *name, int64_t id, const password_t *pw)
{
    int rc = -1;
    if (mh_tool_print_json(json_pack("{s:s, s:I}", "account", name, "id", (json_int_t)id)) != 0)
        goto fail;
    if (pw->generated && printf("password: %s\n", pw->text) < 0) {
        mh_log(MH_LOG_ERROR, "cannot write the output");
        goto fail;
    }
    rc = 0;
fail:
    return rc;
}

static bool name_valid(const char *name)
{
    if (mh_account_name_valid(name))
        return true;
    mh_log(MH_LOG_ERROR,
           "account '%.80s': invalid name (1-64 of A-Z a-z 0-9 . _ @ -, "
           "starting with a letter or digit)",
           name);
    return false;
}

/*
 * Inserts the account with hash (NULL: no password) unless it exists. *created tells which.
 * Safe against a concurrent creation of the same name, like mh_prov_account_ensure, which
 * cannot take the hash: it must be in the INSERT, so no moment exists where a new account has
 * no password yet.
 */
static int account_insert(PGconn *conn, const char *name, const char *hash, int64_t *id,
                          bool *created)
{
    int rc = -1;
    PGresult *res = NULL;
    const char *params[2] = {name, hash};
    char *end = NULL;

    res = PQexecParams(conn,
                       "INSERT INTO accounts (name, password_hash) VALUES ($1, $2)"
                       " ON CONFLICT (name) DO NOTHING RETURNING id",
                       2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mh_tool_log_pg(conn, res, "account: insert");
        goto fail;
    }
    *created = PQntuples(res) == 1;
    if (!*created) {
        /* It exists (the new statement sees a concurrent creation, in READ COMMITTED). */
        PQclear(res);
        res = PQexecParams(conn, "SELECT id FROM accounts WHERE name = $1", 1, NULL, params, NULL,
                           NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            mh_tool_log_pg(conn, res, "account: select");
            goto fail;
        }
        if (PQntuples(res) != 1) {
            mh_log(MH_LOG_ERROR, "account %s: exists but is not visible", name);
            goto fail;
        }
    }
    *id = strtoll(PQgetvalue(res, 0, 0), &end, 10);
    if (end == PQgetvalue(res, 0, 0) || *end != '\0') {
        mh_log(MH_LOG_ERROR, "account: unexpected id from the database");
        goto fail;
    }
    rc = 0;
fail:
    PQclear(res);
    return rc;
}

int api_admin_account_add(const api_admin_ctx_t *ctx, const api_admin_args_t *args)
{
    int rc = -1;
    PGconn *conn = NULL;
    password_t pw = {NULL, false};
    char hash[MH_PASSWORD_HASH_MAX] = "";
    int64_t id = 0;
    bool created = false;

    if (!name_valid(args->name))
        goto fail;
    /* The password first: a bad file fails before anything touches the database. */
    if (password_get(args, &pw) != 0)
        goto fail;
    if (pw.text != NULL && mh_password_hash(pw.text, hash, sizeof(hash)) != 0)
        goto fail;
    conn = api_admin_connect(ctx);
    if (conn == NULL)
        goto fail;
    if (account_insert(conn, args->name, pw.text != NULL ? hash : NULL, &id, &created) != 0)
        goto fail;
    if (!created && !args->if_missing) {
        mh_log(MH_LOG_ERROR, "account %s already exists (id %lld)", args->name, (long long)id);
        goto fail;
    }
    if (!created && pw.text != NULL) {
        mh_log(MH_LOG_WARN,
               "account %s already exists (id %lld): its password is left unchanged (use "
               "'account passwd' to change it)",
               args->name, (long long)id);
        /* Not stored, so not worth showing. */
        pw.generated = false;
    }
    rc = print_result(args->name, id, &pw);
fail:
    password_dispose(&pw);
    PQfinish(conn);
    return rc;
}

int api_admin_account_passwd(const api_admin_ctx_t *ctx, const api_admin_args_t *args)
{
    int rc = -1;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    password_t pw = {NULL, false};
    char hash[MH_PASSWORD_HASH_MAX] = "";
    const char *params[2] = {args->name, hash};
    char *end = NULL;
    int64_t id = 0;

    if (!name_valid(args->name))
        goto fail;
    if (password_get(args, &pw) != 0)
        goto fail;
    if (pw.text == NULL) {
        /* args.c requires one of the options; this is a guard, not a path. */
        mh_log(MH_LOG_ERROR, "account passwd: no password given");
        goto fail;
    }
    if (mh_password_hash(pw.text, hash, sizeof(hash)) != 0)
        goto fail;
    conn = api_admin_connect(ctx);
    if (conn == NULL)
        goto fail;
    res = PQexecParams(conn, "UPDATE accounts SET password_hash = $2 WHERE name = $1 RETURNING id",
                       2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mh_tool_log_pg(conn, res, "account passwd: update");
        goto fail;
    }
    if (PQntuples(res) != 1) {
        mh_log(MH_LOG_ERROR, "account %s does not exist", args->name);
        goto fail;
    }
    id = strtoll(PQgetvalue(res, 0, 0), &end, 10);
    if (end == PQgetvalue(res, 0, 0) || *end != '\0') {
        mh_log(MH_LOG_ERROR, "account passwd: unexpected id from the database");
        goto fail;
    }
    rc = print_result(args->name, id, &pw);
fail:
    PQclear(res);
    password_dispose(&pw);
    PQfinish(conn);
    return rc;
}
