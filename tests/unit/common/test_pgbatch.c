/*
 * Unit tests of common/pgbatch.c where PostgreSQL cannot be reached (a socket directory that
 * does not exist, so nothing touches the network): every item comes back exactly once, as
 * undecided, never from inside mh_pgbatch_add; a full queue refuses; freeing answers what
 * waits. Answers PostgreSQL does give, and their order, are tested end to end by
 * tests/integration/ingest_upgrade.sh (a burst of downloads) against a real server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdlib.h>

#include "common/pgbatch.h"

#define NITEMS 40
#define UNREACHABLE "host=/nonexistent/meterhub-test dbname=x connect_timeout=1"

typedef struct fixture {
    struct event_base *base;
    int answered[NITEMS]; /* times each item was answered */
    int decided;          /* answers with a result: none expected here */
    int failed;           /* failed() calls */
    int elements;         /* element() calls */
    int refuse_element;   /* element() returns NULL for items whose index is a multiple */
    int total;
} fixture_t;

typedef struct item {
    fixture_t *f;
    int index;
} item_t;

static json_t *element(void *p, void *arg)
{
    item_t *it = p;
    fixture_t *f = arg;
    f->elements++;
    if (f->refuse_element > 0 && it->index % f->refuse_element == 0)
        return NULL;
    return json_pack("{s:i}", "i", it->index);
}

static void answer(void *p, const PGresult *res, int row, void *arg)
{
    item_t *it = p;
    fixture_t *f = arg;
    (void)row;
    f->answered[it->index]++;
    f->total++;
    if (res != NULL)
        f->decided++;
    free(it);
    if (f->total == NITEMS)
        event_base_loopbreak(f->base);
}

static void failed(const PGresult *res, const char *err, void *arg)
{
    (void)res;
    (void)err;
    ((fixture_t *)arg)->failed++;
}

static const mh_pgbatch_ops_t ops = {
    .sql = "SELECT 1",
    .ncols = 1,
    .element = element,
    .answer = answer,
    .failed = failed,
};

static item_t *new_item(fixture_t *f, int index)
{
    item_t *it = malloc(sizeof(*it));
    assert_non_null(it);
    it->f = f;
    it->index = index;
    return it;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    *state = f;
    return f->base == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    event_base_free(f->base);
    free(f);
    return 0;
}

/* Runs the loop until every item is answered, 5 s at most. */
static void run(fixture_t *f)
{
    struct timeval bound = {5, 0};
    event_base_loopexit(f->base, &bound);
    event_base_dispatch(f->base);
}

static void test_every_item_answered_once_when_down(void **state)
{
    fixture_t *f = *state;
    mh_pgbatch_t *b = mh_pgbatch_new(f->base, UNREACHABLE, "unit", 1000, 2, 8, 100, &ops, f);
    assert_non_null(b);
    for (int i = 0; i < NITEMS; i++)
        assert_int_equal(mh_pgbatch_add(b, new_item(f, i)), 0);
    assert_int_equal(f->total, 0); /* never from inside mh_pgbatch_add */
    run(f);
    assert_int_equal(f->total, NITEMS);
    for (int i = 0; i < NITEMS; i++)
        assert_int_equal(f->answered[i], 1);
    assert_int_equal(f->decided, 0);
    /* 40 items, 8 a batch: at least 5 batches, each failing as one. */
    assert_true(f->failed >= 5);
    assert_true(f->failed <= NITEMS);
    mh_pgbatch_free(b);
    assert_int_equal(f->total, NITEMS);
}

static void test_an_item_without_element_is_answered_unsent(void **state)
{
    fixture_t *f = *state;
    f->refuse_element = 2;
    mh_pgbatch_t *b = mh_pgbatch_new(f->base, UNREACHABLE, "unit", 1000, 1, 256, 100, &ops, f);
    assert_non_null(b);
    for (int i = 0; i < NITEMS; i++)
        assert_int_equal(mh_pgbatch_add(b, new_item(f, i)), 0);
    run(f);
    assert_int_equal(f->total, NITEMS);
    for (int i = 0; i < NITEMS; i++)
        assert_int_equal(f->answered[i], 1);
    assert_int_equal(f->elements, NITEMS);
    mh_pgbatch_free(b);
}

static void test_a_full_queue_refuses(void **state)
{
    fixture_t *f = *state;
    mh_pgbatch_t *b = mh_pgbatch_new(f->base, UNREACHABLE, "unit", 1000, 1, 8, 3, &ops, f);
    assert_non_null(b);
    item_t *kept[3];
    for (int i = 0; i < 3; i++) {
        kept[i] = new_item(f, i);
        assert_int_equal(mh_pgbatch_add(b, kept[i]), 0);
    }
    item_t *extra = new_item(f, 3);
    assert_int_equal(mh_pgbatch_add(b, extra), -1); /* not taken: still the caller's */
    free(extra);
    mh_pgbatch_free(b);
    assert_int_equal(f->total, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(f->answered[i], 1);
    assert_int_equal(f->answered[3], 0);
}

static void test_free_answers_what_waits(void **state)
{
    fixture_t *f = *state;
    mh_pgbatch_t *b = mh_pgbatch_new(f->base, UNREACHABLE, "unit", 1000, 2, 4, 100, &ops, f);
    assert_non_null(b);
    for (int i = 0; i < 10; i++)
        assert_int_equal(mh_pgbatch_add(b, new_item(f, i)), 0);
    mh_pgbatch_free(b);
    assert_int_equal(f->total, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(f->answered[i], 1);
    mh_pgbatch_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_item_answered_once_when_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_item_without_element_is_answered_unsent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_full_queue_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_answers_what_waits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
