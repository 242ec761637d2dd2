#include "admin_internal.h"

#include "common/log.h"
#include "common/alloc.h"
#include "common/argv.h"
#include "common/provision.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char api_admin_usage[] =
    "usage: meterhub-admin [global options] COMMAND [options]\n"
    "\n"
    "Commands:\n"
    "  migrate                       apply the SQL migrations not yet applied\n"
    "  account add NAME [--if-missing] [--password-file F | --generate-password]\n"
    "                                create an account; prints {\"account\", \"id\"}; with\n"
    "                                --if-missing an existing account is left unchanged\n"
    "  account passwd NAME (--password-file F | --generate-password)\n"
    "                                set or replace an account's password\n"
    "  device add --account A [--sensors N] [--out DIR] [--count N] [--days D]\n"
    "             [--not-before-days-ago B] [--hardware H]\n"
    "                                create device(s) with N sensors each (default 1) and\n"
    "                                write their key and certificate into DIR (default: the\n"
    "                                current directory; DIR/<device id>/ when --count > 1);\n"
    "                                the account is created if needed; H: the devices'\n"
    "                                hardware (default flm02), [a-z0-9][a-z0-9._-]{0,31}\n"
    "  device revoke ID              revoke a device's certificate\n"
    "  device list [--account A]     one JSON object per device\n"
    "  readings SENSOR-ID [--from T] [--to T]\n"
    "                                CSV ts,value, oldest first; T in Unix seconds, both\n"
    "                                bounds inclusive\n"
    "\n"
    "Global options (before or after the command):\n"
    "  --pg URI        PostgreSQL connection (default $MH_PG_URI)\n"
    "  --pki DIR       PKI directory holding device-ca.key/.crt, ca.crt (default $MH_PKI_DIR)\n"
    "  --sql-dir DIR   migrations directory (default $MH_SQL_DIR, else the build's default)\n"
    "  -h, --help      this help\n"
    "\n"
    "Passwords (account add, account passwd):\n"
    "  --password-file F     the first line of F (\"-\": standard input); F must not be\n"
    "                        accessible by group or others; 10 to 1024 bytes, no control\n"
    "                        characters\n"
    "  --generate-password   a random password, printed once on stdout as \"password: PW\"\n"
    "Only the password's scrypt hash is stored; it is never printed or logged.\n"
    "\n"
    "Exit status: 0 success, 1 operational error, 2 usage error.\n";

/* Which commands an option applies to (bit per api_admin_cmd_t). */
#define CMD_BIT(c) (1u << (c))
#define ALL_CMDS 0xffffffffu

typedef enum opt_id {
    OPT_PG,
    OPT_PKI,
    OPT_SQL_DIR,
    OPT_IF_MISSING,
    OPT_PASSWORD_FILE,
    OPT_GENERATE_PASSWORD,
    OPT_ACCOUNT,
    OPT_SENSORS,
    OPT_OUT,
    OPT_COUNT,
    OPT_DAYS,
    OPT_NOT_BEFORE,
    OPT_HARDWARE,
    OPT_FROM,
    OPT_TO,
} opt_id_t;

