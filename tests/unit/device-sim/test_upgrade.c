/*
 * Unit tests of the careful meter's checks (device-sim/upgrade.h) and of its copy of the
 * public release log (device-sim/release_log.h): every attack of issue 5 with crafted offers,
 * signed in the test with a key made in the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "device-sim/release_log.h"
#include "device-sim/upgrade.h"
#include "release_fixture.h"

/* Releases of the fixture: the log holds them in this order. */
enum { R_OLD, R_GOOD, R_EXPIRED, R_OTHER_HW, R_UNKNOWN_KEY, R_NOT_MANIFEST, R_UNLOGGED, R_N };

typedef struct state {
    fx_t f;
    sim_release_log_t log; /* R_OLD .. R_NOT_MANIFEST; R_UNLOGGED is beyond it */
} state_t;

static int setup(void **ts)
{
    state_t *s = calloc(1, sizeof(*s));
    fx_init(&s->f);
    fx_spec_t old = {.version = "1.5.0"}, good = {.version = "2.4.1"};
    fx_spec_t expired = {.version = "2.5", .issued = FX_NOW - 7200, .expires = FX_NOW - 60};
    fx_spec_t other_hw = {.version = "2.6", .hardware = "flm03"};
    fx_spec_t unknown = {.version = "2.7", .signer = s->f.other};
    fx_spec_t unlogged = {.version = "2.9"};
    if (fx_add(&s->f, &old) != R_OLD || fx_add(&s->f, &good) != R_GOOD ||
        fx_add(&s->f, &expired) != R_EXPIRED || fx_add(&s->f, &other_hw) != R_OTHER_HW ||
        fx_add(&s->f, &unknown) != R_UNKNOWN_KEY ||
        fx_add_raw(&s->f, "{\"format\":\"meterhub-manifest/1\"}\n") != R_NOT_MANIFEST ||
        fx_add(&s->f, &unlogged) != R_UNLOGGED || fx_log_first(&s->f, R_UNLOGGED, &s->log) != 0)
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

/* The verdict of release i's offer (changed by tweak when not NULL) for a meter running
 * 2.0.0 on flm02 at FX_NOW. */
static sim_upgrade_verdict_t check_json(state_t *s, json_t *offer, const char *version, int64_t now,
                                        const sim_release_log_t *log, sim_upgrade_reason_t *reason,
                                        sim_upgrade_offer_t *out)
{
    sim_meter_self_t self = {s->f.key, "flm02", version, now};
    sim_upgrade_offer_t o;
    sim_upgrade_verdict_t v;

    *reason = SIM_UPG_OK;
    if (sim_upgrade_offer_parse(offer, &o, reason) != 0) {
        json_decref(offer);
        return SIM_UPGRADE_REFUSE;
    }
    json_decref(offer);
    v = sim_upgrade_offer_check(&o, &self, log, reason);
    if (out != NULL)
        *out = o;
    else
        sim_upgrade_offer_dispose(&o);
    return v;
}

static sim_upgrade_reason_t refusal(state_t *s, json_t *offer)
{
    sim_upgrade_reason_t reason;
    assert_int_equal(check_json(s, offer, "2.0.0", FX_NOW, &s->log, &reason, NULL),
                     SIM_UPGRADE_REFUSE);
    return reason;
}

static void test_good_offer_and_image(void **ts)
{
    state_t *s = *ts;
    sim_upgrade_reason_t reason;
    sim_upgrade_offer_t o;
    sim_image_check_t c;

    assert_int_equal(check_json(s, fx_offer(&s->f, R_GOOD), "2.0.0", FX_NOW, &s->log, &reason, &o),
                     SIM_UPGRADE_ACCEPT);
    assert_int_equal(reason, SIM_UPG_OK);
    assert_true(o.parsed);
    assert_string_equal(o.m.version, "2.4.1");
    assert_int_equal(o.m.size, FX_IMAGE_SIZE);
    /* The whole image, in uneven slices. */
    assert_int_equal(sim_image_check_init(&c, o.m.size, o.m.sha256), 0);
    assert_int_equal(sim_image_check_feed(&c, s->f.image, 1), SIM_UPG_OK);
    assert_int_equal(sim_image_check_feed(&c, s->f.image + 1, 2999), SIM_UPG_OK);
    assert_int_equal(sim_image_check_feed(&c, s->f.image + 3000, FX_IMAGE_SIZE - 3000), SIM_UPG_OK);
    assert_int_equal(sim_image_check_finish(&c), SIM_UPG_OK);
    sim_image_check_dispose(&c);
    sim_upgrade_offer_dispose(&o);
    /* A version with fewer parts compares as zeros: 2.4 < 2.4.1. */
    assert_int_equal(check_json(s, fx_offer(&s->f, R_GOOD), "2.4", FX_NOW, &s->log, &reason, NULL),
                     SIM_UPGRADE_ACCEPT);
}

/* Attack: the image was changed after signing (same length). */
static void test_image_tampered(void **ts)
{
    state_t *s = *ts;
    sim_image_check_t c;
    uint8_t bad[FX_IMAGE_SIZE];

    memcpy(bad, s->f.image, sizeof(bad));
    bad[1234] ^= 0x01;
    assert_int_equal(sim_image_check_init(&c, FX_IMAGE_SIZE, s->f.image_sha256), 0);
    assert_int_equal(sim_image_check_feed(&c, bad, sizeof(bad)), SIM_UPG_OK);
    assert_int_equal(sim_image_check_finish(&c), SIM_UPG_SHA256);
    sim_image_check_dispose(&c);
}

/* Attack: the manifest was changed after signing (a byte of it, or the version edited). */
static void test_manifest_tampered(void **ts)
{
    state_t *s = *ts;
    fx_release_t *r = &s->f.r[R_GOOD];
    uint8_t *copy = malloc(r->manifest_len);
    memcpy(copy, r->manifest, r->manifest_len);
    char *v = memmem(copy, r->manifest_len, "2.4.1", 5);
    assert_non_null(v);
    v[0] = '9'; /* "9.4.1": a bigger version, same length */
    json_t *offer = fx_offer(&s->f, R_GOOD);
    json_object_set_new(offer, "manifest", fx_b64(copy, r->manifest_len));
    assert_int_equal(refusal(s, offer), SIM_UPG_SIGNATURE);
    free(copy);
    /* A signature that is not the manifest's. */
    offer = fx_offer(&s->f, R_GOOD);
    json_t *old = fx_offer(&s->f, R_OLD);
    json_object_set(offer, "signature", json_object_get(old, "signature"));
    json_decref(old);
    assert_int_equal(refusal(s, offer), SIM_UPG_SIGNATURE);
}

/* Attack: a well-formed release signed by a key the meter did not pin. */
static void test_unknown_key(void **ts)
{
    state_t *s = *ts;
    assert_int_equal(refusal(s, fx_offer(&s->f, R_UNKNOWN_KEY)), SIM_UPG_SIGNATURE);
}

/* Attack: a validly signed older version (and the same version) is never installed. */
static void test_rollback(void **ts)
{
    state_t *s = *ts;
    sim_upgrade_reason_t reason;
    assert_int_equal(refusal(s, fx_offer(&s->f, R_OLD)), SIM_UPG_ROLLBACK);
    assert_int_equal(
        check_json(s, fx_offer(&s->f, R_GOOD), "2.4.1", FX_NOW, &s->log, &reason, NULL),
        SIM_UPGRADE_REFUSE);
    assert_int_equal(reason, SIM_UPG_ROLLBACK);
    assert_int_equal(check_json(s, fx_offer(&s->f, R_GOOD), "2.10", FX_NOW, &s->log, &reason, NULL),
                     SIM_UPGRADE_REFUSE);
    assert_int_equal(reason, SIM_UPG_ROLLBACK);
    /* A meter that cannot compare its own version cannot prove anything newer. */
    assert_int_equal(
        check_json(s, fx_offer(&s->f, R_GOOD), "sim-1.0", FX_NOW, &s->log, &reason, NULL),
        SIM_UPGRADE_REFUSE);
    assert_int_equal(reason, SIM_UPG_ROLLBACK);
}

/* Attack: an expired manifest (freeze), and a good one once its time is up. */
static void test_expired(void **ts)
{
    state_t *s = *ts;
    sim_upgrade_reason_t reason;
    assert_int_equal(refusal(s, fx_offer(&s->f, R_EXPIRED)), SIM_UPG_EXPIRED);
    assert_int_equal(check_json(s, fx_offer(&s->f, R_GOOD), "2.0.0", FX_NOW + 90 * 86400, &s->log,
                                &reason, NULL),
                     SIM_UPGRADE_REFUSE);
    assert_int_equal(reason, SIM_UPG_EXPIRED);
    assert_int_equal(check_json(s, fx_offer(&s->f, R_GOOD), "2.0.0", FX_NOW + 90 * 86400 - 1,
                                &s->log, &reason, NULL),
                     SIM_UPGRADE_ACCEPT);
}

/* Attack: a release signed for other hardware (mix-and-match). */
static void test_other_hardware(void **ts)
{
    state_t *s = *ts;
    assert_int_equal(refusal(s, fx_offer(&s->f, R_OTHER_HW)), SIM_UPG_HARDWARE);
}

/* Attack: an image longer than the manifest says (endless data), and a short one. */
static void test_endless_data(void **ts)
{
    state_t *s = *ts;
    sim_image_check_t c;
    uint8_t more[16] = {0};

    assert_int_equal(sim_image_check_init(&c, FX_IMAGE_SIZE, s->f.image_sha256), 0);
    assert_int_equal(sim_image_check_feed(&c, s->f.image, FX_IMAGE_SIZE), SIM_UPG_OK);
    /* One byte more is refused, and not taken. */
    assert_int_equal(sim_image_check_feed(&c, more, 1), SIM_UPG_SIZE);
    assert_int_equal(c.received, FX_IMAGE_SIZE);
    sim_image_check_dispose(&c);
    /* A slice that crosses the end is refused whole. */
    assert_int_equal(sim_image_check_init(&c, FX_IMAGE_SIZE, s->f.image_sha256), 0);
    assert_int_equal(sim_image_check_feed(&c, s->f.image, FX_IMAGE_SIZE - 8), SIM_UPG_OK);
    assert_int_equal(sim_image_check_feed(&c, more, sizeof(more)), SIM_UPG_SIZE);
    sim_image_check_dispose(&c);
    /* Short: the image ends before the manifest's size. */
    assert_int_equal(sim_image_check_init(&c, FX_IMAGE_SIZE, s->f.image_sha256), 0);
    assert_int_equal(sim_image_check_feed(&c, s->f.image, FX_IMAGE_SIZE - 1), SIM_UPG_OK);
    assert_int_equal(sim_image_check_finish(&c), SIM_UPG_SIZE);
    sim_image_check_dispose(&c);
}

/* A download resumed elsewhere, then restarted from byte 0 by a server ignoring Range. */
static void test_image_restart(void **ts)
{
    state_t *s = *ts;
    sim_image_check_t c;
    assert_int_equal(sim_image_check_init(&c, FX_IMAGE_SIZE, s->f.image_sha256), 0);
    assert_int_equal(sim_image_check_feed(&c, s->f.image, 100), SIM_UPG_OK);
    assert_int_equal(sim_image_check_restart(&c), 0);
    assert_int_equal(c.received, 0);
    assert_int_equal(sim_image_check_feed(&c, s->f.image, FX_IMAGE_SIZE), SIM_UPG_OK);
    assert_int_equal(sim_image_check_finish(&c), SIM_UPG_OK);
    sim_image_check_dispose(&c);
}

/* Attack: a release missing from the public log, in each of its forms. */
static void test_not_in_log(void **ts)
{
    state_t *s = *ts;
    sim_upgrade_reason_t reason;
    json_t *offer;

    /* Properly chained after the log's head, but the log does not have it (yet): the meter
     * must fetch the log again, and refuses without a copy that can grow. */
    assert_int_equal(
        check_json(s, fx_offer(&s->f, R_UNLOGGED), "2.0.0", FX_NOW, &s->log, &reason, NULL),
        SIM_UPGRADE_NEED_LOG);
    assert_int_equal(
        check_json(s, fx_offer(&s->f, R_UNLOGGED), "2.0.0", FX_NOW, NULL, &reason, NULL),
        SIM_UPGRADE_REFUSE);
    assert_int_equal(reason, SIM_UPG_NOT_IN_LOG);
    /* Claims a place the log gives another release. */
    offer = fx_offer(&s->f, R_UNLOGGED);
    json_t *lg = json_object_get(offer, "log");
    json_object_set_new(lg, "seq", json_integer(s->f.r[R_GOOD].seq));
    json_object_set_new(lg, "prev", json_string(s->f.r[R_GOOD].prev));
    {
        char h[MH_RELEASE_HASH_HEX + 1];
        const fx_release_t *u = &s->f.r[R_UNLOGGED];
        mh_release_log_hash(s->f.r[R_GOOD].seq, s->f.r[R_GOOD].prev, u->manifest_sha256, u->sig, h);
        json_object_set_new(lg, "hash", json_string(h));
    }
    assert_int_equal(refusal(s, offer), SIM_UPG_NOT_IN_LOG);
    /* Log fields that are not this manifest's entry: another release's hash. */
    offer = fx_offer(&s->f, R_GOOD);
    json_object_set_new(json_object_get(offer, "log"), "hash", json_string(s->f.r[R_OLD].hash));
    assert_int_equal(refusal(s, offer), SIM_UPG_NOT_IN_LOG);
    /* A broken chain stops everything from the break on. */
    sim_release_log_t broken;
    sim_release_log_init(&broken);
    json_t *page = fx_page(&s->f, 0, R_N, -1);
    json_t *rel = json_object_get(page, "releases");
    json_object_set_new(json_object_get(json_array_get(rel, R_OTHER_HW), "log"), "prev",
                        json_string(s->f.r[R_OLD].hash));
    int64_t next;
    char err[160];
    assert_int_equal(sim_release_log_add_page(&broken, page, &next, err, sizeof(err)), R_OTHER_HW);
    json_decref(page);
    assert_true(broken.broken);
    assert_int_equal(broken.broken_seq, R_OTHER_HW + 1);
    assert_int_equal(
        check_json(s, fx_offer(&s->f, R_GOOD), "2.0.0", FX_NOW, &broken, &reason, NULL),
        SIM_UPGRADE_ACCEPT);
    assert_int_equal(
        check_json(s, fx_offer(&s->f, R_UNLOGGED), "2.0.0", FX_NOW, &broken, &reason, NULL),
        SIM_UPGRADE_REFUSE);
    assert_int_equal(reason, SIM_UPG_NOT_IN_LOG);
    sim_release_log_dispose(&broken);
}

/* Signed bytes that are not a manifest. */
static void test_signed_non_manifest(void **ts)
{
    state_t *s = *ts;
    assert_int_equal(refusal(s, fx_offer(&s->f, R_NOT_MANIFEST)), SIM_UPG_MANIFEST);
}

/* Offers that are not of the documented shape, or whose release id or url is not the
 * manifest's. */
static void test_malformed_offers(void **ts)
{
    state_t *s = *ts;
    static const char *const required[] = {"release", "manifest", "signature", "log", "url"};
    json_t *offer;

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        offer = fx_offer(&s->f, R_GOOD);
        json_object_del(offer, required[i]);
        assert_int_equal(refusal(s, offer), SIM_UPG_OFFER);
    }
    offer = fx_offer(&s->f, R_GOOD);
    json_object_set_new(offer, "manifest", json_string("not base64!"));
    assert_int_equal(refusal(s, offer), SIM_UPG_OFFER);
    offer = fx_offer(&s->f, R_GOOD);
    json_object_set_new(offer, "signature", json_string("AAAA"));
    assert_int_equal(refusal(s, offer), SIM_UPG_OFFER);
    offer = fx_offer(&s->f, R_GOOD);
    json_object_set_new(json_object_get(offer, "log"), "seq", json_string("2"));
    assert_int_equal(refusal(s, offer), SIM_UPG_OFFER);
    offer = fx_offer(&s->f, R_GOOD);
    json_object_set_new(json_object_get(offer, "log"), "seq", json_integer(0));
    assert_int_equal(refusal(s, offer), SIM_UPG_OFFER);
    offer = fx_offer(&s->f, R_GOOD);
    json_object_set_new(offer, "release", json_string(s->f.r[R_OLD].id));
    assert_int_equal(refusal(s, offer), SIM_UPG_OFFER);
    offer = fx_offer(&s->f, R_GOOD);
    json_object_set_new(offer, "url", json_string("/firmware/../../etc/passwd"));
    assert_int_equal(refusal(s, offer), SIM_UPG_OFFER);
    offer = json_string("upgrade");
    assert_int_equal(refusal(s, offer), SIM_UPG_OFFER);
    /* A manifest far beyond the bound is not even decoded. */
    char *big = malloc(20000);
    memset(big, 'A', 19996);
    memcpy(big + 19996, "AAA", 4);
    offer = fx_offer(&s->f, R_GOOD);
    json_object_set_new(offer, "manifest", json_string(big));
    free(big);
    assert_int_equal(refusal(s, offer), SIM_UPG_OFFER);
}

