/* meterhub-release's command line: one table of options, each valid for some commands. */
#include "release_internal.h"

#include "common/log.h"
#include "common/alloc.h"
#include "common/argv.h"
#include "common/ids.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char upg_rel_usage[] =
    "usage: meterhub-release COMMAND [options]\n"
    "\n"
    "Offline (no database):\n"
    "  keygen --out DIR              a new Ed25519 release key: DIR/release.key (0600; DIR is\n"
    "                                created 0700) and DIR/release.pub; never overwrites\n"
    "  sign --key K --image F --version V --hardware H [--expires DAYS]\n"
    "       [--notes TEXT | --notes-file F] [--out PREFIX]\n"
    "                                write PREFIX.manifest and PREFIX.manifest.sig (PREFIX\n"
    "                                defaults to F); DAYS of validity, default 90, fractions\n"
    "                                allowed; never overwrites\n"
    "\n"
    "Service (PostgreSQL as its owner):\n"
    "  publish MANIFEST IMAGE [--signature SIG] [--store DIR] [--trusted-keys PATH]\n"
    "                                verify (SIG defaults to MANIFEST.sig), store the image,\n"
    "                                append the release to the public log\n"
    "  rollout create --release R [--hardware H] [--percent P] [--devices FILE]\n"
    "                                target the release's hardware: P percent (0 to 100, two\n"
    "                                decimals, default 100) of the devices, only those listed\n"
    "                                in FILE (one id per line) when given\n"
    "  rollout pause ID | rollout abort ID | rollout resume ID [--percent P]\n"
    "  rollout set ID --percent P\n"
    "  rollout status [ID]           one JSON line per rollout, with its offer counts\n"
    "  log verify                    recompute the release log's hash chain, check every\n"
    "                                release against it\n"
    "\n"
    "Options:\n"
    "  --pg URI             PostgreSQL connection (default $MH_PG_URI)\n"
    "  --store DIR          firmware image store (default $MH_FIRMWARE_STORE)\n"
    "  --trusted-keys PATH  a release .pub file or a directory of *.pub (default\n"
    "                       $MH_RELEASE_KEYS)\n"
    "  -h, --help           this help\n"
    "\n"
    "Output: one JSON object per line on stdout; messages on stderr.\n"
    "Exit status: 0 success, 1 refused or failed, 2 usage error.\n";

#define CMD_BIT(c) (1u << (c))
#define DB_CMDS                                                                                    \
    (CMD_BIT(UPG_REL_CMD_PUBLISH) | CMD_BIT(UPG_REL_CMD_ROLLOUT_CREATE) |                          \
     CMD_BIT(UPG_REL_CMD_ROLLOUT_PAUSE) | CMD_BIT(UPG_REL_CMD_ROLLOUT_RESUME) |                    \
     CMD_BIT(UPG_REL_CMD_ROLLOUT_ABORT) | CMD_BIT(UPG_REL_CMD_ROLLOUT_SET) |                       \
     CMD_BIT(UPG_REL_CMD_ROLLOUT_STATUS) | CMD_BIT(UPG_REL_CMD_LOG_VERIFY))

typedef enum opt_id {
    OPT_PG,
    OPT_STORE,
    OPT_TRUSTED_KEYS,
    OPT_OUT,
    OPT_KEY,
    OPT_IMAGE,
    OPT_VERSION,
    OPT_HARDWARE,
    OPT_EXPIRES,
    OPT_NOTES,
    OPT_NOTES_FILE,
    OPT_SIGNATURE,
    OPT_RELEASE,
    OPT_PERCENT,
    OPT_DEVICES,
} opt_id_t;

