/*
 * Unit tests of meterhub-release's pure parts: the command line, percentages, days and the
 * --devices list format.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "upgrade/release/release_internal.h"

#define ID1 "0123456789abcdef0123456789abcdef"
#define ID2 "fedcba9876543210fedcba9876543210"

/* Parses a NULL-terminated list of words as argv[1..]. */
static int vparse(upg_rel_args_t *a, char *err, size_t errlen, va_list ap)
{
    char *argv[40] = {"meterhub-release"};
    int argc = 1;
    char *w;
    while ((w = va_arg(ap, char *)) != NULL && argc < 39)
        argv[argc++] = w;
    argv[argc] = NULL;
    return upg_rel_args_parse(argc, argv, a, err, errlen);
}

static void parse_ok(upg_rel_args_t *a, ...)
{
    char err[256];
    va_list ap;
    va_start(ap, a);
    int rc = vparse(a, err, sizeof(err), ap);
    va_end(ap);
    if (rc != 0)
        fail_msg("unexpected usage error: %s", err);
}

/* Expects a usage error whose message contains want. */
static void parse_fails(const char *want, ...)
{
    upg_rel_args_t a;
    char err[256];
    va_list ap;
    va_start(ap, want);
    int rc = vparse(&a, err, sizeof(err), ap);
    va_end(ap);
    if (rc != -1)
        fail_msg("accepted, wanted an error mentioning '%s'", want);
    if (strstr(err, want) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, want);
}

