/*
 * Unit tests of the writer's pure logic (writer.c, metrics.c): stream reply parsing, entry
 * decoding, batch filling, backoff, metrics and health rendering. No server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ingest/writer/metrics.c"
#include "ingest/writer/store.c"
#include "ingest/writer/writer.c"

#include <event2/buffer.h>

/* ---- hand-built hiredis replies (freed with freeReplyObject, like real ones) ---- */

static redisReply *r_new(int type)
{
    redisReply *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->type = type;
    return r;
}

static redisReply *r_str(const char *s, size_t len)
{
    redisReply *r = r_new(REDIS_REPLY_STRING);
    r->str = malloc(len + 1);
    memcpy(r->str, s, len);
    r->str[len] = '\0';
    r->len = len;
    return r;
}

static redisReply *r_cstr(const char *s)
{
    return r_str(s, strlen(s));
}

static redisReply *r_nil(void)
{
    return r_new(REDIS_REPLY_NIL);
}

static redisReply *r_arr(size_t n, ...)
{
    va_list ap;
    redisReply *r = r_new(REDIS_REPLY_ARRAY);
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof(*r->element));
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

/* [id, ["e", payload]] */
static redisReply *r_entry(const char *id, const void *payload, size_t len)
{
    return r_arr(2, r_cstr(id), r_arr(2, r_cstr("e"), r_str(payload, len)));
}

/* ---- protobuf helpers ---- */

static size_t pack_batch(uint8_t *buf, uint64_t sensor, const int64_t *ts, size_t nts,
                         const double *v, size_t nv)
{
    Meterhub__QueueEntry q = METERHUB__QUEUE_ENTRY__INIT;
    Meterhub__SensorBatch sb = METERHUB__SENSOR_BATCH__INIT;
    sb.sensor = sensor;
    sb.n_ts = nts;
    sb.ts = (int64_t *)ts;
    sb.n_value = nv;
    sb.value = (double *)v;
    q.body_case = METERHUB__QUEUE_ENTRY__BODY_BATCH;
    q.batch = &sb;
    return meterhub__queue_entry__pack(&q, buf);
}

static size_t pack_n(uint8_t *buf, uint64_t sensor, size_t n)
{
    int64_t ts[64];
    double v[64];
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) {
        ts[i] = 1700000000 + (int64_t)i;
        v[i] = (double)i;
    }
    return pack_batch(buf, sensor, ts, n, v, n);
}

static size_t pack_heartbeat(uint8_t *buf, uint64_t device, const char *fw)
{
    Meterhub__QueueEntry q = METERHUB__QUEUE_ENTRY__INIT;
    Meterhub__Heartbeat hb = METERHUB__HEARTBEAT__INIT;
    hb.device = device;
    hb.ts = 1700000123;
    hb.firmware_version = (char *)fw;
    hb.remote_upgrade = 1;
    q.body_case = METERHUB__QUEUE_ENTRY__BODY_HEARTBEAT;
    q.heartbeat = &hb;
    return meterhub__queue_entry__pack(&q, buf);
}

/* ---- parsing ---- */

static void test_parse_read_reply(void **state)
{
    wr_entries_t e = {0};
    uint8_t buf[256];
    size_t n = pack_n(buf, 5, 3);
    redisReply *r = r_arr(
        1, r_arr(2, r_cstr("mh:{0}:q"),
                 r_arr(4, r_entry("1-0", buf, n),
                       r_arr(2, r_cstr("2-0"), r_nil()), /* deleted while pending */
                       r_arr(2, r_cstr("3-0"), r_arr(2, r_cstr("x"), r_cstr("y"))),
                       r_arr(2, r_cstr("4-0"),
                             r_arr(4, r_cstr("src"), r_cstr("z"), r_cstr("e"), r_cstr("p"))))));

    assert_int_equal(wr_parse_read_reply(r, &e), 0);
    assert_int_equal(e.n, 4);
    assert_string_equal(e.v[0].id, "1-0");
    assert_int_equal(e.v[0].payload_len, n);
    assert_memory_equal(e.v[0].payload, buf, n);
    assert_false(e.v[0].deleted);
    assert_true(e.v[1].deleted);
    assert_null(e.v[2].payload); /* no field "e" */
    assert_false(e.v[2].deleted);
    assert_string_equal(e.v[3].payload, "p"); /* "e" found after other fields */
    wr_entries_dispose(&e);
    freeReplyObject(r);

    /* BLOCK timeout. */
    r = r_nil();
    assert_int_equal(wr_parse_read_reply(r, &e), 0);
    assert_int_equal(e.n, 0);
    freeReplyObject(r);

    /* Our pending history is empty: [[key, []]]. */
    r = r_arr(1, r_arr(2, r_cstr("mh:{0}:q"), r_arr(0)));
    assert_int_equal(wr_parse_read_reply(r, &e), 0);
    assert_int_equal(e.n, 0);
    freeReplyObject(r);
    wr_entries_dispose(&e);
}

