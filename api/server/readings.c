/*
 * Reads of a sensor's data, on a database thread: the privacy rules, then one statement.
 *
 * Who may read what is decided by api_sensor_access() (deploy/sql/007_api_privacy.sql): the
 * owner everything; a grantee of a shared sensor nothing finer than the grant; anyone a public
 * sensor's data no finer than its public resolution and nothing newer than its delay; anyone
 * else finds no sensor at all. The same rules stand behind this code as row-level security
 * policies on the readings and rollup tables.
 *
 * Buckets: minute and 15-minute ones are made from raw readings, hour and day ones are the
 * rollups, month ones are made from the daily rollups. A bucket's value is the mean (gauge) or
 * the last reading (counter); a rate is the increase since the last reading of the previous
 * bucket that has one, over the time between the two.
 */
#include "api_internal.h"

#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Parameters of every read: $1 sensor sid, $2 from, $3 to (Unix seconds, [from, to)), $4 most
 * rows, $5 value mode ("last", "mean", "rate"), $6 factor; buckets also $7, the newest instant
 * the data may describe (NULL: now is fine).
 */
#define VALUE_SQL                                                                                  \
    "CASE WHEN d.n IS NULL THEN NULL"                                                              \
    " WHEN $5 = 'mean' THEN d.sum / d.n * $6::float8"                                              \
    " WHEN $5 = 'last' THEN d.last_value * $6::float8"                                             \
    " ELSE (d.last_value - d.plv) / nullif(extract(epoch FROM d.last_ts - d.plt)::float8, 0)"      \
    " * $6::float8 END"

/* The rows of the range and, for a rate, the one before it, each with its predecessor's. */
#define DERIVED_SQL                                                                                \
    " d AS (SELECT x.*, lag(x.last_ts) OVER w AS plt, lag(x.last_value) OVER w AS plv"             \
    " FROM (SELECT * FROM src UNION ALL SELECT * FROM prev) x WINDOW w AS (ORDER BY x.bucket))"

/*
 * A series of buckets from the one holding `from`, bounded by `to`, by the number of rows
 * and by $7 (only whole buckets older than it), each joined with its row of src (columns
 * bucket, n, sum, last_ts, last_value), NULL for a bucket without readings. The series stops
 * after $4 buckets, so that a query over a century does not build a million of them.
 */
#define BUCKETS_SQL(trunc_from, trunc_not_after, step, src, prev)                                  \
    "WITH bounds AS (SELECT l.lo, least(to_timestamp($3), l.lo + $4::int * interval '" step "',"   \
    " " trunc_not_after ") AS hi FROM (SELECT " trunc_from " AS lo) l),"                           \
    " src AS (" src "), prev AS (" prev "), " DERIVED_SQL " SELECT extract(epoch FROM b)::bigint," \
    " " VALUE_SQL " FROM bounds, generate_series(bounds.lo, bounds.hi - interval '1 microsecond'," \
    " interval '" step "') AS b LEFT JOIN d ON d.bucket = b ORDER BY b LIMIT $4::int"

#define ROLLUP_COLUMNS "r.bucket, r.n, r.sum, r.last_ts, r.last_value"

/* Buckets of a rollup table. */
#define ROLLUP_SQL(unit, table)                                                                    \
    BUCKETS_SQL("date_trunc('" unit "', to_timestamp($2), 'UTC')",                                 \
                "date_trunc('" unit "', $7::timestamptz, 'UTC')", "1 " unit,                       \
                "SELECT " ROLLUP_COLUMNS " FROM " table " r, bounds WHERE r.sensor = $1::bigint"   \
                " AND r.bucket >= bounds.lo AND r.bucket < bounds.hi",                             \
                "SELECT " ROLLUP_COLUMNS " FROM " table " r, bounds WHERE $5 = 'rate'"             \
                " AND r.sensor = $1::bigint AND r.bucket < bounds.lo"                              \
                " ORDER BY r.bucket DESC LIMIT 1")

/*
 * Where a rate from raw readings looks for the reading before `start`: the day before it. The
 * bounds are expressions of the parameters, not of a CTE, so that PostgreSQL prunes the
 * monthly partitions of readings to the one or two that day lies in; unbounded, it would probe
 * every partition for its newest row. A reading more than a day older gives no rate.
 */
