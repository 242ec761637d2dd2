/*
 * Unit tests of meterhub-admin's pure parts: the command line, migration file names, the
 * number format of readings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "api/admin/admin_internal.h"
#include "common/provision.h"

/* Parses a NULL-terminated list of words as argv[1..]. */
static int parse(api_admin_args_t *a, char *err, size_t errlen, ...)
{
    char *argv[32] = {"meterhub-admin"};
    int argc = 1;
    va_list ap;
    va_start(ap, errlen);
    char *w;
    while ((w = va_arg(ap, char *)) != NULL && argc < 31)
        argv[argc++] = w;
    va_end(ap);
    argv[argc] = NULL;
    return api_admin_args_parse(argc, argv, a, err, errlen);
}

#define PARSE_OK(a, ...)                                                                           \
    do {                                                                                           \
        char err_[256];                                                                            \
        int rc_ = parse(a, err_, sizeof(err_), __VA_ARGS__, NULL);                                 \
        if (rc_ != 0)                                                                              \
            fail_msg("unexpected usage error: %s", err_);                                          \
    } while (0)

/* Expects a usage error whose message contains `want`. */
static void parse_fails(const char *want, ...)
{
    char *argv[32] = {"meterhub-admin"};
    int argc = 1;
    va_list ap;
    va_start(ap, want);
    char *w;
    while ((w = va_arg(ap, char *)) != NULL && argc < 31)
        argv[argc++] = w;
    va_end(ap);
    api_admin_args_t a;
    char err[256];
    assert_int_equal(api_admin_args_parse(argc, argv, &a, err, sizeof(err)), -1);
    if (strstr(err, want) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, want);
}

static void test_args_commands(void **state)
{
    (void)state;
    api_admin_args_t a;

    PARSE_OK(&a, "migrate");
    assert_int_equal(a.cmd, API_ADMIN_CMD_MIGRATE);
    assert_null(a.pg_uri);
    assert_null(a.sql_dir);

    PARSE_OK(&a, "account", "add", "acme");
    assert_int_equal(a.cmd, API_ADMIN_CMD_ACCOUNT_ADD);
    assert_string_equal(a.name, "acme");
    assert_false(a.if_missing);
    PARSE_OK(&a, "account", "add", "--if-missing", "acme");
    assert_true(a.if_missing);
    assert_string_equal(a.name, "acme");
    assert_null(a.password_file);
    assert_false(a.generate_password);
    PARSE_OK(&a, "account", "add", "--password-file", "/run/pw", "acme", "--if-missing");
    assert_string_equal(a.password_file, "/run/pw");
    assert_false(a.generate_password);
    assert_true(a.if_missing);
    PARSE_OK(&a, "account", "add", "acme", "--password-file", "-");
    assert_string_equal(a.password_file, "-");
    assert_string_equal(a.name, "acme");
    PARSE_OK(&a, "account", "add", "acme", "--generate-password");
    assert_true(a.generate_password);
    assert_null(a.password_file);

    PARSE_OK(&a, "account", "passwd", "acme", "--generate-password");
    assert_int_equal(a.cmd, API_ADMIN_CMD_ACCOUNT_PASSWD);
    assert_string_equal(a.name, "acme");
    assert_true(a.generate_password);
    PARSE_OK(&a, "account", "passwd", "--password-file=/run/pw", "acme");
    assert_int_equal(a.cmd, API_ADMIN_CMD_ACCOUNT_PASSWD);
    assert_string_equal(a.password_file, "/run/pw");
    assert_false(a.generate_password);

    PARSE_OK(&a, "device", "add", "--account", "acme");
    assert_int_equal(a.cmd, API_ADMIN_CMD_DEVICE_ADD);
    assert_string_equal(a.account, "acme");
    assert_int_equal(a.count, 1);
    assert_int_equal(a.sensors, 1);
    assert_int_equal(a.days, MH_CERT_DAYS_DEFAULT);
    assert_int_equal(a.not_before_days_ago, 0);
    assert_null(a.out_dir);
    assert_null(a.hardware);

    PARSE_OK(&a, "device", "add", "--account=acme", "--sensors", "4", "--out", "/tmp/x",
             "--count=10000", "--days", "1", "--not-before-days-ago", "2");
    assert_string_equal(a.account, "acme");
    assert_int_equal(a.sensors, 4);
    assert_string_equal(a.out_dir, "/tmp/x");
    assert_int_equal(a.count, 10000);
    assert_int_equal(a.days, 1);
    assert_int_equal(a.not_before_days_ago, 2);

    PARSE_OK(&a, "device", "add", "--account", "acme", "--hardware", "flm03-b.v2_x");
    assert_string_equal(a.hardware, "flm03-b.v2_x");
    PARSE_OK(&a, "device", "add", "--account", "acme",
             "--hardware=a2345678901234567890123456789012");
    assert_string_equal(a.hardware, "a2345678901234567890123456789012");

    PARSE_OK(&a, "device", "revoke", "0123456789abcdef0123456789abcdef");
    assert_int_equal(a.cmd, API_ADMIN_CMD_DEVICE_REVOKE);
    assert_string_equal(a.id, "0123456789abcdef0123456789abcdef");

    PARSE_OK(&a, "device", "list");
    assert_int_equal(a.cmd, API_ADMIN_CMD_DEVICE_LIST);
    assert_null(a.account);
    PARSE_OK(&a, "device", "list", "--account", "acme");
    assert_string_equal(a.account, "acme");

    PARSE_OK(&a, "readings", "abc");
    assert_int_equal(a.cmd, API_ADMIN_CMD_READINGS);
    assert_string_equal(a.id, "abc");
    assert_false(a.has_from);
    assert_false(a.has_to);
    PARSE_OK(&a, "readings", "--from", "0", "abc", "--to=1700000000");
    assert_true(a.has_from);
    assert_true(a.has_to);
    assert_int_equal(a.from, 0);
    assert_int_equal(a.to, 1700000000);
    PARSE_OK(&a, "readings", "abc", "--from", "5", "--to", "5");
}