static void test_commands(void **state)
{
    (void)state;
    upg_rel_args_t a;

    parse_ok(&a, "keygen", "--out", "/k", NULL);
    assert_int_equal(a.cmd, UPG_REL_CMD_KEYGEN);
    assert_string_equal(a.out, "/k");

    parse_ok(&a, "sign", "--key", "k", "--image", "fw.bin", "--version", "2.4.1", "--hardware",
             "flm02", NULL);
    assert_int_equal(a.cmd, UPG_REL_CMD_SIGN);
    assert_string_equal(a.key, "k");
    assert_string_equal(a.image, "fw.bin");
    assert_string_equal(a.version, "2.4.1");
    assert_string_equal(a.hardware, "flm02");
    assert_int_equal(a.expires_s, 90 * 86400);
    assert_null(a.notes);
    assert_null(a.notes_file);
    assert_null(a.out);

    parse_ok(&a, "sign", "--key=k", "--image=f", "--version=2", "--hardware=h", "--expires",
             "0.0001", "--notes", "fixes", "--out", "/tmp/p", NULL);
    assert_int_equal(a.expires_s, 9); /* 8.64 s, rounded */
    assert_string_equal(a.notes, "fixes");
    assert_string_equal(a.out, "/tmp/p");
    parse_ok(&a, "sign", "--key=k", "--image=f", "--version=2", "--hardware=h", "--notes-file",
             "n.txt", "--expires", "1.5", NULL);
    assert_string_equal(a.notes_file, "n.txt");
    assert_int_equal(a.expires_s, 129600);

    parse_ok(&a, "publish", "r.manifest", "r.bin", NULL);
    assert_int_equal(a.cmd, UPG_REL_CMD_PUBLISH);
    assert_string_equal(a.manifest, "r.manifest");
    assert_string_equal(a.image, "r.bin");
    assert_null(a.signature);
    parse_ok(&a, "--pg", "postgres://x", "publish", "--store", "/s", "m", "--trusted-keys", "/keys",
             "i", "--signature", "m.sig", NULL);
    assert_string_equal(a.pg_uri, "postgres://x");
    assert_string_equal(a.store, "/s");
    assert_string_equal(a.trusted_keys, "/keys");
    assert_string_equal(a.signature, "m.sig");
    assert_string_equal(a.manifest, "m");
    assert_string_equal(a.image, "i");

    parse_ok(&a, "rollout", "create", "--release", ID1, NULL);
    assert_int_equal(a.cmd, UPG_REL_CMD_ROLLOUT_CREATE);
    assert_string_equal(a.release, ID1);
    assert_int_equal(a.percent_bp, 10000);
    assert_null(a.hardware);
    assert_null(a.devices_file);
    parse_ok(&a, "rollout", "create", "--release", ID1, "--hardware", "flm02", "--percent", "12.5",
             "--devices", "list.txt", NULL);
    assert_int_equal(a.percent_bp, 1250);
    assert_string_equal(a.hardware, "flm02");
    assert_string_equal(a.devices_file, "list.txt");

    parse_ok(&a, "rollout", "pause", "7", NULL);
    assert_int_equal(a.cmd, UPG_REL_CMD_ROLLOUT_PAUSE);
    assert_true(a.has_id);
    assert_int_equal(a.id, 7);
    parse_ok(&a, "rollout", "resume", "8", NULL);
    assert_int_equal(a.cmd, UPG_REL_CMD_ROLLOUT_RESUME);
    assert_false(a.has_percent);
    parse_ok(&a, "rollout", "resume", "8", "--percent", "50", NULL);
    assert_true(a.has_percent);
    assert_int_equal(a.percent_bp, 5000);
    parse_ok(&a, "rollout", "abort", "9", NULL);
    assert_int_equal(a.cmd, UPG_REL_CMD_ROLLOUT_ABORT);
    parse_ok(&a, "rollout", "set", "10", "--percent=0", NULL);
    assert_int_equal(a.cmd, UPG_REL_CMD_ROLLOUT_SET);
    assert_int_equal(a.percent_bp, 0);
    assert_int_equal(a.id, 10);
    parse_ok(&a, "rollout", "status", NULL);
    assert_int_equal(a.cmd, UPG_REL_CMD_ROLLOUT_STATUS);
    assert_false(a.has_id);
    parse_ok(&a, "rollout", "status", "123456789012345678", NULL);
    assert_int_equal(a.id, 123456789012345678LL);
    parse_ok(&a, "log", "verify", "--pg", "x", NULL);
    assert_int_equal(a.cmd, UPG_REL_CMD_LOG_VERIFY);

    /* Help wins; "--" ends the options. */
    parse_ok(&a, "sign", "--help", NULL);
    assert_int_equal(a.cmd, UPG_REL_CMD_HELP);
    parse_ok(&a, "-h", NULL);
    assert_int_equal(a.cmd, UPG_REL_CMD_HELP);
    parse_ok(&a, "publish", "--", "-odd.manifest", "--help", NULL);
    assert_string_equal(a.manifest, "-odd.manifest");
    assert_string_equal(a.image, "--help");
    assert_non_null(strstr(upg_rel_usage, "rollout create"));
}