/* ingest queues the batches of one loop turn as one entry with a field "e" each. */
static void test_parse_grouped_entry(void **state)
{
    wr_entries_t e = {0};
    redisReply *r =
        r_arr(1, r_arr(2, r_cstr("mh:{0}:q"),
                       r_arr(3,
                             r_arr(2, r_cstr("1-0"),
                                   r_arr(6, r_cstr("e"), r_cstr("a"), r_cstr("e"), r_cstr("b"),
                                         r_cstr("e"), r_cstr("c"))),
                             r_entry("2-0", "d", 1),
                             r_arr(2, r_cstr("3-0"),
                                   r_arr(4, r_cstr("e"), r_cstr("f"), r_cstr("e"), r_cstr("g"))))));

    assert_int_equal(wr_parse_read_reply(r, &e), 0);
    assert_int_equal(e.n, 6);
    const char *ids[] = {"1-0", "1-0", "1-0", "2-0", "3-0", "3-0"};
    const char *payloads[] = {"a", "b", "c", "d", "f", "g"};
    for (size_t i = 0; i < 6; i++) {
        assert_string_equal(e.v[i].id, ids[i]);
        assert_int_equal(e.v[i].payload_len, 1);
        assert_memory_equal(e.v[i].payload, payloads[i], 1);
    }
    assert_int_equal(wr_entries_count_ids(&e), 3);
    wr_entries_clear(&e);
    assert_int_equal(wr_entries_count_ids(&e), 0);
    wr_entries_dispose(&e);
    freeReplyObject(r);
}

static void test_parse_malformed(void **state)
{
    wr_entries_t e = {0};
    redisReply *r = r_cstr("OK");
    assert_int_equal(wr_parse_read_reply(r, &e), -1);
    freeReplyObject(r);
    assert_int_equal(wr_parse_read_reply(NULL, &e), -1);

    r = r_arr(1, r_arr(1, r_cstr("key")));
    assert_int_equal(wr_parse_read_reply(r, &e), -1);
    freeReplyObject(r);

    /* An entry whose id is not a string. */
    r = r_arr(1, r_arr(2, r_cstr("key"), r_arr(1, r_arr(2, r_nil(), r_nil()))));
    assert_int_equal(wr_parse_read_reply(r, &e), -1);
    freeReplyObject(r);
    wr_entries_dispose(&e);
}

static void test_parse_claim_reply(void **state)
{
    wr_entries_t e = {0};
    char cursor[WR_ID_MAX] = "";
    /* Redis 7: [cursor, entries, deleted ids]; Redis 6.2: nil for a deleted entry. */
    redisReply *r = r_arr(3, r_cstr("1700000000000-5"), r_arr(2, r_entry("9-1", "abc", 3), r_nil()),
                          r_arr(1, r_cstr("8-0")));
    assert_int_equal(wr_parse_claim_reply(r, cursor, sizeof(cursor), &e), 0);
    assert_string_equal(cursor, "1700000000000-5");
    assert_int_equal(e.n, 1);
    assert_string_equal(e.v[0].id, "9-1");
    freeReplyObject(r);
    wr_entries_clear(&e);

    r = r_arr(2, r_cstr("0-0"), r_arr(0));
    assert_int_equal(wr_parse_claim_reply(r, cursor, sizeof(cursor), &e), 0);
    assert_string_equal(cursor, "0-0");
    assert_int_equal(e.n, 0);
    freeReplyObject(r);

    char small[4];
    r = r_arr(2, r_cstr("12345-0"), r_arr(0));
    assert_int_equal(wr_parse_claim_reply(r, small, sizeof(small), &e), -1);
    freeReplyObject(r);
    r = r_arr(1, r_cstr("0-0"));
    assert_int_equal(wr_parse_claim_reply(r, cursor, sizeof(cursor), &e), -1);
    freeReplyObject(r);
    wr_entries_dispose(&e);
}

