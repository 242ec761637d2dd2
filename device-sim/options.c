#include "device-sim/options.h"

#include "common/log.h"
#include "common/ids.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: meterhub-sim (--fleet DIR [--fleet-json FILE] | --provision --devices N) [options]\n"
    "\n"
    "A fleet of simulated meters posting readings and heartbeats to meterhub-ingest over\n"
    "mutual TLS. Bounded by --duration (default 10 s when neither bound is given) and\n"
    "--max-requests.\n"
    "\n"
    "fleet:\n"
    "  --fleet DIR              load devices from DIR/<device id>/{device.key,device.crt}\n"
    "                           (meterhub-admin device add --count N --out DIR); with\n"
    "                           --provision, where the new fleet's files go\n"
    "  --fleet-json FILE        meterhub-admin's output lines for that fleet (default\n"
    "                           DIR/fleet.json)\n"
    "  --provision              provision --devices N devices itself (as meterhub-admin\n"
    "                           device add --count N); with --fleet, also writes DIR/fleet.json\n"
    "  --account NAME           account of a provisioned fleet (default sim)\n"
    "  --pki DIR                PKI directory with the device CA (default $MH_PKI_DIR)\n"
    "  --devices N              devices to simulate (default: the whole loaded fleet)\n"
    "  --sensors-per-device N   sensors of each provisioned device (default 4)\n"
    "\n"
    "behaviour:\n"
    "  --scenario NAME          steady (default), storm, mixed-bad, ramp or upgrade\n"
    "                           storm: as after a power cut, each device starts with the\n"
    "                           readings of the last --outage seconds, then every device\n"
    "                           posts its backlog at once (closed loop, batches of --batch)\n"
    "                           and goes on as steady; reports the recovery time\n"
    "                           mixed-bad: a share of the devices misbehave, by kind in\n"
    "                           turn: a certificate from another CA, revoked (revoked in\n"
    "                           PostgreSQL through --pg before the run: use a fleet made\n"
    "                           for it), another device's sensor, malformed bodies, a\n"
    "                           clock a day ahead; each refusal is checked (exit 1 if one\n"
    "                           is not the expected one, or a good device got an answer\n"
    "                           other than 2xx, 429, 503); --verify covers the good ones\n"
    "                           ramp: --ramp-start devices, --ramp-step more every\n"
    "                           --ramp-every seconds, until a step's p99 exceeds\n"
    "                           --ramp-p99-ms or its errors (non-2xx, no answer) exceed 1%,\n"
    "                           or every device runs; reports each step and the knee (the\n"
    "                           last step within bounds). Without --duration or\n"
    "                           --max-requests it lasts as long as the ramp\n"
    "                           upgrade: a firmware campaign (needs --expect-consent):\n"
    "                           heartbeats every 5 s unless --heartbeat-every says\n"
    "                           otherwise; ends once every meter with the flag on and\n"
    "                           consent has reported an outcome the service acknowledged,\n"
    "                           or at --duration (default 120 s); exit 1 if any meter\n"
    "                           without both was offered or served an image, or an\n"
    "                           expected meter has no outcome\n"
    "  --outage S               storm: seconds of backlog (default 3600)\n"
    "  --bad-fraction F         mixed-bad: share of misbehaving devices, 0..1 (default\n"
    "                           0.1; at least one device stays good)\n"
    "  --ramp-start N           ramp: devices of the first step (default 10% of --devices)\n"
    "  --ramp-step N            ramp: devices added per step (default 10% of --devices)\n"
    "  --ramp-every S           ramp: seconds per step (default 2)\n"
    "  --ramp-p99-ms MS         ramp: p99 bound of a step (default 50)\n"
    "  --interval S             seconds between readings (default 60)\n"
    "  --post-every S           seconds between posts of a device (default 60); 0: closed\n"
    "                           loop, the next post as soon as the previous one is answered,\n"
    "                           simulated time from now - backfill, never beyond now\n"
    "  --batch N                most readings per sensor per post (default 100)\n"
    "  --backfill-days D        closed loop: start of simulated time (default 7)\n"
    "  --heartbeat-every S      seconds between heartbeats (default 300; 0: none)\n"
    "  --buffer N               most readings kept per sensor (default 10000)\n"
    "  --connections MODE       keepalive (default), reconnect or resume\n"
    "  --seed N                 seed of the profiles and jitter (default 1)\n"
    "\n"
    "firmware (docs/upgrade.md, \"The careful meter\"):\n"
    "  --firmware-version V     the version the meters run (default 1.0.0)\n"
    "  --hardware H             their hardware (default flm02)\n"
    "  --remote-upgrade F       share of meters whose own configuration allows remote\n"
    "                           upgrades, 0..1 (default 0): meter d has it on when the\n"
    "                           first 4 bytes of SHA-256(\"remote_upgrade:\" d), big-endian,\n"
    "                           modulo 10000 are below F x 10000\n"
    "  --release-key FILE       the release public key the meters pin (PEM); required\n"
    "                           with --remote-upgrade above 0\n"
    "  --release-log SRC        the public release log: the https:// URL of meterhub-api's\n"
    "                           GET /v1/firmware (fetched again when an offer names a\n"
    "                           later entry) or a saved answer of it; required with\n"
    "                           --remote-upgrade above 0\n"
    "  --api-ca FILE            CA that verifies that URL (default: --ca)\n"
    "  --expect-consent FILE    device ids whose owners consented, one per line (# and\n"
    "                           blank lines ignored): an offer to, or an image served to,\n"
    "                           any other meter fails the run\n"
    "  --download-drop-after N  fault: each meter cuts its first download after N bytes,\n"
    "                           then resumes it with Range\n"
    "\n"
    "bounds and execution:\n"
    "  --duration S             seconds of load (fractions allowed)\n"
    "  --warmup S               leave the latencies of the first S seconds out of the\n"
    "                           histogram (first connections and handshakes); counted\n"
    "                           otherwise as usual (default 0)\n"
    "  --max-requests N         stop after N requests\n"
    "  --timeout S              per request, connection included (default 10)\n"
    "  --threads N              event loops (default one per core)\n"
    "\n"
    "target:\n"
    "  --target URL             https://host:port of ingest (default $MH_INGEST_URL);\n"
    "                           a warning when it is not a loopback address\n"
    "  --ca FILE                CA that verifies ingest (default $MH_CA_CERT)\n"
    "  --pg URI                 PostgreSQL admin URI, for --provision and --verify\n"
    "                           (default $MH_PG_URI)\n"
    "\n"
    "output:\n"
    "  --verify                 after the run, check that every acknowledged reading is\n"
    "                           stored exactly once and nothing else (exit 1 if not)\n"
    "  --verify-timeout S       how long to wait for the writer (default 60)\n"
    "  --json FILE              write the figures as JSON\n"
    "  --quiet                  no progress line\n"
    "  --log-level LEVEL        debug, info, warn (default), error\n"
    "\n"
    "exit status: 0 run completed (and verified); 1 verification failed, no request\n"
    "succeeded, a retry ignored Retry-After or changed its batch, mixed-bad saw an\n"
    "unexpected answer, the double opt-in did not hold, an upgrade campaign did not\n"
    "finish, or a run-time error; 2 usage error.\n";

