/*
 * meterhub-admin: parses the command line, resolves the defaults from the environment, and
 * runs one job. See admin_internal.h and docs/contracts.md.
 */
#include "admin_internal.h"

#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>

#ifndef MH_SQL_DIR_DEFAULT
#error "MH_SQL_DIR_DEFAULT must be defined by the build (CMake cache variable MH_SQL_DIR)"
#endif

/* An environment variable, with empty treated as unset. */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "meterhub-admin: %s\nTry 'meterhub-admin --help'.\n", msg);
    return API_ADMIN_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    api_admin_args_t args;
    api_admin_ctx_t ctx;
    char err[256];
    int rc = -1;

    mh_log_init("meterhub-admin");
    if (api_admin_args_parse(argc, argv, &args, err, sizeof(err)) != 0)
        return usage_error(err);
    if (args.cmd == API_ADMIN_CMD_HELP) {
        fputs(api_admin_usage, stdout);
        return fflush(stdout) == 0 ? API_ADMIN_EXIT_OK : API_ADMIN_EXIT_FAIL;
    }

    ctx.pg_uri = args.pg_uri ? args.pg_uri : env("MH_PG_URI");
    ctx.pki_dir = args.pki_dir ? args.pki_dir : env("MH_PKI_DIR");
    ctx.sql_dir = args.sql_dir ? args.sql_dir : env("MH_SQL_DIR");
    if (ctx.sql_dir == NULL)
        ctx.sql_dir = MH_SQL_DIR_DEFAULT;
    if (ctx.pg_uri == NULL)
        return usage_error("no PostgreSQL connection: give --pg URI or set MH_PG_URI");
    if (args.cmd == API_ADMIN_CMD_DEVICE_ADD && ctx.pki_dir == NULL)
        return usage_error("device add: no PKI directory: give --pki DIR or set MH_PKI_DIR");

    switch (args.cmd) {
    case API_ADMIN_CMD_MIGRATE:
        rc = api_admin_migrate(&ctx);
        break;
    case API_ADMIN_CMD_ACCOUNT_ADD:
        rc = api_admin_account_add(&ctx, &args);
        break;
    case API_ADMIN_CMD_ACCOUNT_PASSWD:
        rc = api_admin_account_passwd(&ctx, &args);
        break;
    case API_ADMIN_CMD_DEVICE_ADD:
        rc = api_admin_device_add(&ctx, &args);
        break;
    case API_ADMIN_CMD_DEVICE_REVOKE:
        rc = api_admin_device_revoke(&ctx, args.id);
        break;
    case API_ADMIN_CMD_DEVICE_LIST:
        rc = api_admin_device_list(&ctx, args.account);
        break;
    case API_ADMIN_CMD_READINGS:
        rc = api_admin_readings(&ctx, &args);
        break;
    case API_ADMIN_CMD_HELP:
        break;
    }
    /* A full disk or a closed pipe on stdout is a failure the caller must see. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        mh_log(MH_LOG_ERROR, "cannot write the output");
        rc = -1;
    }
    return rc == 0 ? API_ADMIN_EXIT_OK : API_ADMIN_EXIT_FAIL;
}