static void test_errors(void **state)
{
    (void)state;
    parse_fails("no command", NULL);
    parse_fails("unknown command 'frob'", "frob", NULL);
    parse_fails("expected create, pause, resume, abort, set or status", "rollout", NULL);
    parse_fails("expected create, pause", "rollout", "delete", "1", NULL);
    parse_fails("expected verify", "log", "show", NULL);
    parse_fails("unknown option '--bogus'", "keygen", "--bogus", "x", NULL);
    parse_fails("needs a value", "keygen", "--out", NULL);
    parse_fails("empty value", "keygen", "--out=", NULL);
    parse_fails("keygen: needs --out DIR", "keygen", NULL);
    parse_fails("unexpected argument 'x'", "keygen", "--out", "d", "x", NULL);
    parse_fails("does not apply to 'keygen'", "keygen", "--out", "d", "--pg", "x", NULL);
    parse_fails("does not apply to 'sign'", "sign", "--pg", "x", NULL);
    parse_fails("does not apply to 'rollout status'", "rollout", "status", "--store", "s", NULL);
    parse_fails("does not apply to 'publish'", "publish", "m", "i", "--percent", "5", NULL);
    parse_fails("does not apply to 'rollout pause'", "rollout", "pause", "1", "--percent", "5",
                NULL);

    /* sign */
    parse_fails("sign: needs --key, --image, --version and --hardware", "sign", "--key", "k",
                "--image", "f", "--version", "1", NULL);
    parse_fails("not both", "sign", "--key=k", "--image=f", "--version=2", "--hardware=h",
                "--notes", "a", "--notes-file", "b", NULL);
    static const char *const versions[] = {"",          "1.",         ".1", "1..2",
                                           "1.2.3.4.5", "1234567890", "-1", "v1"};
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        char opt[64];
        snprintf(opt, sizeof(opt), "--version=%s", versions[i]);
        parse_fails(versions[i][0] ? "--version: expected" : "empty value", "sign", "--key=k",
                    "--image=f", opt, "--hardware=h", NULL);
    }
    parse_fails("--hardware: expected", "sign", "--key=k", "--image=f", "--version=2",
                "--hardware=FLM02", NULL);
    parse_fails("--hardware: expected", "rollout", "create", "--release", ID1, "--hardware",
                "a23456789012345678901234567890123", NULL);
    static const char *const days[] = {"0",  "0.0",     "-1",    "1e3", "abc", " 1",   "1.",
                                       ".5", "3650.01", "99999", "inf", "nan", "0x10", "+1"};
    for (size_t i = 0; i < sizeof(days) / sizeof(days[0]); i++)
        parse_fails("--expires: expected days", "sign", "--key=k", "--image=f", "--version=2",
                    "--hardware=h", "--expires", days[i], NULL);
    char notes[MH_RELEASE_MAX_NOTES + 2];
    memset(notes, 'n', MH_RELEASE_MAX_NOTES + 1);
    notes[MH_RELEASE_MAX_NOTES + 1] = '\0';
    parse_fails("--notes: longer than 4096 bytes", "sign", "--key=k", "--image=f", "--version=2",
                "--hardware=h", "--notes", notes, NULL);

    /* publish */
    parse_fails("publish: needs MANIFEST and IMAGE", "publish", NULL);
    parse_fails("publish: needs MANIFEST and IMAGE", "publish", "m", NULL);
    parse_fails("unexpected argument 'x'", "publish", "m", "i", "x", NULL);

    /* rollouts */
    parse_fails("rollout create: needs --release R", "rollout", "create", NULL);
    parse_fails("--release: expected a release id", "rollout", "create", "--release", "abc", NULL);
    parse_fails("--release: expected a release id", "rollout", "create", "--release",
                "0123456789ABCDEF0123456789ABCDEF", NULL);
    parse_fails("--release: expected a release id", "rollout", "create", "--release", ID1 "0",
                NULL);
    parse_fails("unexpected argument '5'", "rollout", "create", "--release", ID1, "5", NULL);
    parse_fails("needs a rollout ID", "rollout", "pause", NULL);
    parse_fails("needs a rollout ID", "rollout", "set", "--percent", "5", NULL);
    parse_fails("rollout set: needs --percent P", "rollout", "set", "3", NULL);
    static const char *const ids[] = {"0", "01", "x", "1.5", "1234567890123456789"};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        parse_fails("expected a rollout ID", "rollout", "abort", ids[i], NULL);
    parse_fails("unknown option '-1'", "rollout", "abort", "-1", NULL);
    parse_fails("unexpected argument '2'", "rollout", "status", "1", "2", NULL);
    parse_fails("--percent: expected 0 to 100", "rollout", "create", "--release", ID1, "--percent",
                "100.01", NULL);
    parse_fails("--percent: expected 0 to 100", "rollout", "resume", "1", "--percent", "1.234",
                NULL);
}