/* No pinned key: nothing verifies. */
static void test_no_key(void **ts)
{
    state_t *s = *ts;
    sim_meter_self_t self = {NULL, "flm02", "2.0.0", FX_NOW};
    sim_upgrade_offer_t o;
    sim_upgrade_reason_t reason;
    json_t *offer = fx_offer(&s->f, R_GOOD);
    assert_int_equal(sim_upgrade_offer_parse(offer, &o, &reason), 0);
    json_decref(offer);
    assert_int_equal(sim_upgrade_offer_check(&o, &self, &s->log, &reason), SIM_UPGRADE_REFUSE);
    assert_int_equal(reason, SIM_UPG_SIGNATURE);
    sim_upgrade_offer_dispose(&o);
}

static void test_reason_names(void **ts)
{
    (void)ts;
    assert_string_equal(sim_upgrade_reason_name(SIM_UPG_SIGNATURE), "signature");
    assert_string_equal(sim_upgrade_reason_name(SIM_UPG_NOT_IN_LOG), "not_in_log");
    assert_string_equal(sim_upgrade_reason_name(SIM_UPG_SHA256), "sha256");
    assert_false(sim_upgrade_reason_is_failure(SIM_UPG_SIZE));
    assert_true(sim_upgrade_reason_is_failure(SIM_UPG_DOWNLOAD));
    assert_true(sim_upgrade_reason_is_failure(SIM_UPG_LOG_UNAVAILABLE));
    for (int r = 0; r < SIM_UPG_REASONS; r++) {
        const char *n = sim_upgrade_reason_name((sim_upgrade_reason_t)r);
        /* The contract: 1 to 200 printable ASCII characters. */
        assert_true(strlen(n) >= 1 && strlen(n) <= 200);
        assert_string_not_equal(n, "?");
    }
}