/* Every option of meterhub-release takes a value. */
static const mh_opt_def_t opts[] = {
    {"--pg", OPT_PG, true, DB_CMDS},
    {"--store", OPT_STORE, true, CMD_BIT(UPG_REL_CMD_PUBLISH)},
    {"--trusted-keys", OPT_TRUSTED_KEYS, true, CMD_BIT(UPG_REL_CMD_PUBLISH)},
    {"--out", OPT_OUT, true, CMD_BIT(UPG_REL_CMD_KEYGEN) | CMD_BIT(UPG_REL_CMD_SIGN)},
    {"--key", OPT_KEY, true, CMD_BIT(UPG_REL_CMD_SIGN)},
    {"--image", OPT_IMAGE, true, CMD_BIT(UPG_REL_CMD_SIGN)},
    {"--version", OPT_VERSION, true, CMD_BIT(UPG_REL_CMD_SIGN)},
    {"--hardware", OPT_HARDWARE, true,
     CMD_BIT(UPG_REL_CMD_SIGN) | CMD_BIT(UPG_REL_CMD_ROLLOUT_CREATE)},
    {"--expires", OPT_EXPIRES, true, CMD_BIT(UPG_REL_CMD_SIGN)},
    {"--notes", OPT_NOTES, true, CMD_BIT(UPG_REL_CMD_SIGN)},
    {"--notes-file", OPT_NOTES_FILE, true, CMD_BIT(UPG_REL_CMD_SIGN)},
    {"--signature", OPT_SIGNATURE, true, CMD_BIT(UPG_REL_CMD_PUBLISH)},
    {"--release", OPT_RELEASE, true, CMD_BIT(UPG_REL_CMD_ROLLOUT_CREATE)},
    {"--percent", OPT_PERCENT, true,
     CMD_BIT(UPG_REL_CMD_ROLLOUT_CREATE) | CMD_BIT(UPG_REL_CMD_ROLLOUT_RESUME) |
         CMD_BIT(UPG_REL_CMD_ROLLOUT_SET)},
    {"--devices", OPT_DEVICES, true, CMD_BIT(UPG_REL_CMD_ROLLOUT_CREATE)},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

int upg_rel_parse_percent(const char *s, int *bp)
{
    size_t whole = strspn(s, "0123456789");
    int v = 0, frac = 0;

    if (whole == 0 || whole > 3)
        return -1;
    for (size_t i = 0; i < whole; i++)
        v = v * 10 + (s[i] - '0');
    const char *p = s + whole;
    if (*p == '.') {
        size_t digits = strspn(p + 1, "0123456789");
        if (digits == 0 || digits > 2)
            return -1;
        frac = (p[1] - '0') * 10 + (digits == 2 ? p[2] - '0' : 0);
        p += 1 + digits;
    }
    if (*p != '\0' || v * 100 + frac > 10000)
        return -1;
    *bp = v * 100 + frac;
    return 0;
}

int upg_rel_parse_days(const char *s, int64_t *seconds)
{
    size_t whole = strspn(s, "0123456789");
    size_t frac = 0;
    char *end = NULL;

    /* Plain decimal only: strtod would also take blanks, signs, exponents, hex, "inf". */
    if (whole == 0)
        return -1;
    if (s[whole] == '.') {
        frac = strspn(s + whole + 1, "0123456789");
        if (frac == 0)
            return -1;
    }
    if (s[whole + (frac ? frac + 1 : 0)] != '\0' || whole + frac > 15)
        return -1;
    errno = 0;
    double days = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !(days > 0) || days > UPG_REL_EXPIRES_MAX_DAYS)
        return -1;
    double secs = round(days * 86400.0);
    *seconds = secs < 1 ? 1 : (int64_t)secs;
    return 0;
}

static int parse_id(const char *s, int64_t *out)
{
    size_t digits = strspn(s, "0123456789");
    if (digits == 0 || digits > 18 || s[digits] != '\0' || s[0] == '0')
        return -1;
    *out = strtoll(s, NULL, 10);
    return 0;
}

static const char *cmd_name(upg_rel_cmd_t cmd)
{
    switch (cmd) {
    case UPG_REL_CMD_KEYGEN:
        return "keygen";
    case UPG_REL_CMD_SIGN:
        return "sign";
    case UPG_REL_CMD_PUBLISH:
        return "publish";
    case UPG_REL_CMD_ROLLOUT_CREATE:
        return "rollout create";
    case UPG_REL_CMD_ROLLOUT_PAUSE:
        return "rollout pause";
    case UPG_REL_CMD_ROLLOUT_RESUME:
        return "rollout resume";
    case UPG_REL_CMD_ROLLOUT_ABORT:
        return "rollout abort";
    case UPG_REL_CMD_ROLLOUT_SET:
        return "rollout set";
    case UPG_REL_CMD_ROLLOUT_STATUS:
        return "rollout status";
    case UPG_REL_CMD_LOG_VERIFY:
        return "log verify";
    default:
        return "help";
    }
}