static void test_percent(void **state)
{
    (void)state;
    struct {
        const char *s;
        int bp;
    } good[] = {{"0", 0},       {"100", 10000},  {"100.0", 10000}, {"100.00", 10000},
                {"12.5", 1250}, {"12.34", 1234}, {"0.01", 1},      {"007", 700},
                {"50", 5000},   {"99.99", 9999}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int bp = -1;
        if (upg_rel_parse_percent(good[i].s, &bp) != 0)
            fail_msg("percent '%s' refused", good[i].s);
        assert_int_equal(bp, good[i].bp);
    }
    static const char *const bad[] = {"",   "-1",   "100.01", "101", "1000", "12.345",
                                      ".5", "5.",   "5%",     " 5",  "5 ",   "1e2",
                                      "+5", "0x10", "5,5",    "nan", "inf"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int bp = 42;
        if (upg_rel_parse_percent(bad[i], &bp) != -1)
            fail_msg("percent '%s' accepted", bad[i]);
        assert_int_equal(bp, 42);
    }
}

static void test_days(void **state)
{
    (void)state;
    int64_t s = 0;
    assert_int_equal(upg_rel_parse_days("90", &s), 0);
    assert_int_equal(s, 90 * 86400);
    assert_int_equal(upg_rel_parse_days("0.5", &s), 0);
    assert_int_equal(s, 43200);
    assert_int_equal(upg_rel_parse_days("0.0001", &s), 0);
    assert_int_equal(s, 9);
    assert_int_equal(upg_rel_parse_days("0.000000001", &s), 0);
    assert_int_equal(s, 1); /* at least one second */
    assert_int_equal(upg_rel_parse_days("3650", &s), 0);
    assert_int_equal(s, 3650LL * 86400);
    assert_int_equal(upg_rel_parse_days("3651", &s), -1);
    assert_int_equal(upg_rel_parse_days("0", &s), -1);
    assert_int_equal(upg_rel_parse_days("1234567890123456", &s), -1);
}

static void test_device_list(void **state)
{
    (void)state;
    char **ids = NULL;
    size_t n = 0;
    char err[256];
    const char text[] = "# canary devices\n" ID1 "\n\n   \n\t" ID2 "  \r\n  # the end\n" ID1;

    assert_int_equal(upg_rel_parse_device_list(text, strlen(text), &ids, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 3);
    assert_string_equal(ids[0], ID1);
    assert_string_equal(ids[1], ID2);
    assert_string_equal(ids[2], ID1);
    upg_rel_free_list(ids, n);

    /* Empty and comment-only lists parse to nothing (the caller refuses them). */
    assert_int_equal(upg_rel_parse_device_list("", 0, &ids, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_null(ids);
    assert_int_equal(upg_rel_parse_device_list("#x\n\n", 4, &ids, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {ID1 "\nnot-an-id\n", "line 2: not a device id"}, {ID1 "0\n", "line 1: not a device id"},
        {"0123456789ABCDEF0123456789ABCDEF\n", "line 1"}, {"\n\n" ID1 " " ID2 "\n", "line 3"},
        {ID1 " # a comment after an id\n", "line 1"},     {"0123456789abcdef\n", "line 1"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ids = (char **)&n;
        if (upg_rel_parse_device_list(bad[i].text, strlen(bad[i].text), &ids, &n, err,
                                      sizeof(err)) != -1)
            fail_msg("list '%s' accepted", bad[i].text);
        if (strstr(err, bad[i].want) == NULL)
            fail_msg("error '%s' does not mention '%s'", err, bad[i].want);
        assert_null(ids);
        assert_int_equal(n, 0);
    }
    /* A NUL byte inside a line is not an id either. */
    const char nul[] = ID1 "\0\n";
    assert_int_equal(upg_rel_parse_device_list(nul, sizeof(nul) - 1, &ids, &n, err, sizeof(err)),
                     -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands),    cmocka_unit_test(test_errors),
        cmocka_unit_test(test_percent),     cmocka_unit_test(test_days),
        cmocka_unit_test(test_device_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