static const mh_opt_def_t opts[] = {
    {"--pg", OPT_PG, true, ALL_CMDS},
    {"--pki", OPT_PKI, true, ALL_CMDS},
    {"--sql-dir", OPT_SQL_DIR, true, ALL_CMDS},
    {"--if-missing", OPT_IF_MISSING, false, CMD_BIT(API_ADMIN_CMD_ACCOUNT_ADD)},
    {"--password-file", OPT_PASSWORD_FILE, true,
     CMD_BIT(API_ADMIN_CMD_ACCOUNT_ADD) | CMD_BIT(API_ADMIN_CMD_ACCOUNT_PASSWD)},
    {"--generate-password", OPT_GENERATE_PASSWORD, false,
     CMD_BIT(API_ADMIN_CMD_ACCOUNT_ADD) | CMD_BIT(API_ADMIN_CMD_ACCOUNT_PASSWD)},
    {"--account", OPT_ACCOUNT, true,
     CMD_BIT(API_ADMIN_CMD_DEVICE_ADD) | CMD_BIT(API_ADMIN_CMD_DEVICE_LIST)},
    {"--sensors", OPT_SENSORS, true, CMD_BIT(API_ADMIN_CMD_DEVICE_ADD)},
    {"--out", OPT_OUT, true, CMD_BIT(API_ADMIN_CMD_DEVICE_ADD)},
    {"--count", OPT_COUNT, true, CMD_BIT(API_ADMIN_CMD_DEVICE_ADD)},
    {"--days", OPT_DAYS, true, CMD_BIT(API_ADMIN_CMD_DEVICE_ADD)},
    {"--not-before-days-ago", OPT_NOT_BEFORE, true, CMD_BIT(API_ADMIN_CMD_DEVICE_ADD)},
    {"--hardware", OPT_HARDWARE, true, CMD_BIT(API_ADMIN_CMD_DEVICE_ADD)},
    {"--from", OPT_FROM, true, CMD_BIT(API_ADMIN_CMD_READINGS)},
    {"--to", OPT_TO, true, CMD_BIT(API_ADMIN_CMD_READINGS)},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static int parse_num(const char *opt, const char *s, long long min, long long max, long long *out,
                     char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    /* strtoll would also take leading blanks and a '+': only plain decimal is accepted. */
    bool plain = s[0] == '-' || (s[0] >= '0' && s[0] <= '9');
    long long v = plain ? strtoll(s, &end, 10) : 0;
    if (!plain || errno != 0 || *end != '\0' || v < min || v > max) {
        mh_errf(err, errlen, "%s: expected an integer from %lld to %lld, got '%s'", opt, min, max,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

static const char *cmd_name(api_admin_cmd_t cmd)
{
    switch (cmd) {
    case API_ADMIN_CMD_MIGRATE:
        return "migrate";
    case API_ADMIN_CMD_ACCOUNT_ADD:
        return "account add";
    case API_ADMIN_CMD_ACCOUNT_PASSWD:
        return "account passwd";
    case API_ADMIN_CMD_DEVICE_ADD:
        return "device add";
    case API_ADMIN_CMD_DEVICE_REVOKE:
        return "device revoke";
    case API_ADMIN_CMD_DEVICE_LIST:
        return "device list";
    case API_ADMIN_CMD_READINGS:
        return "readings";
    default:
        return "help";
    }
}

/* Works out the command from the positional words; *used says how many it took. */
static int parse_command(const char *const *pos, size_t npos, api_admin_cmd_t *cmd, size_t *used,
                         char *err, size_t errlen)
{
    if (npos == 0) {
        mh_errf(err, errlen, "no command given");
        return -1;
    }
    const char *w = pos[0];
    *used = 1;
    if (strcmp(w, "migrate") == 0) {
        *cmd = API_ADMIN_CMD_MIGRATE;
        return 0;
    }
    if (strcmp(w, "readings") == 0) {
        *cmd = API_ADMIN_CMD_READINGS;
        return 0;
    }
    if (strcmp(w, "help") == 0) {
        *cmd = API_ADMIN_CMD_HELP;
        return 0;
    }
    if (strcmp(w, "account") == 0 || strcmp(w, "device") == 0) {
        bool device = w[0] == 'd';
        const char *sub = npos > 1 ? pos[1] : NULL;
        *used = 2;
        if (sub != NULL && strcmp(sub, "add") == 0) {
            *cmd = device ? API_ADMIN_CMD_DEVICE_ADD : API_ADMIN_CMD_ACCOUNT_ADD;
            return 0;
        }
        if (!device && sub != NULL && strcmp(sub, "passwd") == 0) {
            *cmd = API_ADMIN_CMD_ACCOUNT_PASSWD;
            return 0;
        }
        if (device && sub != NULL && strcmp(sub, "revoke") == 0) {
            *cmd = API_ADMIN_CMD_DEVICE_REVOKE;
            return 0;
        }
        if (device && sub != NULL && strcmp(sub, "list") == 0) {
            *cmd = API_ADMIN_CMD_DEVICE_LIST;
            return 0;
        }
        mh_errf(err, errlen, "%s: expected %s, got '%s'", w,
                device ? "add, revoke or list" : "add or passwd", sub ? sub : "nothing");
        return -1;
    }
    mh_errf(err, errlen, "unknown command '%s'", w);
    return -1;
}

static int apply_opt(api_admin_args_t *a, const mh_opt_seen_t *o, char *err, size_t errlen)
{
    const char *name = o->def->name;
    long long v = 0;

    if (!(o->def->cmds & CMD_BIT(a->cmd))) {
        mh_errf(err, errlen, "option %s does not apply to '%s'", name, cmd_name(a->cmd));
        return -1;
    }
    if (o->def->has_value && o->value[0] == '\0') {
        mh_errf(err, errlen, "option %s: empty value", name);
        return -1;
    }
    switch (o->def->id) {
    case OPT_PG:
        a->pg_uri = o->value;
        break;
    case OPT_PKI:
        a->pki_dir = o->value;
        break;
    case OPT_SQL_DIR:
        a->sql_dir = o->value;
        break;
    case OPT_IF_MISSING:
        a->if_missing = true;
        break;
    case OPT_PASSWORD_FILE:
        a->password_file = o->value;
        break;
    case OPT_GENERATE_PASSWORD:
        a->generate_password = true;
        break;
    case OPT_ACCOUNT:
        a->account = o->value;
        break;
    case OPT_OUT:
        a->out_dir = o->value;
        break;
    case OPT_SENSORS:
        if (parse_num(name, o->value, 0, MH_PROV_MAX_SENSORS, &v, err, errlen) != 0)
            return -1;
        a->sensors = (long)v;
        break;
    case OPT_COUNT:
        if (parse_num(name, o->value, 1, MH_PROV_MAX_DEVICES, &v, err, errlen) != 0)
            return -1;
        a->count = (long)v;
        break;
    case OPT_DAYS:
        if (parse_num(name, o->value, 1, MH_CERT_DAYS_MAX, &v, err, errlen) != 0)
            return -1;
        a->days = (long)v;
        break;
    case OPT_NOT_BEFORE:
        if (parse_num(name, o->value, 0, MH_CERT_DAYS_MAX, &v, err, errlen) != 0)
            return -1;
        a->not_before_days_ago = (long)v;
        break;
    case OPT_HARDWARE:
        if (!mh_hardware_valid(o->value)) {
            mh_errf(err, errlen, "%s: expected [a-z0-9][a-z0-9._-]{0,31}, got '%.60s'", name,
                    o->value);
            return -1;
        }
        a->hardware = o->value;
        break;
    case OPT_FROM:
    case OPT_TO:
        if (parse_num(name, o->value, 0, API_ADMIN_TS_MAX, &v, err, errlen) != 0)
            return -1;
        if (o->def->id == OPT_FROM) {
            a->from = (int64_t)v;
            a->has_from = true;
        } else {
            a->to = (int64_t)v;
            a->has_to = true;
        }
        break;
    }
    return 0;
}

int api_admin_args_parse(int argc, char **argv, api_admin_args_t *out, char *err, size_t errlen)
{
    int rc = -1;
    mh_argv_t av;
    size_t used = 0;

    memset(out, 0, sizeof(*out));
    out->count = 1;
    out->sensors = 1;
    out->days = MH_CERT_DAYS_DEFAULT;
    if (mh_argv_split(argc, argv, opts, NOPTS, &av, err, errlen) != 0)
        goto fail;
    if (av.help) {
        out->cmd = API_ADMIN_CMD_HELP;
        rc = 0;
        goto fail;
    }
    const char *const *pos = av.pos;
    size_t npos = av.npos;

    if (parse_command(pos, npos, &out->cmd, &used, err, errlen) != 0)
        goto fail;
    if (out->cmd == API_ADMIN_CMD_HELP) {
        rc = 0;
        goto fail;
    }
    /* Options in command line order: the last of a repeated option wins. */
    for (size_t i = 0; i < av.nseen; i++)
        if (apply_opt(out, &av.seen[i], err, errlen) != 0)
            goto fail;

    size_t want = 0;
    const char *what = NULL;
    switch (out->cmd) {
    case API_ADMIN_CMD_ACCOUNT_ADD:
    case API_ADMIN_CMD_ACCOUNT_PASSWD:
        want = 1;
        what = "an account NAME";
        break;
    case API_ADMIN_CMD_DEVICE_REVOKE:
        want = 1;
        what = "a device ID";
        break;
    case API_ADMIN_CMD_READINGS:
        want = 1;
        what = "a SENSOR-ID";
        break;
    default:
        break;
    }
    if (npos - used < want) {
        mh_errf(err, errlen, "%s: needs %s", cmd_name(out->cmd), what);
        goto fail;
    }
    if (npos - used > want) {
        mh_errf(err, errlen, "%s: unexpected argument '%s'", cmd_name(out->cmd), pos[used + want]);
        goto fail;
    }
    if (want == 1) {
        if (out->cmd == API_ADMIN_CMD_ACCOUNT_ADD || out->cmd == API_ADMIN_CMD_ACCOUNT_PASSWD)
            out->name = pos[used];
        else
            out->id = pos[used];
    }
    if (out->cmd == API_ADMIN_CMD_DEVICE_ADD && out->account == NULL) {
        mh_errf(err, errlen, "device add: needs --account A");
        goto fail;
    }
    if (out->password_file != NULL && out->generate_password) {
        mh_errf(err, errlen, "%s: give --password-file or --generate-password, not both",
                cmd_name(out->cmd));
        goto fail;
    }
    if (out->cmd == API_ADMIN_CMD_ACCOUNT_PASSWD && out->password_file == NULL &&
        !out->generate_password) {
        mh_errf(err, errlen, "account passwd: needs --password-file F or --generate-password");
        goto fail;
    }
    if (out->has_from && out->has_to && out->from > out->to) {
        mh_errf(err, errlen, "readings: --from is after --to");
        goto fail;
    }
    rc = 0;
fail:
    mh_argv_dispose(&av);
    return rc;
}