static void test_args_global(void **state)
{
    (void)state;
    api_admin_args_t a;

    /* Before the command, after it, with '=', and the last one wins. */
    PARSE_OK(&a, "--pg", "postgresql://x", "--pki=/p", "migrate", "--sql-dir", "/s");
    assert_string_equal(a.pg_uri, "postgresql://x");
    assert_string_equal(a.pki_dir, "/p");
    assert_string_equal(a.sql_dir, "/s");
    PARSE_OK(&a, "device", "--pg", "a", "add", "--account", "acme", "--pg=b");
    assert_int_equal(a.cmd, API_ADMIN_CMD_DEVICE_ADD);
    assert_string_equal(a.pg_uri, "b");

    /* "--" ends the options: what follows is a word, even with a dash. */
    PARSE_OK(&a, "account", "add", "--", "-odd");
    assert_string_equal(a.name, "-odd");

    /* Help anywhere, even in an otherwise broken line. */
    PARSE_OK(&a, "--help");
    assert_int_equal(a.cmd, API_ADMIN_CMD_HELP);
    PARSE_OK(&a, "device", "add", "-h");
    assert_int_equal(a.cmd, API_ADMIN_CMD_HELP);
    PARSE_OK(&a, "--bogus", "-h");
    assert_int_equal(a.cmd, API_ADMIN_CMD_HELP);
    PARSE_OK(&a, "help");
    assert_int_equal(a.cmd, API_ADMIN_CMD_HELP);
    assert_non_null(strstr(api_admin_usage, "device add --account A"));
    assert_non_null(strstr(api_admin_usage, "account passwd NAME"));
    assert_non_null(strstr(api_admin_usage, "--generate-password"));
}