static const struct {
    const char *word, *sub;
    upg_rel_cmd_t cmd;
} commands[] = {
    {"keygen", NULL, UPG_REL_CMD_KEYGEN},
    {"sign", NULL, UPG_REL_CMD_SIGN},
    {"publish", NULL, UPG_REL_CMD_PUBLISH},
    {"help", NULL, UPG_REL_CMD_HELP},
    {"rollout", "create", UPG_REL_CMD_ROLLOUT_CREATE},
    {"rollout", "pause", UPG_REL_CMD_ROLLOUT_PAUSE},
    {"rollout", "resume", UPG_REL_CMD_ROLLOUT_RESUME},
    {"rollout", "abort", UPG_REL_CMD_ROLLOUT_ABORT},
    {"rollout", "set", UPG_REL_CMD_ROLLOUT_SET},
    {"rollout", "status", UPG_REL_CMD_ROLLOUT_STATUS},
    {"log", "verify", UPG_REL_CMD_LOG_VERIFY},
};

/* Works out the command from the positional words; *used says how many it took. */
static int parse_command(const char *const *pos, size_t npos, upg_rel_cmd_t *cmd, size_t *used,
                         char *err, size_t errlen)
{
    if (npos == 0) {
        mh_errf(err, errlen, "no command given");
        return -1;
    }
    bool group = false;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(pos[0], commands[i].word) != 0)
            continue;
        if (commands[i].sub == NULL) {
            *cmd = commands[i].cmd;
            *used = 1;
            return 0;
        }
        group = true;
        if (npos > 1 && strcmp(pos[1], commands[i].sub) == 0) {
            *cmd = commands[i].cmd;
            *used = 2;
            return 0;
        }
    }
    if (group)
        mh_errf(err, errlen, "%s: expected %s, got '%s'", pos[0],
                strcmp(pos[0], "log") == 0 ? "verify"
                                           : "create, pause, resume, abort, set or status",
                npos > 1 ? pos[1] : "nothing");
    else
        mh_errf(err, errlen, "unknown command '%s'", pos[0]);
    return -1;
}

static int apply_opt(upg_rel_args_t *a, const mh_opt_seen_t *o, char *err, size_t errlen)
{
    const char *name = o->def->name;
    const char *v = o->value;
    uint32_t vk[MH_RELEASE_VERSION_PARTS];

    if (!(o->def->cmds & CMD_BIT(a->cmd))) {
        mh_errf(err, errlen, "option %s does not apply to '%s'", name, cmd_name(a->cmd));
        return -1;
    }
    if (v[0] == '\0') {
        mh_errf(err, errlen, "option %s: empty value", name);
        return -1;
    }
    switch (o->def->id) {
    case OPT_PG:
        a->pg_uri = v;
        break;
    case OPT_STORE:
        a->store = v;
        break;
    case OPT_TRUSTED_KEYS:
        a->trusted_keys = v;
        break;
    case OPT_OUT:
        a->out = v;
        break;
    case OPT_KEY:
        a->key = v;
        break;
    case OPT_IMAGE:
        a->image = v;
        break;
    case OPT_VERSION:
        if (mh_release_version_parse(v, vk) != 0) {
            mh_errf(err, errlen,
                    "--version: expected 1 to 4 dot-separated numbers of 1 to 9 digits, got "
                    "'%.60s'",
                    v);
            return -1;
        }
        a->version = v;
        break;
    case OPT_HARDWARE:
        a->hardware = v;
        break;
    case OPT_EXPIRES:
        if (upg_rel_parse_days(v, &a->expires_s) != 0) {
            mh_errf(err, errlen,
                    "--expires: expected days, more than 0 and at most %.0f, got '%.60s'",
                    UPG_REL_EXPIRES_MAX_DAYS, v);
            return -1;
        }
        break;
    case OPT_NOTES:
        if (strlen(v) > MH_RELEASE_MAX_NOTES) {
            mh_errf(err, errlen, "--notes: longer than %d bytes", MH_RELEASE_MAX_NOTES);
            return -1;
        }
        a->notes = v;
        break;
    case OPT_NOTES_FILE:
        a->notes_file = v;
        break;
    case OPT_SIGNATURE:
        a->signature = v;
        break;
    case OPT_RELEASE:
        if (strnlen(v, MH_RELEASE_ID_LEN + 1) != MH_RELEASE_ID_LEN ||
            !mh_id_valid_n(v, MH_RELEASE_ID_LEN)) {
            mh_errf(err, errlen, "--release: expected a release id (32 lowercase hex), got '%.60s'",
                    v);
            return -1;
        }
        a->release = v;
        break;
    case OPT_PERCENT:
        if (upg_rel_parse_percent(v, &a->percent_bp) != 0) {
            mh_errf(err, errlen,
                    "--percent: expected 0 to 100 with at most two decimals, got '%.60s'", v);
            return -1;
        }
        a->has_percent = true;
        break;
    case OPT_DEVICES:
        a->devices_file = v;
        break;
    }
    return 0;
}

