/* Unit tests of the simulated household profiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "device-sim/profile.h"

#define JAN_2024 1704067200LL /* Monday 1 January 2024, 00:00 UTC */
#define JUL_2024 1719792000LL /* Monday 1 July 2024, 00:00 UTC */
#define DAY 86400
#define WEEK (7 * DAY)
#define HOUSEHOLDS 40

/* One device's four sensors (electricity, gas, water, power) over [start, start + span). */
typedef struct series {
    size_t n;
    bool *ok;
    double *v;
} series_t;

static void run(series_t *s, uint64_t seed, uint64_t device, unsigned sensor, int64_t start,
                int64_t span, int64_t step)
{
    sim_profile_t p;
    sim_profile_init(&p, seed, device, sensor);
    s->n = (size_t)(span / step);
    s->ok = calloc(s->n, sizeof(*s->ok));
    s->v = calloc(s->n, sizeof(*s->v));
    assert_non_null(s->ok);
    assert_non_null(s->v);
    for (size_t i = 0; i < s->n; i++)
        s->ok[i] = sim_profile_next(&p, start + (int64_t)i * step, &s->v[i]);
}

static void series_free(series_t *s)
{
    free(s->ok);
    free(s->v);
}

static void test_kinds(void **state)
{
    assert_int_equal(sim_profile_kind(0), SIM_ELECTRICITY_WH);
    assert_int_equal(sim_profile_kind(1), SIM_GAS_L);
    assert_int_equal(sim_profile_kind(2), SIM_WATER_L);
    assert_int_equal(sim_profile_kind(3), SIM_POWER_W);
    assert_int_equal(sim_profile_kind(6), SIM_WATER_L);
    assert_true(sim_profile_is_counter(SIM_ELECTRICITY_WH));
    assert_true(sim_profile_is_counter(SIM_GAS_L));
    assert_true(sim_profile_is_counter(SIM_WATER_L));
    assert_false(sim_profile_is_counter(SIM_POWER_W));
}

static void test_init(void **state)
{
    for (uint64_t d = 0; d < 200; d++) {
        sim_profile_t p[4];
        for (unsigned s = 0; s < 4; s++) {
            sim_profile_init(&p[s], 99, d, s);
            assert_int_equal(p[s].kind, s);
            assert_int_equal(p[s].last_ts, 0);
            assert_true(p[s].rng != 0);
            assert_true(p[s].household >= 0.5 && p[s].household <= 2.0);
            assert_true(p[s].gap_prob > 0 && p[s].gap_prob < 0.05);
        }
        /* The sensors of a device are one household with separate streams. */
        for (unsigned s = 1; s < 4; s++) {
            assert_true(p[s].household == p[0].household);
            assert_true(p[s].rng != p[0].rng);
        }
        /* Seeded plausible meter readings. */
        assert_true(p[0].counter >= 1e6 && p[0].counter <= 5e7);
        assert_true(p[1].counter >= 1e5 && p[1].counter <= 5e7);
        assert_true(p[2].counter >= 1e4 && p[2].counter <= 1e7);
    }
}

static void test_deterministic_per_seed(void **state)
{
    for (uint64_t d = 0; d < 3; d++) {
        for (unsigned s = 0; s < 4; s++) {
            series_t a, b, c;
            run(&a, 1, d, s, JAN_2024, DAY, 60);
            run(&b, 1, d, s, JAN_2024, DAY, 60);
            run(&c, 2, d, s, JAN_2024, DAY, 60);
            /* Bit-identical values and identical gaps. */
            assert_memory_equal(a.ok, b.ok, a.n * sizeof(*a.ok));
            assert_memory_equal(a.v, b.v, a.n * sizeof(*a.v));
            size_t differ = 0;
            for (size_t i = 0; i < a.n; i++)
                differ += a.ok[i] && c.ok[i] && a.v[i] != c.v[i];
            assert_true(differ > a.n / 2);
            series_free(&a);
            series_free(&b);
            series_free(&c);
        }
    }
    /* Another device of the same seed is another household. */
    series_t x, y;
    run(&x, 1, 10, 3, JAN_2024, DAY, 60);
    run(&y, 1, 11, 3, JAN_2024, DAY, 60);
    assert_true(memcmp(x.v, y.v, x.n * sizeof(*x.v)) != 0);
    series_free(&x);
    series_free(&y);
}

/* Counters never decrease and stay finite; gauges are finite and within 0..20 kW. Returns the
 * number of gaps. */
