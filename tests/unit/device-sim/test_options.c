/* Unit tests of meterhub-sim's command line: defaults, environment, bounds, combinations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "device-sim/options.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int clear_env(void **state)
{
    (void)state;
    unsetenv("MH_INGEST_URL");
    unsetenv("MH_CA_CERT");
    unsetenv("MH_PG_URI");
    unsetenv("MH_PKI_DIR");
    return 0;
}

static sim_parse_result_t parse(int argc, char **argv, sim_options_t *o, char *err)
{
    return sim_options_parse(argc, argv, o, err, 256);
}

static void test_defaults(void **state)
{
    char *argv[] = {"sim", "--fleet", "F", "--target", "https://127.0.0.1:8443", "--ca", "ca.crt"};
    sim_options_t o;
    char err[256];
    (void)state;
    assert_int_equal(parse(ARGC(argv), argv, &o, err), SIM_PARSE_OK);
    assert_int_equal(o.sensors_per_device, 4);
    assert_int_equal(o.interval_s, 60);
    assert_int_equal(o.post_every_s, 60);
    assert_int_equal(o.heartbeat_every_s, 300);
    assert_int_equal(o.backfill_days, 7);
    assert_int_equal(o.conn_mode, SIM_CONN_KEEPALIVE);
    assert_int_equal(o.scenario, SIM_SCENARIO_STEADY);
    assert_int_equal(o.outage_s, 3600);
    assert_true(o.bad_fraction == 0.1);
    assert_int_equal(o.threads, 0);
    assert_int_equal(o.devices, 0);
    assert_string_equal(o.account, "sim");
    /* Never unbounded: without --duration or --max-requests, 10 s. */
    assert_true(o.duration_s == SIM_DEFAULT_DURATION_S);
    assert_false(o.verify);
}

static void test_environment(void **state)
{
    char *argv[] = {"sim", "--provision", "--devices", "3", "--verify"};
    sim_options_t o;
    char err[256];
    (void)state;
    setenv("MH_INGEST_URL", "https://127.0.0.1:9443", 1);
    setenv("MH_CA_CERT", "/x/ca.crt", 1);
    setenv("MH_PG_URI", "postgresql://a@127.0.0.1/b", 1);
    setenv("MH_PKI_DIR", "/x/pki", 1);
    assert_int_equal(parse(ARGC(argv), argv, &o, err), SIM_PARSE_OK);
    assert_string_equal(o.target, "https://127.0.0.1:9443");
    assert_string_equal(o.ca_file, "/x/ca.crt");
    assert_string_equal(o.pg_uri, "postgresql://a@127.0.0.1/b");
    assert_string_equal(o.pki_dir, "/x/pki");
    assert_int_equal(o.devices, 3);
    assert_true(o.provision && o.verify);
    clear_env(NULL);
}

static void test_everything(void **state)
{
    char *argv[] = {"sim",         "--fleet",
                    "F",           "--fleet-json",
                    "F/x.json",    "--target",
                    "https://h:1", "--ca",
                    "c",           "--devices",
                    "10",          "--sensors-per-device",
                    "2",           "--interval",
                    "1",           "--post-every",
                    "0",           "--batch",
                    "60",          "--backfill-days",
                    "2",           "--heartbeat-every",
                    "0",           "--connections",
                    "resume",      "--threads",
                    "3",           "--duration",
                    "2.5",         "--max-requests",
                    "1000",        "--seed",
                    "42",          "--json",
                    "out.json",    "--quiet",
                    "--timeout",   "5",
                    "--scenario",  "steady"};
    sim_options_t o;
    char err[256];
    (void)state;
    assert_int_equal(parse(ARGC(argv), argv, &o, err), SIM_PARSE_OK);
    assert_string_equal(o.fleet_dir, "F");
    assert_string_equal(o.fleet_json, "F/x.json");
    assert_int_equal(o.devices, 10);
    assert_int_equal(o.sensors_per_device, 2);
    assert_int_equal(o.interval_s, 1);
    assert_int_equal(o.post_every_s, 0);
    assert_int_equal(o.batch, 60);
    assert_int_equal(o.backfill_days, 2);
    assert_int_equal(o.heartbeat_every_s, 0);
    assert_int_equal(o.conn_mode, SIM_CONN_RESUME);
    assert_int_equal(o.threads, 3);
    assert_true(o.duration_s == 2.5);
    assert_int_equal(o.max_requests, 1000);
    assert_int_equal(o.seed, 42);
    assert_string_equal(o.json_path, "out.json");
    assert_true(o.quiet);
    assert_int_equal(o.timeout_s, 5);
}