const char *sim_options_usage(void)
{
    return usage_text;
}

const char *sim_scenario_name(sim_scenario_t scenario)
{
    switch (scenario) {
    case SIM_SCENARIO_STEADY:
        return "steady";
    case SIM_SCENARIO_STORM:
        return "storm";
    case SIM_SCENARIO_MIXED_BAD:
        return "mixed-bad";
    case SIM_SCENARIO_RAMP:
        return "ramp";
    case SIM_SCENARIO_UPGRADE:
        return "upgrade";
    }
    return "?";
}

const char *sim_conn_mode_name(sim_conn_mode_t mode)
{
    switch (mode) {
    case SIM_CONN_KEEPALIVE:
        return "keepalive";
    case SIM_CONN_RECONNECT:
        return "reconnect";
    case SIM_CONN_RESUME:
        return "resume";
    }
    return "?";
}

static int parse_u64(const char *opt, const char *s, uint64_t min, uint64_t max, uint64_t *out,
                     char *err, size_t errlen)
{
    char *end = NULL;
    /* strtoull accepts a sign and wraps negatives around: refuse anything but digits. */
    if (s[0] < '0' || s[0] > '9')
        goto fail;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        goto fail;
    *out = v;
    return 0;
fail:
    mh_errf(err, errlen, "%s: '%.40s' is not an integer in %llu..%llu", opt, s,
            (unsigned long long)min, (unsigned long long)max);
    return -1;
}