static size_t check_series(const series_t *s, sim_sensor_kind_t kind)
{
    size_t gaps = 0;
    double last = -1;
    for (size_t i = 0; i < s->n; i++) {
        if (!s->ok[i]) {
            gaps++;
            continue;
        }
        assert_true(isfinite(s->v[i]));
        if (sim_profile_is_counter(kind)) {
            assert_true(s->v[i] >= last);
            last = s->v[i];
        } else {
            assert_true(s->v[i] >= 0 && s->v[i] <= 20000);
        }
    }
    return gaps;
}

static void test_week_at_60s(void **state)
{
    size_t gaps = 0, readings = 0;
    for (uint64_t d = 0; d < 10; d++) {
        for (unsigned s = 0; s < 4; s++) {
            series_t a;
            run(&a, 5, d, s, JUL_2024 - 3 * DAY, WEEK, 60);
            gaps += check_series(&a, sim_profile_kind(s));
            readings += a.n;
            series_free(&a);
        }
    }
    /* About 0.5 % of the readings are skipped: 403 expected out of 80640. */
    assert_true(gaps > readings * 3 / 1000 && gaps < readings * 7 / 1000);
}

static void test_day_at_1s(void **state)
{
    size_t gaps = 0, readings = 0;
    for (unsigned s = 0; s < 4; s++) {
        series_t a;
        run(&a, 6, 3, s, JAN_2024 + 20 * DAY, DAY, 1);
        gaps += check_series(&a, sim_profile_kind(s));
        readings += a.n;
        series_free(&a);
    }
    assert_true(gaps > readings * 3 / 1000 && gaps < readings * 7 / 1000);
}

static void test_gaps_and_jumps(void **state)
{
    /* Irregular intervals, an outage of two days, a repeated and a backwards timestamp: the
     * counter still only moves forward, and the outage's consumption shows up. */
    sim_profile_t p;
    sim_profile_init(&p, 8, 4, 0);
    double v1, v2, v3;
    (void)sim_profile_next(&p, JAN_2024, &v1);
    int64_t ts = JAN_2024;
    double last = p.counter;
    for (int i = 0; i < 500; i++) {
        ts += 1 + (i * 37) % 300;
        double v;
        if (sim_profile_next(&p, ts, &v))
            assert_true(v >= floor(last));
        assert_true(p.counter >= last);
        last = p.counter;
    }
    double before = p.counter;
    (void)sim_profile_next(&p, ts + 2 * DAY, &v1);
    /* Two days of a household: at least a couple of kWh, at most ~80. */
    assert_true(p.counter - before > 2000 && p.counter - before < 80000);
    before = p.counter;
    (void)sim_profile_next(&p, ts + 2 * DAY, &v2);
    (void)sim_profile_next(&p, ts, &v3);
    assert_true(p.counter == before);
    assert_int_equal(p.last_ts, ts + 2 * DAY);
}

/* Per-household daily means over a week of 60 s readings starting at start. */
static void daily_means(int64_t start, double *elec_kwh, double *gas_l, double *water_l,
                        double *power_kwh)
{
    for (uint64_t d = 0; d < HOUSEHOLDS; d++) {
        double per_day[4];
        for (unsigned s = 0; s < 4; s++) {
            series_t a;
            run(&a, 21, d, s, start, WEEK, 60);
            if (s < 3) {
                size_t i = 0, j = a.n - 1;
                while (!a.ok[i])
                    i++;
                while (!a.ok[j])
                    j--;
                per_day[s] = (a.v[j] - a.v[i]) / ((double)(j - i) * 60 / DAY);
            } else {
                /* The gauge's mean, as energy per day. */
                double sum = 0;
                size_t n = 0;
                for (size_t i = 0; i < a.n; i++) {
                    if (a.ok[i]) {
                        sum += a.v[i];
                        n++;
                    }
                }
                per_day[s] = sum / (double)n * 24 / 1000;
            }
            series_free(&a);
        }
        elec_kwh[d] = per_day[0] / 1000;
        gas_l[d] = per_day[1];
        water_l[d] = per_day[2];
        power_kwh[d] = per_day[3];
    }
}

static double mean_of(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return s / (double)n;
}