#define PREV_WINDOW_SQL(start) " AND r.ts < " start " AND r.ts >= " start " - interval '1 day'"

/* Buckets made from raw readings; the last reading of a bucket is its latest one. */
#define BINNED_SQL(step)                                                                           \
    BUCKETS_SQL("date_bin(interval '" step "', to_timestamp($2), timestamptz 'epoch')",            \
                "date_bin(interval '" step "', $7::timestamptz, timestamptz 'epoch')", step,       \
                "SELECT date_bin(interval '" step "', r.ts, timestamptz 'epoch') AS bucket,"       \
                " count(*)::int AS n, sum(r.value) AS sum, max(r.ts) AS last_ts,"                  \
                " (array_agg(r.value ORDER BY r.ts DESC))[1] AS last_value"                        \
                " FROM readings r, bounds WHERE r.sensor = $1::bigint"                             \
                " AND r.ts >= bounds.lo AND r.ts < bounds.hi GROUP BY 1",                          \
                "SELECT r.ts, 1, r.value, r.ts, r.value FROM readings r WHERE $5 = 'rate'"         \
                " AND r.sensor = $1::bigint" PREV_WINDOW_SQL(                                      \
                    "date_bin(interval '" step                                                     \
                    "', to_timestamp($2), timestamptz 'epoch')") " ORDER BY r.ts DESC LIMIT 1")

static const char *const read_sql[API_RES_COUNT] = {
    [API_RES_RAW] =
        "WITH src AS (SELECT r.ts AS bucket, 1 AS n, r.value AS sum, r.ts AS last_ts,"
        " r.value AS last_value FROM readings r WHERE r.sensor = $1::bigint"
        " AND r.ts >= to_timestamp($2) AND r.ts < to_timestamp($3) ORDER BY r.ts LIMIT $4::int),"
        " prev AS (SELECT r.ts, 1, r.value, r.ts, r.value FROM readings r WHERE $5 = 'rate'"
        " AND r.sensor = $1::bigint" PREV_WINDOW_SQL(
            "to_timestamp($2)") " ORDER BY r.ts DESC LIMIT 1),"
                                " " DERIVED_SQL
                                " SELECT extract(epoch FROM d.bucket)::bigint, " VALUE_SQL
                                " FROM d WHERE d.bucket >= to_timestamp($2) ORDER BY d.bucket",
    [API_RES_MINUTE] = BINNED_SQL("1 minute"),
    [API_RES_15MIN] = BINNED_SQL("15 minutes"),
    [API_RES_HOUR] = ROLLUP_SQL("hour", "readings_hourly"),
    [API_RES_DAY] = ROLLUP_SQL("day", "readings_daily"),
    [API_RES_MONTH] = BUCKETS_SQL(
        "date_trunc('month', to_timestamp($2), 'UTC')",
        "date_trunc('month', $7::timestamptz, 'UTC')", "1 month",
        "SELECT date_trunc('month', r.bucket, 'UTC') AS bucket, sum(r.n)::int AS n,"
        " sum(r.sum) AS sum, max(r.last_ts) AS last_ts,"
        " (array_agg(r.last_value ORDER BY r.bucket DESC))[1] AS last_value"
        " FROM readings_daily r, bounds WHERE r.sensor = $1::bigint"
        " AND r.bucket >= bounds.lo AND r.bucket < bounds.hi GROUP BY 1",
        "SELECT " ROLLUP_COLUMNS " FROM readings_daily r, bounds WHERE $5 = 'rate'"
        " AND r.sensor = $1::bigint AND r.bucket < bounds.lo ORDER BY r.bucket DESC LIMIT 1"),
};

/* What api_sensor_access() said of the sensor. */
typedef struct sensor_access {
    char sid[24];
    char type[16];
    char unit[16];
    char kind[16];
    char access[16]; /* "owner", "grantee", "public" */
    int finest;      /* api_resolution_t */
    bool has_not_after;
    char not_after[40]; /* timestamptz text */
} sensor_access_t;