/* ---- the log copy --------------------------------------------------------------------------- */

static void test_log_pages(void **ts)
{
    state_t *s = *ts;
    sim_release_log_t log;
    int64_t next = 0;
    char err[160];
    json_t *page;

    sim_release_log_init(&log);
    /* Two pages, the second overlapping the first (a page fetched again is harmless). */
    page = fx_page(&s->f, 0, 2, 2);
    assert_int_equal(sim_release_log_add_page(&log, page, &next, err, sizeof(err)), 2);
    assert_int_equal(next, 2);
    json_decref(page);
    page = fx_page(&s->f, 1, 4, -1);
    assert_int_equal(sim_release_log_add_page(&log, page, &next, err, sizeof(err)), 2);
    assert_int_equal(next, -1);
    json_decref(page);
    assert_int_equal(sim_release_log_head(&log), 4);
    assert_false(log.broken);
    assert_string_equal(sim_release_log_find(&log, 2)->hash, s->f.r[1].hash);
    assert_null(sim_release_log_find(&log, 5));
    assert_null(sim_release_log_find(&log, 0));
    /* An entry seen before that changed (another release at seq 1, well formed and chained
     * on its own) breaks the copy for good: the log was rewritten. */
    char zeros[MH_RELEASE_HASH_HEX + 1], h[MH_RELEASE_HASH_HEX + 1];
    memset(zeros, '0', MH_RELEASE_HASH_HEX);
    zeros[MH_RELEASE_HASH_HEX] = '\0';
    mh_release_log_hash(1, zeros, s->f.r[2].manifest_sha256, s->f.r[2].sig, h);
    page = fx_page(&s->f, 2, 3, -1);
    json_t *lg = json_object_get(json_array_get(json_object_get(page, "releases"), 0), "log");
    json_object_set_new(lg, "seq", json_integer(1));
    json_object_set_new(lg, "prev", json_string(zeros));
    json_object_set_new(lg, "hash", json_string(h));
    assert_int_equal(sim_release_log_add_page(&log, page, &next, err, sizeof(err)), 0);
    assert_string_equal(log.broken_why, "an entry already seen changed");
    json_decref(page);
    assert_true(log.broken);
    page = fx_page(&s->f, 4, 5, -1);
    assert_int_equal(sim_release_log_add_page(&log, page, &next, err, sizeof(err)), 0);
    json_decref(page);
    assert_int_equal(sim_release_log_head(&log), 4);
    sim_release_log_dispose(&log);
}