/* What a command needs once its options are applied. */
static int check_command(upg_rel_args_t *a, const char *const *rest, size_t nrest, char *err,
                         size_t errlen)
{
    const char *cmd = cmd_name(a->cmd);
    size_t min = 0, max = 0;

    switch (a->cmd) {
    case UPG_REL_CMD_PUBLISH:
        min = max = 2;
        break;
    case UPG_REL_CMD_ROLLOUT_PAUSE:
    case UPG_REL_CMD_ROLLOUT_RESUME:
    case UPG_REL_CMD_ROLLOUT_ABORT:
    case UPG_REL_CMD_ROLLOUT_SET:
        min = max = 1;
        break;
    case UPG_REL_CMD_ROLLOUT_STATUS:
        max = 1;
        break;
    default:
        break;
    }
    if (nrest < min) {
        mh_errf(err, errlen, "%s: needs %s", cmd,
                a->cmd == UPG_REL_CMD_PUBLISH ? "MANIFEST and IMAGE" : "a rollout ID");
        return -1;
    }
    if (nrest > max) {
        mh_errf(err, errlen, "%s: unexpected argument '%.60s'", cmd, rest[max]);
        return -1;
    }
    if (a->cmd == UPG_REL_CMD_PUBLISH) {
        a->manifest = rest[0];
        a->image = rest[1];
    } else if (nrest == 1) {
        if (parse_id(rest[0], &a->id) != 0) {
            mh_errf(err, errlen, "%s: expected a rollout ID (a positive integer), got '%.60s'", cmd,
                    rest[0]);
            return -1;
        }
        a->has_id = true;
    }

    switch (a->cmd) {
    case UPG_REL_CMD_KEYGEN:
        if (a->out == NULL) {
            mh_errf(err, errlen, "keygen: needs --out DIR");
            return -1;
        }
        break;
    case UPG_REL_CMD_SIGN:
        if (a->key == NULL || a->image == NULL || a->version == NULL || a->hardware == NULL) {
            mh_errf(err, errlen, "sign: needs --key, --image, --version and --hardware");
            return -1;
        }
        if (a->notes != NULL && a->notes_file != NULL) {
            mh_errf(err, errlen, "sign: give --notes or --notes-file, not both");
            return -1;
        }
        break;
    case UPG_REL_CMD_ROLLOUT_CREATE:
        if (a->release == NULL) {
            mh_errf(err, errlen, "rollout create: needs --release R");
            return -1;
        }
        if (!a->has_percent)
            a->percent_bp = 10000;
        break;
    case UPG_REL_CMD_ROLLOUT_SET:
        if (!a->has_percent) {
            mh_errf(err, errlen, "rollout set: needs --percent P");
            return -1;
        }
        break;
    default:
        break;
    }
    if (a->hardware != NULL && !mh_hardware_valid(a->hardware)) {
        mh_errf(err, errlen, "--hardware: expected [a-z0-9][a-z0-9._-]{0,31}, got '%.60s'",
                a->hardware);
        return -1;
    }
    return 0;
}

int upg_rel_args_parse(int argc, char **argv, upg_rel_args_t *out, char *err, size_t errlen)
{
    int rc = -1;
    mh_argv_t av;
    size_t used = 0;

    memset(out, 0, sizeof(*out));
    out->expires_s = (int64_t)(UPG_REL_EXPIRES_DEFAULT_DAYS * 86400);
    if (mh_argv_split(argc, argv, opts, NOPTS, &av, err, errlen) != 0)
        goto fail;
    if (av.help) {
        out->cmd = UPG_REL_CMD_HELP;
        rc = 0;
        goto fail;
    }
    const char *const *pos = av.pos;
    size_t npos = av.npos;

    if (parse_command(pos, npos, &out->cmd, &used, err, errlen) != 0)
        goto fail;
    if (out->cmd == UPG_REL_CMD_HELP) {
        rc = 0;
        goto fail;
    }
    /* Options in command line order: the last of a repeated option wins. */
    for (size_t i = 0; i < av.nseen; i++)
        if (apply_opt(out, &av.seen[i], err, errlen) != 0)
            goto fail;
    if (check_command(out, pos + used, npos - used, err, errlen) != 0)
        goto fail;
    rc = 0;
fail:
    mh_argv_dispose(&av);
    return rc;
}