static void test_plausible_totals(void **state)
{
    double elec[HOUSEHOLDS], gas_w[HOUSEHOLDS], water[HOUSEHOLDS], power[HOUSEHOLDS];
    double gas_s[HOUSEHOLDS], scratch[HOUSEHOLDS];
    daily_means(JAN_2024, elec, gas_w, water, power);
    for (size_t d = 0; d < HOUSEHOLDS; d++) {
        assert_true(elec[d] > 2 && elec[d] < 40);
        assert_true(water[d] > 50 && water[d] < 1000);
        /* A winter day heats with one to a few tens of cubic metres. */
        assert_true(gas_w[d] > 1000 && gas_w[d] < 40000);
        /* The gauge shows the load the electricity counter integrates. */
        assert_true(fabs(power[d] - elec[d]) < 0.05 * elec[d]);
    }
    assert_true(mean_of(elec, HOUSEHOLDS) > 5 && mean_of(elec, HOUSEHOLDS) < 20);
    assert_true(mean_of(water, HOUSEHOLDS) > 150 && mean_of(water, HOUSEHOLDS) < 600);

    daily_means(JUL_2024, scratch, gas_s, scratch, scratch);
    /* Summer gas is hot water and cooking only. */
    assert_true(mean_of(gas_s, HOUSEHOLDS) < 2000);
    assert_true(mean_of(gas_w, HOUSEHOLDS) > 5 * mean_of(gas_s, HOUSEHOLDS));
}

static void test_daily_shape(void **state)
{
    /* Mean power by hour of day over households and a week. */
    double by_hour[24] = {0};
    size_t n_hour[24] = {0};
    double water_by_hour[24] = {0};
    for (uint64_t d = 0; d < 20; d++) {
        series_t pw, wa;
        run(&pw, 33, d, 3, JAN_2024, WEEK, 60);
        run(&wa, 33, d, 2, JAN_2024, WEEK, 60);
        double last_w = -1;
        for (size_t i = 0; i < pw.n; i++) {
            int h = (int)(i * 60 % DAY / 3600);
            if (pw.ok[i]) {
                by_hour[h] += pw.v[i];
                n_hour[h]++;
            }
            if (wa.ok[i]) {
                if (last_w >= 0)
                    water_by_hour[h] += wa.v[i] - last_w;
                last_w = wa.v[i];
            }
        }
        series_free(&pw);
        series_free(&wa);
    }
    double night = 0, evening = 0, morning = 0;
    for (int h = 1; h < 5; h++)
        night += by_hour[h] / (double)n_hour[h] / 4;
    for (int h = 19; h < 21; h++)
        evening += by_hour[h] / (double)n_hour[h] / 2;
    for (int h = 7; h < 8; h++)
        morning += by_hour[h] / (double)n_hour[h];
    assert_true(evening > 2 * night);
    assert_true(morning > 1.5 * night);
    /* Water is drawn mostly in the morning and evening, hardly at night. */
    double w_night = 0, w_peaks = 0;
    for (int h = 1; h < 5; h++)
        w_night += water_by_hour[h];
    for (int h = 6; h < 9; h++)
        w_peaks += water_by_hour[h];
    for (int h = 18; h < 22; h++)
        w_peaks += water_by_hour[h];
    assert_true(w_peaks > 5 * w_night);
}

/* A counter continues from the value the service stored in an earlier run, never below. */
static void test_continue(void **state)
{
    sim_profile_t p;
    double v = 0, first = 0;
    int64_t t = 1800000000;
    sim_profile_init(&p, 7, 3, 0);
    while (!sim_profile_next(&p, t, &first))
        t++;
    sim_profile_init(&p, 7, 3, 0);
    sim_profile_continue(&p, first + 12345);
    t = 1800000000;
    while (!sim_profile_next(&p, t, &v))
        t++;
    assert_true(v >= first + 12345);
    double before = v;
    sim_profile_continue(&p, 1.0); /* lower: no effect */
    while (!sim_profile_next(&p, ++t, &v))
        ;
    assert_true(v >= before);

    sim_profile_t g;
    double w1 = 0, w2 = 0;
    sim_profile_init(&g, 7, 3, 3);
    sim_profile_next(&g, 1800000000, &w1);
    sim_profile_init(&g, 7, 3, 3);
    sim_profile_continue(&g, 1e9); /* gauges are not counters */
    sim_profile_next(&g, 1800000000, &w2);
    assert_true(w1 == w2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_deterministic_per_seed),
        cmocka_unit_test(test_week_at_60s),
        cmocka_unit_test(test_day_at_1s),
        cmocka_unit_test(test_gaps_and_jumps),
        cmocka_unit_test(test_plausible_totals),
        cmocka_unit_test(test_daily_shape),
        cmocka_unit_test(test_continue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