static void test_max_requests_alone_bounds(void **state)
{
    char *argv[] = {"sim", "--fleet",        "F", "--target", "https://h", "--ca",
                    "c",   "--max-requests", "5"};
    sim_options_t o;
    char err[256];
    (void)state;
    assert_int_equal(parse(ARGC(argv), argv, &o, err), SIM_PARSE_OK);
    assert_true(o.duration_s == 0);
    assert_int_equal(o.max_requests, 5);
}

static void test_warmup(void **state)
{
    char *argv[] = {"sim", "--fleet",    "F",  "--target", "https://h", "--ca",
                    "c",   "--duration", "10", "--warmup", "2.5"};
    sim_options_t o;
    char err[256];
    (void)state;
    assert_int_equal(parse(ARGC(argv), argv, &o, err), SIM_PARSE_OK);
    assert_true(o.warmup_s == 2.5);
    assert_true(o.duration_s == 10);
}

static void test_storm(void **state)
{
    char *argv[] = {"sim", "--fleet",    "F",     "--target", "https://h", "--ca",
                    "c",   "--scenario", "storm", "--outage", "600"};
    sim_options_t o;
    char err[256];
    (void)state;
    assert_int_equal(parse(ARGC(argv), argv, &o, err), SIM_PARSE_OK);
    assert_int_equal(o.scenario, SIM_SCENARIO_STORM);
    assert_int_equal(o.outage_s, 600);
    assert_string_equal(sim_scenario_name(o.scenario), "storm");
}

static void test_mixed_bad(void **state)
{
    char *argv[] = {"sim",        "--fleet",   "F",    "--target", "https://h",      "--ca", "c",
                    "--scenario", "mixed-bad", "--pg", "p",        "--bad-fraction", "0.25"};
    sim_options_t o;
    char err[256];
    (void)state;
    assert_int_equal(parse(ARGC(argv), argv, &o, err), SIM_PARSE_OK);
    assert_int_equal(o.scenario, SIM_SCENARIO_MIXED_BAD);
    assert_true(o.bad_fraction == 0.25);
    assert_string_equal(sim_scenario_name(o.scenario), "mixed-bad");
}

static void test_ramp(void **state)
{
    char *argv[] = {"sim", "--fleet",      "F",    "--target",      "https://h", "--ca",
                    "c",   "--scenario",   "ramp", "--ramp-start",  "5",         "--ramp-step",
                    "3",   "--ramp-every", "0.5",  "--ramp-p99-ms", "20"};
    char *plain[] = {"sim",  "--fleet", "F",          "--target", "https://h",
                     "--ca", "c",       "--scenario", "ramp"};
    sim_options_t o;
    char err[256];
    (void)state;
    assert_int_equal(parse(ARGC(argv), argv, &o, err), SIM_PARSE_OK);
    assert_int_equal(o.scenario, SIM_SCENARIO_RAMP);
    assert_int_equal(o.ramp_start, 5);
    assert_int_equal(o.ramp_step, 3);
    assert_true(o.ramp_every_s == 0.5);
    assert_true(o.ramp_p99_ms == 20);
    assert_string_equal(sim_scenario_name(o.scenario), "ramp");
    /* Defaults: 10% of the devices (0 here), a step every 2 s, p99 50 ms; and no default
     * duration: the fleet bounds a ramp. */
    assert_int_equal(parse(ARGC(plain), plain, &o, err), SIM_PARSE_OK);
    assert_int_equal(o.ramp_start, 0);
    assert_int_equal(o.ramp_step, 0);
    assert_true(o.ramp_every_s == 2);
    assert_true(o.ramp_p99_ms == 50);
    assert_true(o.duration_s == 0);
}

