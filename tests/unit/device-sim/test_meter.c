/*
 * Unit tests of one simulated meter's firmware state machine (device-sim/meter.h) and of the
 * fleet's settings (device-sim/fleet_upgrade.h): heartbeat bodies, reports, offers taken or
 * ignored, downloads resumed, cut or refused, the remote_upgrade flag and the consent list.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/alloc.h"
#include "device-sim/fleet_upgrade.h"
#include "device-sim/meter.h"
#include "release_fixture.h"

enum { R_GOOD, R_UNLOGGED, R_N };

typedef struct state {
    fx_t f;
    sim_release_log_t log; /* R_GOOD only */
} state_t;

static int setup(void **ts)
{
    state_t *s = calloc(1, sizeof(*s));
    fx_spec_t good = {.version = "2.4.1"}, later = {.version = "2.5.0"};
    fx_init(&s->f);
    if (fx_add(&s->f, &good) != R_GOOD || fx_add(&s->f, &later) != R_UNLOGGED ||
        fx_log_first(&s->f, 1, &s->log) != 0)
        return -1;
    *ts = s;
    return 0;
}

static int teardown(void **ts)
{
    state_t *s = *ts;
    sim_release_log_dispose(&s->log);
    fx_dispose(&s->f);
    free(s);
    return 0;
}

static sim_meter_step_t offer(state_t *s, sim_meter_t *m, size_t i)
{
    json_t *o = fx_offer(&s->f, i);
    sim_meter_step_t st = sim_meter_offer(m, o, s->f.key, FX_NOW, &s->log);
    json_decref(o);
    return st;
}