/* ---- decoding ---- */

static void test_decode_batch_and_heartbeat(void **state)
{
    wr_batch_t b;
    char reason[256];
    uint8_t buf[256];
    wr_batch_init(&b);

    size_t n = pack_n(buf, 42, 5);
    assert_int_equal(wr_decode_entry((char *)buf, n, &b, reason, sizeof(reason)), 0);
    assert_int_equal(b.nreadings, 5);
    assert_int_equal(b.readings[4].sensor, 42);
    assert_int_equal(b.readings[4].ts, 1700000004);
    assert_true(b.readings[4].value == 4.0);

    n = pack_heartbeat(buf, 7, "2.1.0");
    assert_int_equal(wr_decode_entry((char *)buf, n, &b, reason, sizeof(reason)), 0);
    assert_int_equal(b.nheartbeats, 1);
    assert_int_equal(b.heartbeats[0].device, 7);
    assert_int_equal(b.heartbeats[0].ts, 1700000123);
    assert_string_equal(b.heartbeats[0].firmware, "2.1.0");
    assert_true(b.heartbeats[0].remote_upgrade);

    /* An empty sensor batch is valid and adds nothing. */
    n = pack_batch(buf, 42, NULL, 0, NULL, 0);
    assert_int_equal(wr_decode_entry((char *)buf, n, &b, reason, sizeof(reason)), 0);
    assert_int_equal(b.nreadings, 5);
    wr_batch_dispose(&b);
}

static void test_decode_refusals(void **state)
{
    wr_batch_t b;
    char reason[256];
    uint8_t buf[256];
    int64_t ts[2] = {1, 2};
    double v[2] = {1.0, NAN};
    size_t n;
    wr_batch_init(&b);
    wr_batch_add_reading(&b, 1, 1, 1.0);

    assert_int_equal(wr_decode_entry("\xff\xff garbage", 10, &b, reason, sizeof(reason)), -1);
    assert_string_equal(reason, "not a meterhub.QueueEntry protobuf");

    n = pack_batch(buf, 3, ts, 2, v, 1);
    assert_int_equal(wr_decode_entry((char *)buf, n, &b, reason, sizeof(reason)), -1);
    assert_non_null(strstr(reason, "2 timestamps but 1 values"));

    n = pack_batch(buf, 3, ts, 2, v, 2);
    assert_int_equal(wr_decode_entry((char *)buf, n, &b, reason, sizeof(reason)), -1);
    assert_non_null(strstr(reason, "value 1 is not finite"));

    n = pack_batch(buf, 0, ts, 1, v, 1);
    assert_int_equal(wr_decode_entry((char *)buf, n, &b, reason, sizeof(reason)), -1);
    assert_non_null(strstr(reason, "invalid sensor 0"));

    n = pack_batch(buf, (uint64_t)INT64_MAX + 1, ts, 1, v, 1);
    assert_int_equal(wr_decode_entry((char *)buf, n, &b, reason, sizeof(reason)), -1);
    assert_non_null(strstr(reason, "invalid sensor"));

    n = pack_heartbeat(buf, 0, "1");
    assert_int_equal(wr_decode_entry((char *)buf, n, &b, reason, sizeof(reason)), -1);
    assert_non_null(strstr(reason, "invalid device 0"));

    /* A QueueEntry with no body: an empty message. */
    assert_int_equal(wr_decode_entry("", 0, &b, reason, sizeof(reason)), -1);
    assert_non_null(strstr(reason, "neither"));

    assert_int_equal(wr_decode_entry("x", WR_ENTRY_MAX_BYTES + 1, &b, reason, sizeof(reason)), -1);
    assert_non_null(strstr(reason, "too large"));

    /* Every refusal left the batch as it was. */
    assert_int_equal(b.nreadings, 1);
    assert_int_equal(b.nheartbeats, 0);
    wr_batch_dispose(&b);
}