static void test_firmware(void **state)
{
    char *argv[] = {"sim",
                    "--fleet",
                    "F",
                    "--target",
                    "https://h",
                    "--ca",
                    "c",
                    "--firmware-version",
                    "2.4.0",
                    "--hardware",
                    "flm03-b",
                    "--remote-upgrade",
                    "0.5",
                    "--release-key",
                    "k.pub",
                    "--release-log",
                    "https://127.0.0.1:8444/v1/firmware",
                    "--api-ca",
                    "api.crt",
                    "--download-drop-after",
                    "1000"};
    char *plain[] = {"sim", "--fleet", "F", "--target", "https://h", "--ca", "c"};
    sim_options_t o;
    char err[256];
    (void)state;
    /* Defaults: a comparable version (the heartbeat used to send "sim-1.0"), flm02, the flag
     * off everywhere, the API's CA the target's. */
    assert_int_equal(parse(ARGC(plain), plain, &o, err), SIM_PARSE_OK);
    assert_string_equal(o.firmware_version, "1.0.0");
    assert_string_equal(o.hardware, "flm02");
    assert_true(o.remote_upgrade == 0);
    assert_null(o.release_key);
    assert_string_equal(o.api_ca, "c");
    assert_int_equal(o.download_drop_after, 0);
    assert_int_equal(parse(ARGC(argv), argv, &o, err), SIM_PARSE_OK);
    assert_string_equal(o.firmware_version, "2.4.0");
    assert_string_equal(o.hardware, "flm03-b");
    assert_true(o.remote_upgrade == 0.5);
    assert_string_equal(o.release_key, "k.pub");
    assert_string_equal(o.release_log, "https://127.0.0.1:8444/v1/firmware");
    assert_string_equal(o.api_ca, "api.crt");
    assert_int_equal(o.download_drop_after, 1000);
}

static void test_upgrade_scenario(void **state)
{
    char *argv[] = {"sim", "--fleet",    "F",       "--target",         "https://h",  "--ca",
                    "c",   "--scenario", "upgrade", "--expect-consent", "consent.txt"};
    char *bounded[] = {
        "sim", "--fleet",    "F",       "--target",         "https://h",   "--ca",
        "c",   "--scenario", "upgrade", "--expect-consent", "consent.txt", "--heartbeat-every",
        "2",   "--duration", "30"};
    sim_options_t o;
    char err[256];
    (void)state;
    assert_int_equal(parse(ARGC(argv), argv, &o, err), SIM_PARSE_OK);
    assert_int_equal(o.scenario, SIM_SCENARIO_UPGRADE);
    assert_string_equal(sim_scenario_name(o.scenario), "upgrade");
    assert_string_equal(o.expect_consent, "consent.txt");
    /* Its own defaults: heartbeats every 5 s (they carry the offers), a 120 s bound. */
    assert_int_equal(o.heartbeat_every_s, SIM_UPGRADE_HEARTBEAT_S);
    assert_true(o.duration_s == SIM_UPGRADE_DURATION_S);
    assert_int_equal(parse(ARGC(bounded), bounded, &o, err), SIM_PARSE_OK);
    assert_int_equal(o.heartbeat_every_s, 2);
    assert_true(o.duration_s == 30);
}

static void test_help(void **state)
{
    char *argv[] = {"sim", "--help"};
    sim_options_t o;
    char err[256];
    (void)state;
    assert_int_equal(parse(ARGC(argv), argv, &o, err), SIM_PARSE_HELP);
    assert_non_null(strstr(sim_options_usage(), "storm, mixed-bad, ramp or upgrade"));
    assert_non_null(strstr(sim_options_usage(), "--release-key FILE"));
    assert_non_null(strstr(sim_options_usage(), "--download-drop-after N"));
    assert_non_null(strstr(sim_options_usage(), "--outage S"));
    assert_non_null(strstr(sim_options_usage(), "--bad-fraction F"));
    assert_non_null(strstr(sim_options_usage(), "--ramp-p99-ms MS"));
}