static int parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *out,
                     char *err, size_t errlen)
{
    uint64_t v;
    if (parse_u64(opt, s, min, max, &v, err, errlen) != 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* A number > 0 and at most a year's worth of seconds; unit names it in the message. */
static int parse_positive(const char *opt, const char *s, const char *unit, double *out, char *err,
                          size_t errlen)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    /* Written this way round so that NaN fails too. */
    if (errno != 0 || end == s || *end != '\0' || !(v > 0 && v <= 86400.0 * 365)) {
        mh_errf(err, errlen, "%s: '%.40s' is not a number of %s > 0", opt, s, unit);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_seconds(const char *opt, const char *s, double *out, char *err, size_t errlen)
{
    return parse_positive(opt, s, "seconds", out, err, errlen);
}

static int parse_fraction(const char *opt, const char *s, double *out, char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    /* Written this way round so that NaN fails too. */
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0 && v <= 1)) {
        mh_errf(err, errlen, "%s: '%.40s' is not a number in 0..1", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* 1 to max printable ASCII characters. */
static bool printable(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

static const char *env_or_null(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static void set_defaults(sim_options_t *o)
{
    memset(o, 0, sizeof(*o));
    o->sensors_per_device = 4;
    o->interval_s = 60;
    o->post_every_s = 60;
    o->batch = 100;
    o->backfill_days = 7;
    o->heartbeat_every_s = 300;
    o->buffer = 10000;
    o->timeout_s = 10;
    o->verify_timeout_s = 60;
    o->scenario = SIM_SCENARIO_STEADY;
    o->outage_s = 3600;
    o->bad_fraction = 0.1;
    o->ramp_every_s = 2;
    o->ramp_p99_ms = 50;
    o->conn_mode = SIM_CONN_KEEPALIVE;
    o->seed = 1;
    o->account = "sim";
    o->log_level = "warn";
    o->pki_dir = env_or_null("MH_PKI_DIR");
    o->target = env_or_null("MH_INGEST_URL");
    o->ca_file = env_or_null("MH_CA_CERT");
    o->pg_uri = env_or_null("MH_PG_URI");
    o->firmware_version = "1.0.0";
    o->hardware = "flm02";
}

/* Options that take a value; the flags are handled separately. */
typedef enum opt_id {
    OPT_DEVICES,
    OPT_SENSORS,
    OPT_INTERVAL,
    OPT_POST_EVERY,
    OPT_BATCH,
    OPT_BACKFILL,
    OPT_HEARTBEAT,
    OPT_BUFFER,
    OPT_TIMEOUT,
    OPT_VERIFY_TIMEOUT,
    OPT_SCENARIO,
    OPT_OUTAGE,
    OPT_BAD_FRACTION,
    OPT_RAMP_START,
    OPT_RAMP_STEP,
    OPT_RAMP_EVERY,
    OPT_RAMP_P99,
    OPT_DURATION,
    OPT_WARMUP,
    OPT_MAX_REQUESTS,
    OPT_CONNECTIONS,
    OPT_THREADS,
    OPT_JSON,
    OPT_SEED,
    OPT_FLEET,
    OPT_FLEET_JSON,
    OPT_ACCOUNT,
    OPT_PKI,
    OPT_TARGET,
    OPT_CA,
    OPT_PG,
    OPT_LOG_LEVEL,
    OPT_FIRMWARE_VERSION,
    OPT_HARDWARE,
    OPT_REMOTE_UPGRADE,
    OPT_RELEASE_KEY,
    OPT_RELEASE_LOG,
    OPT_API_CA,
    OPT_EXPECT_CONSENT,
    OPT_DOWNLOAD_DROP_AFTER,
} opt_id_t;

static const struct {
    const char *name;
    opt_id_t id;
} value_opts[] = {
    {"--account", OPT_ACCOUNT},
    {"--api-ca", OPT_API_CA},
    {"--backfill-days", OPT_BACKFILL},
    {"--bad-fraction", OPT_BAD_FRACTION},
    {"--batch", OPT_BATCH},
    {"--buffer", OPT_BUFFER},
    {"--ca", OPT_CA},
    {"--connections", OPT_CONNECTIONS},
    {"--devices", OPT_DEVICES},
    {"--download-drop-after", OPT_DOWNLOAD_DROP_AFTER},
    {"--duration", OPT_DURATION},
    {"--expect-consent", OPT_EXPECT_CONSENT},
    {"--firmware-version", OPT_FIRMWARE_VERSION},
    {"--fleet", OPT_FLEET},
    {"--fleet-json", OPT_FLEET_JSON},
    {"--hardware", OPT_HARDWARE},
    {"--heartbeat-every", OPT_HEARTBEAT},
    {"--interval", OPT_INTERVAL},
    {"--json", OPT_JSON},
    {"--log-level", OPT_LOG_LEVEL},
    {"--max-requests", OPT_MAX_REQUESTS},
    {"--outage", OPT_OUTAGE},
    {"--pg", OPT_PG},
    {"--pki", OPT_PKI},
    {"--post-every", OPT_POST_EVERY},
    {"--ramp-every", OPT_RAMP_EVERY},
    {"--ramp-p99-ms", OPT_RAMP_P99},
    {"--ramp-start", OPT_RAMP_START},
    {"--ramp-step", OPT_RAMP_STEP},
    {"--release-key", OPT_RELEASE_KEY},
    {"--release-log", OPT_RELEASE_LOG},
    {"--remote-upgrade", OPT_REMOTE_UPGRADE},
    {"--scenario", OPT_SCENARIO},
    {"--seed", OPT_SEED},
    {"--sensors-per-device", OPT_SENSORS},
    {"--target", OPT_TARGET},
    {"--threads", OPT_THREADS},
    {"--timeout", OPT_TIMEOUT},
    {"--verify-timeout", OPT_VERIFY_TIMEOUT},
    {"--warmup", OPT_WARMUP},
};

static int apply(sim_options_t *o, opt_id_t id, const char *name, const char *v, char *err,
                 size_t errlen)
{
    switch (id) {
    case OPT_DEVICES:
        return parse_u32(name, v, 1, SIM_MAX_DEVICES, &o->devices, err, errlen);
    case OPT_SENSORS:
        return parse_u32(name, v, 1, SIM_MAX_SENSORS, &o->sensors_per_device, err, errlen);
    case OPT_INTERVAL:
        return parse_u32(name, v, 1, 86400, &o->interval_s, err, errlen);
    case OPT_POST_EVERY:
        return parse_u32(name, v, 0, 86400, &o->post_every_s, err, errlen);
    case OPT_BATCH:
        return parse_u32(name, v, 1, SIM_MAX_BATCH, &o->batch, err, errlen);
    case OPT_BACKFILL:
        return parse_u32(name, v, 0, 3650, &o->backfill_days, err, errlen);
    case OPT_HEARTBEAT:
        o->heartbeat_set = true;
        return parse_u32(name, v, 0, 86400, &o->heartbeat_every_s, err, errlen);
    case OPT_BUFFER:
        return parse_u32(name, v, 1, 10000000, &o->buffer, err, errlen);
    case OPT_TIMEOUT:
        return parse_u32(name, v, 1, 3600, &o->timeout_s, err, errlen);
    case OPT_VERIFY_TIMEOUT:
        return parse_u32(name, v, 1, 3600, &o->verify_timeout_s, err, errlen);
    case OPT_OUTAGE:
        /* Bounded by ingest's default max_age_s (a year): older readings would be refused. */
        return parse_u32(name, v, 1, 365u * 86400u, &o->outage_s, err, errlen);
    case OPT_RAMP_START:
        return parse_u32(name, v, 1, SIM_MAX_DEVICES, &o->ramp_start, err, errlen);
    case OPT_RAMP_STEP:
        return parse_u32(name, v, 1, SIM_MAX_DEVICES, &o->ramp_step, err, errlen);
    case OPT_RAMP_EVERY:
        return parse_seconds(name, v, &o->ramp_every_s, err, errlen);
    case OPT_RAMP_P99:
        return parse_positive(name, v, "milliseconds", &o->ramp_p99_ms, err, errlen);
    case OPT_BAD_FRACTION:
        return parse_fraction(name, v, &o->bad_fraction, err, errlen);
    case OPT_DURATION:
        return parse_seconds(name, v, &o->duration_s, err, errlen);
    case OPT_WARMUP:
        return parse_seconds(name, v, &o->warmup_s, err, errlen);
    case OPT_MAX_REQUESTS:
        return parse_u64(name, v, 1, UINT64_MAX, &o->max_requests, err, errlen);
    case OPT_THREADS:
        return parse_u32(name, v, 1, SIM_MAX_THREADS, &o->threads, err, errlen);
    case OPT_SEED:
        return parse_u64(name, v, 0, UINT64_MAX, &o->seed, err, errlen);
    case OPT_SCENARIO:
        if (strcmp(v, "steady") == 0) {
            o->scenario = SIM_SCENARIO_STEADY;
            return 0;
        }
        if (strcmp(v, "storm") == 0) {
            o->scenario = SIM_SCENARIO_STORM;
            return 0;
        }
        if (strcmp(v, "mixed-bad") == 0) {
            o->scenario = SIM_SCENARIO_MIXED_BAD;
            return 0;
        }
        if (strcmp(v, "ramp") == 0) {
            o->scenario = SIM_SCENARIO_RAMP;
            return 0;
        }
        if (strcmp(v, "upgrade") == 0) {
            o->scenario = SIM_SCENARIO_UPGRADE;
            return 0;
        }
        mh_errf(err, errlen, "--scenario: unknown scenario '%.40s'", v);
        return -1;
    case OPT_CONNECTIONS:
        if (strcmp(v, "keepalive") == 0)
            o->conn_mode = SIM_CONN_KEEPALIVE;
        else if (strcmp(v, "reconnect") == 0)
            o->conn_mode = SIM_CONN_RECONNECT;
        else if (strcmp(v, "resume") == 0)
            o->conn_mode = SIM_CONN_RESUME;
        else {
            mh_errf(err, errlen, "--connections: '%.40s' is not keepalive, reconnect or resume", v);
            return -1;
        }
        return 0;
    case OPT_JSON:
        o->json_path = v;
        return 0;
    case OPT_FLEET:
        o->fleet_dir = v;
        return 0;
    case OPT_FLEET_JSON:
        o->fleet_json = v;
        return 0;
    case OPT_ACCOUNT:
        o->account = v;
        return 0;
    case OPT_PKI:
        o->pki_dir = v;
        return 0;
    case OPT_TARGET:
        o->target = v;
        return 0;
    case OPT_CA:
        o->ca_file = v;
        return 0;
    case OPT_PG:
        o->pg_uri = v;
        return 0;
    case OPT_LOG_LEVEL:
        o->log_level = v;
        return 0;
    case OPT_FIRMWARE_VERSION:
        if (!printable(v, SIM_MAX_FIRMWARE_VERSION)) {
            mh_errf(err, errlen, "%s: '%.40s' is not 1 to %u printable ASCII characters", name, v,
                    SIM_MAX_FIRMWARE_VERSION);
            return -1;
        }
        o->firmware_version = v;
        return 0;
    case OPT_HARDWARE:
        if (!mh_hardware_valid(v)) {
            mh_errf(err, errlen, "%s: '%.40s' is not a hardware name ([a-z0-9][a-z0-9._-]{0,31})",
                    name, v);
            return -1;
        }
        o->hardware = v;
        return 0;
    case OPT_REMOTE_UPGRADE:
        return parse_fraction(name, v, &o->remote_upgrade, err, errlen);
    case OPT_RELEASE_KEY:
        o->release_key = v;
        return 0;
    case OPT_RELEASE_LOG:
        o->release_log = v;
        return 0;
    case OPT_API_CA:
        o->api_ca = v;
        return 0;
    case OPT_EXPECT_CONSENT:
        o->expect_consent = v;
        return 0;
    case OPT_DOWNLOAD_DROP_AFTER:
        return parse_u64(name, v, 1, UINT64_C(1) << 40, &o->download_drop_after, err, errlen);
    }
    mh_errf(err, errlen, "%s: internal error", name);
    return -1;
}

/* The combination, once every option is known. */
static int check(sim_options_t *o, char *err, size_t errlen)
{
    if (o->provision && o->devices == 0) {
        mh_errf(err, errlen, "--provision needs --devices N");
        return -1;
    }
    if (!o->provision && o->fleet_dir == NULL && o->fleet_json == NULL) {
        mh_errf(err, errlen, "no fleet: give --fleet DIR or --provision --devices N");
        return -1;
    }
    if (o->provision && o->fleet_json != NULL) {
        mh_errf(err, errlen, "--fleet-json loads a fleet; it cannot be combined with --provision");
        return -1;
    }
    if (o->provision && o->pki_dir == NULL) {
        mh_errf(err, errlen, "--provision needs --pki DIR (or $MH_PKI_DIR)");
        return -1;
    }
    bool mixed_bad = o->scenario == SIM_SCENARIO_MIXED_BAD;
    if ((o->provision || o->verify || mixed_bad) && o->pg_uri == NULL) {
        mh_errf(err, errlen, "%s needs --pg URI (or $MH_PG_URI)",
                o->provision ? "--provision"
                : o->verify  ? "--verify"
                             : "--scenario mixed-bad");
        return -1;
    }
    if (o->target == NULL) {
        mh_errf(err, errlen, "no target: give --target URL (or $MH_INGEST_URL)");
        return -1;
    }
    if (strncmp(o->target, "https://", 8) != 0) {
        mh_errf(err, errlen, "--target: '%.80s' is not an https:// URL", o->target);
        return -1;
    }
    if (o->ca_file == NULL) {
        mh_errf(err, errlen, "no CA: give --ca FILE (or $MH_CA_CERT)");
        return -1;
    }
    if (o->warmup_s > 0 && o->duration_s > 0 && o->warmup_s >= o->duration_s) {
        mh_errf(err, errlen, "--warmup must be shorter than --duration");
        return -1;
    }
    /* A meter that may take offers must be able to check them: fail closed. */
    if (o->remote_upgrade > 0 && (o->release_key == NULL || o->release_log == NULL)) {
        mh_errf(err, errlen,
                "--remote-upgrade needs --release-key FILE and --release-log SRC: "
                "a meter never installs what it cannot check");
        return -1;
    }
    if (o->release_log != NULL && strncmp(o->release_log, "http://", 7) == 0) {
        mh_errf(err, errlen, "--release-log: the API is reached over https:// only");
        return -1;
    }
    if (o->scenario == SIM_SCENARIO_UPGRADE && o->expect_consent == NULL) {
        mh_errf(err, errlen, "--scenario upgrade needs --expect-consent FILE");
        return -1;
    }
    if (o->api_ca == NULL)
        o->api_ca = o->ca_file;
    if (o->scenario == SIM_SCENARIO_UPGRADE) {
        if (!o->heartbeat_set)
            o->heartbeat_every_s = SIM_UPGRADE_HEARTBEAT_S;
        if (o->duration_s == 0 && o->max_requests == 0)
            o->duration_s = SIM_UPGRADE_DURATION_S;
    }
    /* A ramp is bounded by the fleet: it ends at the latest once every device runs. */
    if (o->duration_s == 0 && o->max_requests == 0 && o->scenario != SIM_SCENARIO_RAMP)
        o->duration_s = SIM_DEFAULT_DURATION_S;
    return 0;
}

sim_parse_result_t sim_options_parse(int argc, char **argv, sim_options_t *out, char *err,
                                     size_t errlen)
{
    set_defaults(out);
    err[0] = '\0';
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return SIM_PARSE_HELP;
        if (strcmp(a, "--verify") == 0) {
            out->verify = true;
            continue;
        }
        if (strcmp(a, "--provision") == 0) {
            out->provision = true;
            continue;
        }
        if (strcmp(a, "--quiet") == 0) {
            out->quiet = true;
            continue;
        }
        size_t k = 0, n = sizeof(value_opts) / sizeof(value_opts[0]);
        while (k < n && strcmp(a, value_opts[k].name) != 0)
            k++;
        if (k == n) {
            mh_errf(err, errlen, "unknown argument '%.80s' (--help lists the options)", a);
            return SIM_PARSE_ERROR;
        }
        if (i + 1 >= argc) {
            mh_errf(err, errlen, "%s needs a value", a);
            return SIM_PARSE_ERROR;
        }
        if (apply(out, value_opts[k].id, a, argv[++i], err, errlen) != 0)
            return SIM_PARSE_ERROR;
    }
    return check(out, err, errlen) == 0 ? SIM_PARSE_OK : SIM_PARSE_ERROR;
}
