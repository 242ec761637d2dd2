/*
 * meterhub-release: parses the command line, resolves the defaults from the environment, and
 * runs one job. See release_internal.h and docs/upgrade.md.
 */
#include "release_internal.h"

#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>

/* An environment variable, with empty treated as unset. */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "meterhub-release: %s\nTry 'meterhub-release --help'.\n", msg);
    return UPG_REL_EXIT_USAGE;
}

static bool needs_db(upg_rel_cmd_t cmd)
{
    return cmd != UPG_REL_CMD_HELP && cmd != UPG_REL_CMD_KEYGEN && cmd != UPG_REL_CMD_SIGN;
}

int main(int argc, char **argv)
{
    upg_rel_args_t args;
    upg_rel_ctx_t ctx;
    char err[256];
    int rc = -1;

    mh_log_init("meterhub-release");
    if (upg_rel_args_parse(argc, argv, &args, err, sizeof(err)) != 0)
        return usage_error(err);
    if (args.cmd == UPG_REL_CMD_HELP) {
        fputs(upg_rel_usage, stdout);
        return fflush(stdout) == 0 ? UPG_REL_EXIT_OK : UPG_REL_EXIT_FAIL;
    }

    ctx.pg_uri = args.pg_uri ? args.pg_uri : env("MH_PG_URI");
    ctx.store = args.store ? args.store : env("MH_FIRMWARE_STORE");
    ctx.trusted_keys = args.trusted_keys ? args.trusted_keys : env("MH_RELEASE_KEYS");
    if (needs_db(args.cmd) && ctx.pg_uri == NULL)
        return usage_error("no PostgreSQL connection: give --pg URI or set MH_PG_URI");
    if (args.cmd == UPG_REL_CMD_PUBLISH && ctx.store == NULL)
        return usage_error("publish: no image store: give --store DIR or set MH_FIRMWARE_STORE");
    if (args.cmd == UPG_REL_CMD_PUBLISH && ctx.trusted_keys == NULL)
        return usage_error(
            "publish: no trusted keys: give --trusted-keys PATH or set MH_RELEASE_KEYS");

    switch (args.cmd) {
    case UPG_REL_CMD_KEYGEN:
        rc = upg_rel_keygen(&args);
        break;
    case UPG_REL_CMD_SIGN:
        rc = upg_rel_sign(&args);
        break;
    case UPG_REL_CMD_PUBLISH:
        rc = upg_rel_publish(&ctx, &args);
        break;
    case UPG_REL_CMD_ROLLOUT_CREATE:
        rc = upg_rel_rollout_create(&ctx, &args);
        break;
    case UPG_REL_CMD_ROLLOUT_PAUSE:
    case UPG_REL_CMD_ROLLOUT_RESUME:
    case UPG_REL_CMD_ROLLOUT_ABORT:
    case UPG_REL_CMD_ROLLOUT_SET:
        rc = upg_rel_rollout_change(&ctx, &args);
        break;
    case UPG_REL_CMD_ROLLOUT_STATUS:
        rc = upg_rel_rollout_status(&ctx, &args);
        break;
    case UPG_REL_CMD_LOG_VERIFY:
        rc = upg_rel_log_verify(&ctx);
        break;
    case UPG_REL_CMD_HELP:
        break;
    }
    /* A full disk or a closed pipe on stdout is a failure the caller must see. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        mh_log(MH_LOG_ERROR, "cannot write the output");
        rc = -1;
    }
    return rc == 0 ? UPG_REL_EXIT_OK : UPG_REL_EXIT_FAIL;
}