/* 1 found (and allowed to be seen), 0 not, -1 after api_db_fail. */
static int sensor_access(api_job_t *job, PGconn *pg, sensor_access_t *a)
{
    const char *values[1] = {job->path_id};
    static const char sql[] = "SELECT sid, type, unit, kind, access, finest, not_after"
                              " FROM api_sensor_access($1)";
    PGresult *r = api_db_exec_cached(pg, sql, 1, values, NULL, NULL);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        api_db_fail(job, pg, "finding a sensor");
        return -1;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        return 0;
    }
    snprintf(a->sid, sizeof(a->sid), "%s", PQgetvalue(r, 0, 0));
    snprintf(a->type, sizeof(a->type), "%s", PQgetvalue(r, 0, 1));
    snprintf(a->unit, sizeof(a->unit), "%s", PQgetvalue(r, 0, 2));
    snprintf(a->kind, sizeof(a->kind), "%s", PQgetvalue(r, 0, 3));
    snprintf(a->access, sizeof(a->access), "%s", PQgetvalue(r, 0, 4));
    a->finest = api_resolution_parse(PQgetvalue(r, 0, 5));
    a->has_not_after = !PQgetisnull(r, 0, 6);
    snprintf(a->not_after, sizeof(a->not_after), "%s", PQgetvalue(r, 0, 6));
    PQclear(r);
    /* A resolution the C code does not know is treated as the coarsest. */
    if (a->finest < 0)
        a->finest = API_RES_MONTH;
    return 1;
}

/* Text of the rows as CSV: "ts,value" lines, gap for a NULL. Returns a malloc'd string. */
static char *readings_csv(const PGresult *r, int n, const char *header, const char *gap)
{
    size_t gaplen = strlen(gap), hlen = strlen(header), cap = hlen + 1, len = hlen;
    for (int i = 0; i < n; i++)
        cap += (size_t)PQgetlength(r, i, 0) + (size_t)PQgetlength(r, i, 1) + gaplen + 2;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    memcpy(out, header, hlen);
    for (int i = 0; i < n; i++) {
        bool null = PQgetisnull(r, i, 1);
        const char *v = null ? gap : PQgetvalue(r, i, 1);
        size_t a = (size_t)PQgetlength(r, i, 0), b = null ? gaplen : (size_t)PQgetlength(r, i, 1);
        memcpy(out + len, PQgetvalue(r, i, 0), a);
        out[len + a] = ',';
        memcpy(out + len + a + 1, v, b);
        out[len + a + 1 + b] = '\n';
        len += a + b + 2;
    }
    out[len] = '\0';
    return out;
}

static json_t *points_json(const PGresult *r, int n, json_t *(*gap)(void))
{
    json_t *points = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(
            points,
            json_pack("[I, o]", (json_int_t)strtoll(PQgetvalue(r, i, 0), NULL, 10),
                      PQgetisnull(r, i, 1) ? gap() : json_real(strtod(PQgetvalue(r, i, 1), NULL))));
    return points;
}

static json_t *flukso_gap(void)
{
    return json_string("nan");
}

/* Sets the job's answer from the n rows of r (n <= the limit). */
static int answer(api_job_t *job, const PGresult *r, int n, const sensor_access_t *a,
                  const api_unit_rule_t *rule, int res, json_t *next)
{
    const char *unit = rule->unit != NULL ? rule->unit : a->unit;
    switch (job->range.format) {
    case API_FMT_CSV:
    case API_FMT_FLUKSO_CSV:
        job->text = job->range.format == API_FMT_CSV ? readings_csv(r, n, "ts,value\n", "")
                                                     : readings_csv(r, n, "", "nan");
        job->text_type = "text/csv";
        json_decref(next);
        return job->text != NULL ? 0 : -1;
    case API_FMT_FLUKSO:
        json_decref(next);
        job->out = points_json(r, n, flukso_gap);
        return 0;
    default:
        job->out = json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:o, s:o}", "sensor", job->path_id, "access",
            a->access, "resolution", api_resolution_name(res), "type", a->type, "unit", unit,
            "kind", a->kind, "from", (json_int_t)job->range.from, "to", (json_int_t)job->range.to,
            "points", points_json(r, n, json_null), "next_from", next);
        return job->out != NULL ? 0 : -1;
    }
}