static void test_heartbeat_body(void **ts)
{
    state_t *s = *ts;
    sim_meter_t m;
    char buf[512];

    sim_meter_init(&m, "1.0.0", "flm02", false);
    assert_true(sim_meter_heartbeat_body(&m, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, "{\"firmware_version\":\"1.0.0\",\"remote_upgrade\":false}");
    /* Too small a buffer: -1, never a truncated body. */
    assert_int_equal(sim_meter_heartbeat_body(&m, buf, 20), -1);
    sim_meter_dispose(&m);

    sim_meter_init(&m, "2.0.0", "flm02", true);
    m.report_pending = true;
    m.report_outcome = SIM_OUTCOME_REFUSED;
    m.report_reason = SIM_UPG_NOT_IN_LOG;
    memcpy(m.report_release, s->f.r[R_GOOD].id, sizeof(m.report_release));
    assert_true(sim_meter_heartbeat_body(&m, buf, sizeof(buf)) > 0);
    json_t *o = json_loads(buf, 0, NULL);
    assert_non_null(o);
    assert_true(json_is_true(json_object_get(o, "remote_upgrade")));
    json_t *r = json_object_get(o, "upgrade_report");
    assert_string_equal(json_string_value(json_object_get(r, "release")), s->f.r[R_GOOD].id);
    assert_string_equal(json_string_value(json_object_get(r, "outcome")), "refused");
    assert_string_equal(json_string_value(json_object_get(r, "reason")), "not_in_log");
    json_decref(o);
    /* installed carries no reason. */
    m.report_outcome = SIM_OUTCOME_INSTALLED;
    assert_true(sim_meter_heartbeat_body(&m, buf, sizeof(buf)) > 0);
    assert_null(strstr(buf, "reason"));
    assert_non_null(strstr(buf, "\"outcome\":\"installed\""));
    sim_meter_dispose(&m);
}

static void test_report_answers(void **ts)
{
    sim_meter_t m;
    (void)ts;
    sim_meter_init(&m, "1.0.0", "flm02", true);
    m.report_pending = true;
    /* Later: no answer, 429, 503 upgrade_unavailable. */
    assert_false(sim_meter_report_answered(&m, 0));
    assert_false(sim_meter_report_answered(&m, 429));
    assert_false(sim_meter_report_answered(&m, 503));
    assert_true(m.report_pending);
    /* Settled by 200, dropped by a final refusal (409 not_offered). */
    assert_true(sim_meter_report_answered(&m, 200));
    assert_false(m.report_pending);
    m.report_pending = true;
    assert_true(sim_meter_report_answered(&m, 409));
    assert_false(m.report_pending);
    sim_meter_dispose(&m);
}

/* A meter whose own flag is off never takes an offer: it never downloads. */
static void test_flag_off_ignores_offers(void **ts)
{
    state_t *s = *ts;
    sim_meter_t m;
    sim_meter_init(&m, "1.0.0", "flm02", false);
    assert_int_equal(offer(s, &m, R_GOOD), SIM_METER_NOTHING);
    assert_int_equal(m.phase, SIM_METER_IDLE);
    assert_false(m.report_pending);
    /* Nor does it act on download events. */
    assert_int_equal(sim_meter_data(&m, s->f.image, 10), SIM_METER_NOTHING);
    assert_int_equal(sim_meter_complete(&m), SIM_METER_NOTHING);
    sim_meter_dispose(&m);
}

static void test_install(void **ts)
{
    state_t *s = *ts;
    sim_meter_t m;
    char buf[512];

    sim_meter_init(&m, "1.0.0", "flm02", true);
    assert_int_equal(sim_meter_offer(&m, NULL, s->f.key, FX_NOW, &s->log), SIM_METER_NOTHING);
    assert_int_equal(sim_meter_offer(&m, json_null(), s->f.key, FX_NOW, &s->log),
                     SIM_METER_NOTHING);
    assert_int_equal(offer(s, &m, R_GOOD), SIM_METER_FETCH);
    assert_int_equal(m.phase, SIM_METER_DOWNLOAD);
    /* Busy: a second offer is ignored. */
    assert_int_equal(offer(s, &m, R_GOOD), SIM_METER_NOTHING);
    /* Cut by the meter itself after 1000 bytes: resumes without using an attempt up. */
    assert_int_equal(sim_meter_data(&m, s->f.image, 1000), SIM_METER_NOTHING);
    assert_int_equal(sim_meter_attempt_failed(&m, true), SIM_METER_FETCH);
    assert_int_equal(m.attempts, 0);
    assert_int_equal(m.work->image.received, 1000);
    /* A network failure: an attempt used, the bytes kept. */
    assert_int_equal(sim_meter_data(&m, s->f.image + 1000, 1000), SIM_METER_NOTHING);
    assert_int_equal(sim_meter_attempt_failed(&m, false), SIM_METER_FETCH);
    assert_int_equal(m.attempts, 1);
    assert_int_equal(m.work->image.received, 2000);
    assert_int_equal(sim_meter_data(&m, s->f.image + 2000, FX_IMAGE_SIZE - 2000),
                     SIM_METER_NOTHING);
    assert_int_equal(sim_meter_complete(&m), SIM_METER_REPORT);
    assert_int_equal(m.phase, SIM_METER_IDLE);
    assert_null(m.work); /* an idle meter holds nothing of an offer */
    assert_int_equal(m.report_outcome, SIM_OUTCOME_INSTALLED);
    assert_string_equal(m.report_release, s->f.r[R_GOOD].id);
    /* It runs the new version, and says so. */
    assert_string_equal(m.version, "2.4.1");
    assert_true(sim_meter_heartbeat_body(&m, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "\"firmware_version\":\"2.4.1\""));
    /* Owing a report, it takes no offer. */
    assert_int_equal(offer(s, &m, R_GOOD), SIM_METER_NOTHING);
    assert_true(sim_meter_report_answered(&m, 200));
    /* The same release again is no longer newer. */
    assert_int_equal(offer(s, &m, R_GOOD), SIM_METER_REPORT);
    assert_int_equal(m.report_reason, SIM_UPG_ROLLBACK);
    sim_meter_dispose(&m);
}

/* A server that answered the Range request with the whole image. */
static void test_restart(void **ts)
{
    state_t *s = *ts;
    sim_meter_t m;
    sim_meter_init(&m, "1.0.0", "flm02", true);
    assert_int_equal(offer(s, &m, R_GOOD), SIM_METER_FETCH);
    assert_int_equal(sim_meter_data(&m, s->f.image, 300), SIM_METER_NOTHING);
    assert_int_equal(sim_meter_attempt_failed(&m, false), SIM_METER_FETCH);
    sim_meter_restart(&m);
    assert_int_equal(sim_meter_data(&m, s->f.image, FX_IMAGE_SIZE), SIM_METER_NOTHING);
    assert_int_equal(sim_meter_complete(&m), SIM_METER_REPORT);
    assert_int_equal(m.report_outcome, SIM_OUTCOME_INSTALLED);
    sim_meter_dispose(&m);
}

static void test_download_refusals(void **ts)
{
    state_t *s = *ts;
    sim_meter_t m;
    uint8_t bad[FX_IMAGE_SIZE];

    /* More bytes than the manifest says: refused at once. */
    sim_meter_init(&m, "1.0.0", "flm02", true);
    assert_int_equal(offer(s, &m, R_GOOD), SIM_METER_FETCH);
    assert_int_equal(sim_meter_data(&m, s->f.image, FX_IMAGE_SIZE), SIM_METER_NOTHING);
    assert_int_equal(sim_meter_data(&m, s->f.image, 1), SIM_METER_REPORT);
    assert_int_equal(m.report_outcome, SIM_OUTCOME_REFUSED);
    assert_int_equal(m.report_reason, SIM_UPG_SIZE);
    assert_string_equal(m.version, "1.0.0");
    sim_meter_dispose(&m);
    /* Announced longer (Content-Length): refused before any byte. */
    sim_meter_init(&m, "1.0.0", "flm02", true);
    assert_int_equal(offer(s, &m, R_GOOD), SIM_METER_FETCH);
    assert_int_equal(sim_meter_too_long(&m), SIM_METER_REPORT);
    assert_int_equal(m.report_reason, SIM_UPG_SIZE);
    sim_meter_dispose(&m);
    /* A tampered image. */
    memcpy(bad, s->f.image, sizeof(bad));
    bad[0] ^= 0xff;
    sim_meter_init(&m, "1.0.0", "flm02", true);
    assert_int_equal(offer(s, &m, R_GOOD), SIM_METER_FETCH);
    assert_int_equal(sim_meter_data(&m, bad, sizeof(bad)), SIM_METER_NOTHING);
    assert_int_equal(sim_meter_complete(&m), SIM_METER_REPORT);
    assert_int_equal(m.report_reason, SIM_UPG_SHA256);
    assert_string_equal(m.version, "1.0.0");
    sim_meter_dispose(&m);
    /* Attempts spent: failed, "download". */
    sim_meter_init(&m, "1.0.0", "flm02", true);
    assert_int_equal(offer(s, &m, R_GOOD), SIM_METER_FETCH);
    for (int i = 1; i < SIM_METER_MAX_ATTEMPTS; i++)
        assert_int_equal(sim_meter_attempt_failed(&m, false), SIM_METER_FETCH);
    assert_int_equal(sim_meter_attempt_failed(&m, false), SIM_METER_REPORT);
    assert_int_equal(m.report_outcome, SIM_OUTCOME_FAILED);
    assert_int_equal(m.report_reason, SIM_UPG_DOWNLOAD);
    sim_meter_dispose(&m);
    /* Withdrawn while downloading: nothing to report. */
    sim_meter_init(&m, "1.0.0", "flm02", true);
    assert_int_equal(offer(s, &m, R_GOOD), SIM_METER_FETCH);
    assert_int_equal(sim_meter_abandon(&m), SIM_METER_ABANDON);
    assert_int_equal(m.phase, SIM_METER_IDLE);
    assert_false(m.report_pending);
    sim_meter_dispose(&m);
}

/* An offer whose log entry lies beyond the copy: wait for a refetch, then decide. */
static void test_wait_for_log(void **ts)
{
    state_t *s = *ts;
    sim_meter_t m;
    sim_release_log_t grown;
    int64_t next;
    char err[160];

    sim_meter_init(&m, "1.0.0", "flm02", true);
    assert_int_equal(offer(s, &m, R_UNLOGGED), SIM_METER_WAIT);
    assert_int_equal(m.phase, SIM_METER_WAIT_LOG);
    /* The refetch brought it: download. */
    sim_release_log_init(&grown);
    json_t *page = fx_page(&s->f, 0, R_N, -1);
    assert_int_equal(sim_release_log_add_page(&grown, page, &next, err, sizeof(err)), R_N);
    json_decref(page);
    assert_int_equal(sim_meter_log_ready(&m, s->f.key, FX_NOW, &grown, true), SIM_METER_FETCH);
    sim_meter_dispose(&m);
    /* The refetch did not bring it: refused, not_in_log. */
    sim_meter_init(&m, "1.0.0", "flm02", true);
    assert_int_equal(offer(s, &m, R_UNLOGGED), SIM_METER_WAIT);
    assert_int_equal(sim_meter_log_ready(&m, s->f.key, FX_NOW, &s->log, true), SIM_METER_REPORT);
    assert_int_equal(m.report_outcome, SIM_OUTCOME_REFUSED);
    assert_int_equal(m.report_reason, SIM_UPG_NOT_IN_LOG);
    sim_meter_dispose(&m);
    /* The refetch failed: failed, log_unavailable. */
    sim_meter_init(&m, "1.0.0", "flm02", true);
    assert_int_equal(offer(s, &m, R_UNLOGGED), SIM_METER_WAIT);
    assert_int_equal(sim_meter_log_ready(&m, s->f.key, FX_NOW, &s->log, false), SIM_METER_REPORT);
    assert_int_equal(m.report_outcome, SIM_OUTCOME_FAILED);
    assert_int_equal(m.report_reason, SIM_UPG_LOG_UNAVAILABLE);
    sim_meter_dispose(&m);
    sim_release_log_dispose(&grown);
}

/* A malformed offer is refused against the release it names. */
static void test_malformed_offer(void **ts)
{
    state_t *s = *ts;
    sim_meter_t m;
    sim_meter_init(&m, "1.0.0", "flm02", true);
    json_t *o = fx_offer(&s->f, R_GOOD);
    json_object_del(o, "signature");
    assert_int_equal(sim_meter_offer(&m, o, s->f.key, FX_NOW, &s->log), SIM_METER_REPORT);
    json_decref(o);
    assert_int_equal(m.report_reason, SIM_UPG_OFFER);
    assert_string_equal(m.report_release, s->f.r[R_GOOD].id);
    sim_meter_dispose(&m);
}

static void test_remote_upgrade_flag(void **ts)
{
    char id[MH_ID_LEN + 1];
    size_t on = 0, on10 = 0;
    (void)ts;
    for (unsigned i = 0; i < 2000; i++) {
        snprintf(id, sizeof(id), "%032x", i * 2654435761u);
        bool half = sim_remote_upgrade_flag(id, 0.5);
        /* Fixed per id, and monotone in the fraction: 10 % is within 50 %. */
        assert_true(half == sim_remote_upgrade_flag(id, 0.5));
        assert_false(sim_remote_upgrade_flag(id, 0));
        assert_true(sim_remote_upgrade_flag(id, 1));
        if (sim_remote_upgrade_flag(id, 0.1)) {
            on10++;
            assert_true(half);
        }
        on += half;
    }
    assert_in_range(on, 850, 1150);
    assert_in_range(on10, 120, 280);
    /* The documented formula, worked out with sha256sum:
     * printf 'remote_upgrade:%s' 000...0001 | sha256sum -> 8afcfa11..., 0x8afcfa11 % 10000 = 4897.
     */
    assert_false(sim_remote_upgrade_flag("00000000000000000000000000000001", 0.4897));
    assert_true(sim_remote_upgrade_flag("00000000000000000000000000000001", 0.4898));
}

static void test_consent_list(void **ts)
{
    char path[] = "/tmp/mh-consent-XXXXXX";
    sim_fleet_t fleet;
    sim_fleet_device_t devs[3];
    uint8_t *marks = NULL;
    size_t listed = 0, others = 0;
    (void)ts;

    memset(devs, 0, sizeof(devs));
    snprintf(devs[0].id, sizeof(devs[0].id), "%s", "0123456789abcdef0123456789abcdef");
    snprintf(devs[1].id, sizeof(devs[1].id), "%s", "11111111111111111111111111111111");
    snprintf(devs[2].id, sizeof(devs[2].id), "%s", "22222222222222222222222222222222");
    fleet.devices = devs;
    fleet.count = 3;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# consented in the API\n"
                       "22222222222222222222222222222222\n"
                       "\n"
                       "0123456789abcdef0123456789abcdef\r\n"
                       "22222222222222222222222222222222\n"
                       "33333333333333333333333333333333\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(sim_consent_load(path, &fleet, 3, &marks, &listed, &others), 0);
    assert_int_equal(marks[0], 1);
    assert_int_equal(marks[1], 0);
    assert_int_equal(marks[2], 1);
    assert_int_equal(listed, 2);
    assert_int_equal(others, 1);
    free(marks);
    /* Only the first two devices run. */
    marks = NULL;
    assert_int_equal(sim_consent_load(path, &fleet, 2, &marks, &listed, &others), 0);
    assert_int_equal(listed, 1);
    assert_int_equal(others, 2);
    free(marks);
    /* A line that is not an id refuses the whole list. */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    text = "0123456789ABCDEF0123456789ABCDEF\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    marks = NULL;
    assert_int_equal(sim_consent_load(path, &fleet, 3, &marks, &listed, &others), -1);
    assert_null(marks);
    unlink(path);
    assert_int_equal(sim_consent_load(path, &fleet, 3, &marks, &listed, &others), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heartbeat_body),
        cmocka_unit_test(test_report_answers),
        cmocka_unit_test(test_flag_off_ignores_offers),
        cmocka_unit_test(test_install),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_download_refusals),
        cmocka_unit_test(test_wait_for_log),
        cmocka_unit_test(test_malformed_offer),
        cmocka_unit_test(test_remote_upgrade_flag),
        cmocka_unit_test(test_consent_list),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