static void test_args_errors(void **state)
{
    (void)state;
    parse_fails("no command", (char *)NULL);
    parse_fails("no command", "--pg", "x", (char *)NULL);
    parse_fails("unknown command 'frob'", "frob", (char *)NULL);
    parse_fails("expected add, revoke or list", "device", (char *)NULL);
    parse_fails("expected add, revoke or list", "device", "remove", "x", (char *)NULL);
    parse_fails("expected add or passwd", "account", "list", (char *)NULL);
    parse_fails("expected add or passwd", "account", (char *)NULL);
    parse_fails("unknown option '--bogus'", "migrate", "--bogus", (char *)NULL);
    parse_fails("unknown option '-x'", "migrate", "-x", (char *)NULL);
    parse_fails("needs a value", "migrate", "--pg", (char *)NULL);
    parse_fails("takes no value", "account", "add", "a", "--if-missing=1", (char *)NULL);
    parse_fails("empty value", "migrate", "--pg=", (char *)NULL);
    parse_fails("does not apply to 'migrate'", "migrate", "--count", "3", (char *)NULL);
    parse_fails("does not apply to 'device list'", "device", "list", "--out", "x", (char *)NULL);
    parse_fails("does not apply to 'account add'", "account", "add", "a", "--account", "b",
                (char *)NULL);
    parse_fails("unexpected argument 'extra'", "migrate", "extra", (char *)NULL);
    parse_fails("unexpected argument 'b'", "account", "add", "a", "b", (char *)NULL);
    parse_fails("needs an account NAME", "account", "add", (char *)NULL);
    parse_fails("needs an account NAME", "account", "passwd", "--generate-password", (char *)NULL);
    parse_fails("unexpected argument 'b'", "account", "passwd", "a", "b", "--generate-password",
                (char *)NULL);
    parse_fails("not both", "account", "add", "a", "--password-file", "f", "--generate-password",
                (char *)NULL);
    parse_fails("not both", "account", "passwd", "a", "--generate-password", "--password-file=f",
                (char *)NULL);
    parse_fails("account passwd: needs --password-file F or --generate-password", "account",
                "passwd", "a", (char *)NULL);
    parse_fails("needs a value", "account", "add", "a", "--password-file", (char *)NULL);
    parse_fails("empty value", "account", "add", "a", "--password-file=", (char *)NULL);
    parse_fails("takes no value", "account", "add", "a", "--generate-password=yes", (char *)NULL);
    parse_fails("does not apply to 'account passwd'", "account", "passwd", "a", "--if-missing",
                "--generate-password", (char *)NULL);
    parse_fails("does not apply to 'device add'", "device", "add", "--account", "a",
                "--generate-password", (char *)NULL);
    parse_fails("does not apply to 'migrate'", "migrate", "--password-file", "f", (char *)NULL);
    parse_fails("needs a device ID", "device", "revoke", (char *)NULL);
    parse_fails("needs a SENSOR-ID", "readings", (char *)NULL);
    parse_fails("needs --account", "device", "add", (char *)NULL);
    static const char *const bad_hw[] = {
        "FLM02", "-flm", ".flm", "flm 02", "flm/02", "é", "a23456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof(bad_hw) / sizeof(bad_hw[0]); i++)
        parse_fails("--hardware: expected [a-z0-9][a-z0-9._-]{0,31}", "device", "add", "--account",
                    "a", "--hardware", bad_hw[i], (char *)NULL);
    parse_fails("empty value", "device", "add", "--account", "a", "--hardware=", (char *)NULL);
    parse_fails("does not apply to 'device list'", "device", "list", "--hardware", "flm02",
                (char *)NULL);
    parse_fails("--count", "device", "add", "--account", "a", "--count", "0", (char *)NULL);
    parse_fails("--count", "device", "add", "--account", "a", "--count", "1000001", (char *)NULL);
    parse_fails("--count", "device", "add", "--account", "a", "--count", "12x", (char *)NULL);
    parse_fails("--count", "device", "add", "--account", "a", "--count", " 1", (char *)NULL);
    parse_fails("--sensors", "device", "add", "--account", "a", "--sensors", "-1", (char *)NULL);
    parse_fails("--sensors", "device", "add", "--account", "a", "--sensors", "65", (char *)NULL);
    parse_fails("--days", "device", "add", "--account", "a", "--days", "0", (char *)NULL);
    parse_fails("--not-before-days-ago", "device", "add", "--account", "a", "--not-before-days-ago",
                "-1", (char *)NULL);
    parse_fails("--from", "readings", "x", "--from", "-1", (char *)NULL);
    parse_fails("--to", "readings", "x", "--to", "99999999999999", (char *)NULL);
    parse_fails("--from is after --to", "readings", "x", "--from", "6", "--to", "5", (char *)NULL);
}

static void test_migration_version(void **state)
{
    (void)state;
    int v = -1;
    assert_int_equal(api_admin_migration_version("001_core.sql", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(api_admin_migration_version("042_x.sql", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(api_admin_migration_version("1000_later_things.sql", &v), 0);
    assert_int_equal(v, 1000);
    assert_int_equal(api_admin_migration_version("001_.sql", &v), -1);
    assert_int_equal(api_admin_migration_version("001core.sql", &v), -1);
    assert_int_equal(api_admin_migration_version("_core.sql", &v), -1);
    assert_int_equal(api_admin_migration_version("core.sql", &v), -1);
    assert_int_equal(api_admin_migration_version("001_core.sql~", &v), -1);
    assert_int_equal(api_admin_migration_version("001_core.SQL", &v), -1);
    assert_int_equal(api_admin_migration_version("001_core.sql.orig", &v), -1);
    assert_int_equal(api_admin_migration_version("README", &v), -1);
    assert_int_equal(api_admin_migration_version(".", &v), -1);
    assert_int_equal(api_admin_migration_version("99999999999_big.sql", &v), -1);
}

/* The formatted value reads back exactly, and is no longer than needed. */
static void check_double(double v, const char *want)
{
    char buf[40];
    api_admin_format_double(v, buf, sizeof(buf));
    if (want != NULL)
        assert_string_equal(buf, want);
    double back = strtod(buf, NULL);
    assert_memory_equal(&back, &v, sizeof(v));
}

static void test_format_double(void **state)
{
    (void)state;
    check_double(0.0, "0");
    check_double(-0.0, "-0");
    check_double(1.0, "1");
    check_double(0.1, "0.1");
    check_double(1234.5, "1234.5");
    check_double(-0.30000000000000004, "-0.30000000000000004");
    check_double(0.1 + 0.2, "0.30000000000000004");
    check_double(1e20, "1e+20");
    check_double(123456789012345678.0, "1.2345678901234568e+17");
    check_double(DBL_MAX, "1.7976931348623157e+308");
    check_double(DBL_MIN, "2.2250738585072014e-308");
    check_double(5e-324, "5e-324");
    check_double(1.5e-320, "1.5e-320");
    check_double(9007199254740993.0, "9007199254740992");
    /* A spread of values: every one reads back exactly. */
    srand(42);
    for (int i = 0; i < 20000; i++) {
        double scale = 1e-20;
        for (int e = rand() % 40; e > 0; e--)
            scale *= 10.0;
        double v = ((double)rand() / RAND_MAX - 0.5) * scale;
        check_double(v, NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args_commands), cmocka_unit_test(test_args_global),
        cmocka_unit_test(test_args_errors),   cmocka_unit_test(test_migration_version),
        cmocka_unit_test(test_format_double),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