void api_run_readings(api_job_t *job, PGconn *pg)
{
    sensor_access_t a;
    PGresult *r = NULL;
    char from[24], to[24], limit[24], factor[40];
    int res = job->range.resolution;

    if (api_db_begin_as(job, pg) < 0)
        return;
    int found = sensor_access(job, pg, &a);
    if (found < 0)
        return;
    if (found == 0) {
        api_db_commit(job, pg);
        /* Another account's private sensor and one that does not exist look the same. */
        api_job_error(job, 404, "not_found", "no such sensor");
        return;
    }
    if (res < a.finest) {
        if (job->range.resolution_given) {
            api_db_commit(job, pg);
            api_job_error(job, 403, "resolution_not_allowed",
                          "this sensor's data is available to you at %s resolution or coarser",
                          api_resolution_name(a.finest));
            return;
        }
        res = a.finest;
    }
    const char *want = job->range.unit;
    if (want[0] == '\0' &&
        (job->range.format == API_FMT_FLUKSO || job->range.format == API_FMT_FLUKSO_CSV))
        want = strcmp(a.kind, "electricity") == 0 ? "W" : "L/min"; /* Flukso's defaults */
    const api_unit_rule_t *rule = api_unit_rule(a.unit, a.type, want);
    if (rule == NULL) {
        char units[160];
        api_unit_list(a.unit, a.type, units, sizeof(units));
        api_db_commit(job, pg);
        api_job_error(job, 400, "invalid_request", "unit: this sensor (%s %s) reads in %s", a.unit,
                      a.type, units);
        return;
    }

    snprintf(from, sizeof(from), "%lld", (long long)job->range.from);
    snprintf(to, sizeof(to), "%lld", (long long)job->range.to);
    /* One more than asked: its presence says there is a next page, and where it starts. */
    snprintf(limit, sizeof(limit), "%ld", job->range.limit + 1);
    snprintf(factor, sizeof(factor), "%.17g", rule->factor);
    const char *values[7] = {a.sid,
                             from,
                             to,
                             limit,
                             api_value_mode_name(rule->mode),
                             factor,
                             a.has_not_after ? a.not_after : NULL};
    r = api_db_exec_cached(pg, read_sql[res], res == API_RES_RAW ? 6 : 7, values, NULL, NULL);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        api_db_fail(job, pg, "reading readings");
        return;
    }
    int n = PQntuples(r);
    json_t *next = json_null();
    if (n > job->range.limit) {
        n = (int)job->range.limit;
        json_decref(next);
        next = json_integer((json_int_t)strtoll(PQgetvalue(r, n, 0), NULL, 10));
        if (job->range.format == API_FMT_FLUKSO || job->range.format == API_FMT_FLUKSO_CSV) {
            /* Flukso's reads have no continuation: the caller narrows the range instead. */
            json_decref(next);
            PQclear(r);
            api_db_commit(job, pg);
            api_job_error(job, 400, "too_many_points",
                          "more than %ld points; narrow the range or coarsen the resolution",
                          job->range.limit);
            return;
        }
    }
    int rc = answer(job, r, n, &a, rule, res, next);
    PQclear(r);
    if (rc == 0 && strcmp(a.access, "owner") != 0) {
        /* The owner's audit trail counts every read by anyone else, in the same transaction:
         * no data leaves without its entry. */
        char points[24];
        snprintf(points, sizeof(points), "%d", n);
        const char *note[2] = {a.sid, points};
        static const char note_sql[] = "SELECT api_note_foreign_read($1::bigint, $2::bigint)";
        r = api_db_exec_cached(pg, note_sql, 2, note, NULL, NULL);
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (!ok) {
            free(job->text);
            job->text = NULL;
            api_db_fail(job, pg, "noting a foreign read");
            return;
        }
    }
    if (api_db_commit(job, pg) != 0) {
        free(job->text);
        job->text = NULL;
        return;
    }
    if (rc != 0) {
        api_job_error(job, 500, "internal", "out of memory");
        return;
    }
    job->status = 200;
}