/* ---- batch filling ---- */

static void test_fill_batch_groups(void **state)
{
    uint8_t p10[1024], p30[1024], hb[64];
    size_t n10 = pack_n(p10, 1, 10), n30 = pack_n(p30, 2, 30), nhb = pack_heartbeat(hb, 3, "1");
    wr_entries_t e = {0};
    wr_batch_t b;
    wr_batch_init(&b);

    /* 0:10 1:garbage 2:30 3:deleted 4:no "e" 5:heartbeat 6:10 7:10 */
    const struct {
        const void *p;
        size_t n;
        bool deleted;
    } spec[] = {{p10, n10, false}, {"junk", 4, false}, {p30, n30, false}, {NULL, 0, true},
                {NULL, 0, false},  {hb, nhb, false},   {p10, n10, false}, {p10, n10, false}};
    for (size_t i = 0; i < 8; i++) {
        wr_entry_t *x = entries_push(&e);
        x->id = "1-1";
        x->payload = spec[i].p;
        x->payload_len = spec[i].n;
        x->deleted = spec[i].deleted;
    }

    /* At most 45 readings per statement: 10 + 30, then 10 would make 50. */
    size_t end = wr_fill_batch(&e, 0, &b, 45);
    assert_int_equal(end, 6);
    assert_int_equal(b.nreadings, 40);
    assert_int_equal(b.nheartbeats, 1);
    assert_non_null(e.v[1].reason);
    assert_null(e.v[3].reason); /* deleted: acknowledged, not dead-lettered */
    assert_string_equal(e.v[4].reason, "no field \"e\"");
    assert_null(e.v[0].reason);

    wr_batch_reset(&b);
    end = wr_fill_batch(&e, end, &b, 45);
    assert_int_equal(end, 8);
    assert_int_equal(b.nreadings, 20);

    /* An entry larger than the limit still goes, alone. */
    wr_batch_reset(&b);
    end = wr_fill_batch(&e, 2, &b, 5);
    assert_int_equal(end, 3);
    assert_int_equal(b.nreadings, 30);

    /* Dead entries keep their first reason. */
    wr_entry_set_dead(&e.v[1], "second");
    assert_string_not_equal(e.v[1].reason, "second");

    wr_batch_dispose(&b);
    wr_entries_dispose(&e);
}

/* ---- backoff ---- */

static void test_backoff(void **state)
{
    wr_backoff_t b;
    wr_backoff_init(&b, 12345);
    long expect = WR_BACKOFF_MIN_MS;
    for (int i = 0; i < 20; i++) {
        long d = wr_backoff_next(&b);
        assert_in_range(d, expect / 2, expect);
        expect = expect * 2 > WR_BACKOFF_MAX_MS ? WR_BACKOFF_MAX_MS : expect * 2;
    }
    assert_int_equal(b.next_ms, WR_BACKOFF_MAX_MS);
    wr_backoff_reset(&b);
    assert_in_range(wr_backoff_next(&b), 50, 100);

    /* Jitter: two writers with different seeds do not retry in lockstep. */
    wr_backoff_t a, c;
    int same = 0;
    wr_backoff_init(&a, 1);
    wr_backoff_init(&c, 2);
    for (int i = 0; i < 20; i++)
        same += wr_backoff_next(&a) == wr_backoff_next(&c);
    assert_true(same < 10);
    wr_backoff_init(&a, 0); /* seed 0 would stick xorshift at 0 */
    assert_int_not_equal(a.rng, 0);
}

/* ---- metrics ---- */

static char *buffer_string(struct evbuffer *buf)
{
    size_t n = evbuffer_get_length(buf);
    char *s = malloc(n + 1);
    evbuffer_remove(buf, s, n);
    s[n] = '\0';
    return s;
}