static void test_log_breaks(void **ts)
{
    state_t *s = *ts;
    int64_t next;
    char err[160];
    /* Each way an entry can fail to verify: the copy keeps what came before it. */
    static const struct {
        const char *field; /* in the entry, or "log.<x>" */
        const char *value;
    } cases[] = {
        {"log.hash", "0000000000000000000000000000000000000000000000000000000000000000"},
        {"manifest_sha256", "1111111111111111111111111111111111111111111111111111111111111111"},
        {"signature", "AAAA"},
        {"log.prev", "ABCDEF"},
        {"log.seq", "2"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sim_release_log_t log;
        sim_release_log_init(&log);
        json_t *page = fx_page(&s->f, 0, 3, -1);
        json_t *e = json_array_get(json_object_get(page, "releases"), 1);
        if (strncmp(cases[i].field, "log.", 4) == 0)
            json_object_set_new(json_object_get(e, "log"), cases[i].field + 4,
                                json_string(cases[i].value));
        else
            json_object_set_new(e, cases[i].field, json_string(cases[i].value));
        assert_int_equal(sim_release_log_add_page(&log, page, &next, err, sizeof(err)), 1);
        assert_true(log.broken);
        assert_int_equal(log.broken_seq, 2);
        assert_int_equal(sim_release_log_head(&log), 1);
        json_decref(page);
        sim_release_log_dispose(&log);
    }
    /* What is shown next to the chain is not part of it: another manifest or release id
     * shown for entry 2 does not break the copy, whose entry keeps the logged digest, and the
     * offer of the logged manifest still finds its entry. */
    {
        sim_release_log_t shown;
        sim_upgrade_reason_t reason;
        sim_release_log_init(&shown);
        json_t *page = fx_page(&s->f, 0, 3, -1);
        json_t *e = json_array_get(json_object_get(page, "releases"), 1);
        json_object_set_new(e, "manifest", json_string("bm90IHRoZSBtYW5pZmVzdAo="));
        json_object_set_new(e, "release", json_string("00000000000000000000000000000000"));
        assert_int_equal(sim_release_log_add_page(&shown, page, &next, err, sizeof(err)), 3);
        json_decref(page);
        assert_false(shown.broken);
        assert_string_equal(sim_release_log_find(&shown, 2)->manifest_sha256,
                            s->f.r[1].manifest_sha256);
        assert_string_equal(sim_release_log_find(&shown, 2)->release, s->f.r[1].id);
        assert_int_equal(
            check_json(s, fx_offer(&s->f, R_GOOD), "2.0.0", FX_NOW, &shown, &reason, NULL),
            SIM_UPGRADE_ACCEPT);
        sim_release_log_dispose(&shown);
    }
    /* A gap: entry 2 missing. */
    sim_release_log_t log;
    sim_release_log_init(&log);
    json_t *page = fx_page(&s->f, 0, 3, -1);
    json_array_remove(json_object_get(page, "releases"), 1);
    assert_int_equal(sim_release_log_add_page(&log, page, &next, err, sizeof(err)), 1);
    assert_true(log.broken);
    json_decref(page);
    sim_release_log_dispose(&log);
    /* Not a page at all: refused, the copy unchanged. */
    sim_release_log_init(&log);
    page = json_pack("{s:[]}", "release");
    assert_int_equal(sim_release_log_add_page(&log, page, &next, err, sizeof(err)), -1);
    json_decref(page);
    page = json_pack("{s:[], s:s}", "releases", "next_after", "2");
    assert_int_equal(sim_release_log_add_page(&log, page, &next, err, sizeof(err)), -1);
    json_decref(page);
    assert_false(log.broken);
    assert_int_equal(sim_release_log_head(&log), 0);
    sim_release_log_dispose(&log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_offer_and_image),
        cmocka_unit_test(test_image_tampered),
        cmocka_unit_test(test_manifest_tampered),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_other_hardware),
        cmocka_unit_test(test_endless_data),
        cmocka_unit_test(test_image_restart),
        cmocka_unit_test(test_not_in_log),
        cmocka_unit_test(test_signed_non_manifest),
        cmocka_unit_test(test_malformed_offers),
        cmocka_unit_test(test_no_key),
        cmocka_unit_test(test_reason_names),
        cmocka_unit_test(test_log_pages),
        cmocka_unit_test(test_log_breaks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