/* Each line: arguments after the common ones, then a fragment of the expected message. */
static void expect_error(const char *fragment, int argc, char **argv)
{
    sim_options_t o;
    char err[256];
    assert_int_equal(parse(argc, argv, &o, err), SIM_PARSE_ERROR);
    if (strstr(err, fragment) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, fragment);
}

static void test_errors(void **state)
{
    (void)state;
    {
        char *a[] = {"sim", "--fleet",      "F", "--target", "https://h", "--ca",
                     "c",   "--ramp-start", "0"};
        expect_error("--ramp-start", ARGC(a), a);
    }
    {
        char *a[] = {"sim",  "--fleet", "F",           "--target", "https://h",
                     "--ca", "c",       "--ramp-step", "x"};
        expect_error("--ramp-step", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet",      "F", "--target", "https://h", "--ca",
                     "c",   "--ramp-every", "0"};
        expect_error("--ramp-every", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet",       "F", "--target", "https://h", "--ca",
                     "c",   "--ramp-p99-ms", "-5"};
        expect_error("--ramp-p99-ms", ARGC(a), a);
    }
    {
        char *a[] = {"sim",  "--fleet", "F",          "--target", "https://h",
                     "--ca", "c",       "--scenario", "mixed-bad"};
        expect_error("--scenario mixed-bad needs --pg", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet", "F", "--target", "https://h", "--ca", "c", "--outage", "0"};
        expect_error("--outage", ARGC(a), a);
    }
    {
        char *a[] = {"sim",  "--fleet", "F",        "--target", "https://h",
                     "--ca", "c",       "--outage", "31536001"};
        expect_error("--outage", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet",        "F",  "--target", "https://h", "--ca",
                     "c",   "--bad-fraction", "1.5"};
        expect_error("--bad-fraction", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet",        "F",  "--target", "https://h", "--ca",
                     "c",   "--bad-fraction", "nan"};
        expect_error("--bad-fraction", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet",        "F",   "--target", "https://h", "--ca",
                     "c",   "--bad-fraction", "-0.1"};
        expect_error("--bad-fraction", ARGC(a), a);
    }
    {
        char *a[] = {"sim",  "--fleet", "F",          "--target", "https://h",
                     "--ca", "c",       "--scenario", "bogus"};
        expect_error("unknown scenario", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--target", "https://h", "--ca", "c"};
        expect_error("no fleet", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--provision", "--target", "https://h", "--ca",
                     "c",   "--pg",        "p",        "--pki",     "k"};
        expect_error("--devices", ARGC(a), a);
    }
    {
        char *a[] = {"sim",       "--provision", "--devices", "2",     "--target",
                     "https://h", "--ca",        "c",         "--pki", "k"};
        expect_error("--pg", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet", "F", "--target", "https://h", "--ca", "c", "--verify"};
        expect_error("--pg", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet", "F", "--ca", "c"};
        expect_error("no target", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet", "F", "--target", "http://h", "--ca", "c"};
        expect_error("https", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet", "F", "--target", "https://h"};
        expect_error("no CA", ARGC(a), a);
    }
    {
        char *a[] = {"sim",  "--fleet", "F",         "--target", "https://h",
                     "--ca", "c",       "--devices", "-1"};
        expect_error("--devices", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet", "F", "--target", "https://h", "--ca", "c", "--devices", "0"};
        expect_error("--devices", ARGC(a), a);
    }
    {
        char *a[] = {"sim",  "--fleet", "F",          "--target", "https://h",
                     "--ca", "c",       "--interval", "1x"};
        expect_error("--interval", ARGC(a), a);
    }
    {
        char *a[] = {"sim",  "--fleet", "F",          "--target", "https://h",
                     "--ca", "c",       "--duration", "nan"};
        expect_error("--duration", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet",       "F",        "--target", "https://h", "--ca",
                     "c",   "--connections", "pipelined"};
        expect_error("--connections", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet",    "F", "--target", "https://h", "--ca",
                     "c",   "--duration", "5", "--warmup", "5"};
        expect_error("--warmup must be shorter", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet", "F", "--target", "https://h", "--ca", "c", "--warmup", "-1"};
        expect_error("--warmup", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet", "F", "--target", "https://h", "--ca", "c", "--duration"};
        expect_error("needs a value", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet", "F", "--target", "https://h", "--ca", "c", "--frobnicate"};
        expect_error("unknown argument", ARGC(a), a);
    }
    {
        char *a[] = {"sim",  "--fleet", "F",         "--target", "https://h",
                     "--ca", "c",       "--threads", "100000"};
        expect_error("--threads", ARGC(a), a);
    }
    /* Firmware: a meter that may take offers must be able to check them. */
    {
        char *a[] = {"sim", "--fleet",          "F",  "--target", "https://h", "--ca",
                     "c",   "--remote-upgrade", "0.5"};
        expect_error("--release-key", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet",          "F",   "--target",      "https://h", "--ca",
                     "c",   "--remote-upgrade", "0.5", "--release-key", "k.pub"};
        expect_error("--release-log", ARGC(a), a);
    }
    {
        char *a[] = {"sim",
                     "--fleet",
                     "F",
                     "--target",
                     "https://h",
                     "--ca",
                     "c",
                     "--remote-upgrade",
                     "1",
                     "--release-key",
                     "k.pub",
                     "--release-log",
                     "http://h/v1/firmware"};
        expect_error("https://", ARGC(a), a);
    }
    {
        char *a[] = {"sim",  "--fleet", "F",          "--target", "https://h",
                     "--ca", "c",       "--scenario", "upgrade"};
        expect_error("--expect-consent", ARGC(a), a);
    }
    {
        char *a[] = {"sim", "--fleet",          "F",   "--target", "https://h", "--ca",
                     "c",   "--remote-upgrade", "1.01"};
        expect_error("--remote-upgrade", ARGC(a), a);
    }
    {
        char *a[] = {"sim",  "--fleet", "F",          "--target", "https://h",
                     "--ca", "c",       "--hardware", "FLM02"};
        expect_error("--hardware", ARGC(a), a);
    }
    {
        char *a[] = {"sim",  "--fleet", "F",          "--target", "https://h",
                     "--ca", "c",       "--hardware", "-flm"};
        expect_error("--hardware", ARGC(a), a);
    }
    {
        char *a[] = {
            "sim", "--fleet", "F", "--target", "https://h", "--ca", "c", "--firmware-version", ""};
        expect_error("--firmware-version", ARGC(a), a);
    }
    {
        char *a[] = {"sim",
                     "--fleet",
                     "F",
                     "--target",
                     "https://h",
                     "--ca",
                     "c",
                     "--firmware-version",
                     "1.0.0.1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16"};
        expect_error("--firmware-version", ARGC(a), a);
    }
    {
        char *a[] = {"sim",       "--fleet", "F", "--target",
                     "https://h", "--ca",    "c", "--download-drop-after",
                     "0"};
        expect_error("--download-drop-after", ARGC(a), a);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_environment, clear_env),
        cmocka_unit_test_setup(test_everything, clear_env),
        cmocka_unit_test_setup(test_max_requests_alone_bounds, clear_env),
        cmocka_unit_test_setup(test_warmup, clear_env),
        cmocka_unit_test_setup(test_storm, clear_env),
        cmocka_unit_test_setup(test_mixed_bad, clear_env),
        cmocka_unit_test_setup(test_ramp, clear_env),
        cmocka_unit_test_setup(test_firmware, clear_env),
        cmocka_unit_test_setup(test_upgrade_scenario, clear_env),
        cmocka_unit_test_setup(test_help, clear_env),
        cmocka_unit_test_setup(test_errors, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