static void test_metrics_render(void **state)
{
    wr_conf_t conf = {.batch_size = 10, .block_ms = 100, .claim_idle_ms = 1000};
    mh_redis_conf_t redis = {
        .host = "127.0.0.1", .port = 1, .prefix = "mh", .shards = 2, .timeout_ms = 100};
    wr_writer_t *w[2] = {wr_writer_new(&conf, &redis, "dbname=x", "c1", 0),
                         wr_writer_new(&conf, &redis, "dbname=x", "c1", 1)};
    struct evbuffer *buf = evbuffer_new();

    wr_metrics_add(&w[1]->metrics.readings_read, 100);
    wr_metrics_add(&w[1]->metrics.readings_inserted, 60);
    wr_metrics_observe_commit(&w[1]->metrics, 3000);    /* 3 ms: le 0.005 */
    wr_metrics_observe_commit(&w[1]->metrics, 9000000); /* 9 s: +Inf only */
    wr_metrics_render(buf, w, 2);
    char *s = buffer_string(buf);
    assert_non_null(strstr(s, "# TYPE meterhub_writer_entries_read_total counter\n"));
    assert_non_null(strstr(s, "meterhub_writer_readings_read_total{shard=\"1\"} 100\n"));
    assert_non_null(strstr(s, "meterhub_writer_readings_duplicate_total{shard=\"1\"} 40\n"));
    assert_non_null(strstr(s, "meterhub_writer_readings_duplicate_total{shard=\"0\"} 0\n"));
    assert_non_null(
        strstr(s, "meterhub_writer_commit_seconds_bucket{shard=\"1\",le=\"0.0025\"} 0\n"));
    assert_non_null(
        strstr(s, "meterhub_writer_commit_seconds_bucket{shard=\"1\",le=\"0.005\"} 1\n"));
    assert_non_null(strstr(s, "meterhub_writer_commit_seconds_bucket{shard=\"1\",le=\"5\"} 1\n"));
    assert_non_null(
        strstr(s, "meterhub_writer_commit_seconds_bucket{shard=\"1\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(s, "meterhub_writer_commit_seconds_sum{shard=\"1\"} 9.003000\n"));
    assert_non_null(strstr(s, "meterhub_writer_commit_seconds_count{shard=\"1\"} 2\n"));
    /* Gauges not yet known are left out rather than reported as 0. */
    assert_null(strstr(s, "meterhub_writer_pending{"));
    assert_non_null(strstr(s, "meterhub_writer_up{shard=\"0\",server=\"postgres\"} 0\n"));
    free(s);

    atomic_store(&w[0]->metrics.pending, 7);
    wr_metrics_render(buf, w, 2);
    s = buffer_string(buf);
    assert_non_null(strstr(s, "meterhub_writer_pending{shard=\"0\"} 7\n"));
    free(s);

    /* Health: every shard needs both connections. */
    assert_false(wr_health_render(buf, w, 2));
    s = buffer_string(buf);
    assert_non_null(strstr(s, "\"status\": \"unavailable\""));
    free(s);
    for (int i = 0; i < 2; i++) {
        atomic_store(&w[i]->metrics.postgres_up, true);
        atomic_store(&w[i]->metrics.redis_up, true);
    }
    assert_true(wr_health_render(buf, w, 2));
    s = buffer_string(buf);
    assert_non_null(strstr(s, "{\"shard\": 1, \"postgres\": true, \"redis\": true}"));
    assert_non_null(strstr(s, "\"status\": \"ok\""));
    free(s);
    atomic_store(&w[1]->metrics.redis_up, false);
    assert_false(wr_health_render(buf, w, 2));
    evbuffer_drain(buf, evbuffer_get_length(buf));

    evbuffer_free(buf);
    wr_writer_free(w[0]);
    wr_writer_free(w[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_read_reply),
        cmocka_unit_test(test_parse_grouped_entry),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_claim_reply),
        cmocka_unit_test(test_decode_batch_and_heartbeat),
        cmocka_unit_test(test_decode_refusals),
        cmocka_unit_test(test_fill_batch_groups),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_metrics_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
