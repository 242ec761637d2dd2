/*
 * The query side of reads, on the loop thread: GET /v1/sensors/{id}/readings and the
 * Flukso-compatible GET /sensor/{id}. Every parameter is checked here; an unknown or repeated
 * one is refused, not ignored. What the caller may see is decided on the database thread
 * (readings.c), once the caller and the sensor are known.
 */
#include "api_internal.h"

#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define API_READINGS_LIMIT_DEFAULT 1000
#define API_READINGS_LIMIT_MAX 10000
/* Timestamps accepted in a query: 1970 to 2100. */
#define API_TS_MAX 4102444800LL
/* Flukso reads without a resolution get the finest giving at most this many points. */
#define FLUKSO_POINTS_DEFAULT 1000

enum { P_FROM, P_TO, P_RESOLUTION, P_LIMIT, P_UNIT, P_INTERVAL, P_TOKEN, P_COUNT };

/* A query parameter a route takes; value is borrowed from the parsed query. */
typedef struct read_param {
    const char *name;
    const char *value;
} read_param_t;

/*
 * Parses the query into params (names set by the caller, NULL for those the route does not
 * take). Returns true, or false with a message in msg.
 */
static bool parse_query(struct evkeyvalq *kvs, read_param_t *params, char *msg, size_t msglen)
{
    char names[160] = "";
    for (int i = 0; i < P_COUNT; i++)
        if (params[i].name != NULL)
            snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
                     names[0] ? ", " : "", params[i].name);
    for (struct evkeyval *kv = kvs->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
        int i = 0;
        while (i < P_COUNT && (params[i].name == NULL || strcmp(params[i].name, kv->key) != 0))
            i++;
        if (i == P_COUNT) {
            snprintf(msg, msglen, "unknown parameter '%.40s' (%s)", kv->key, names);
            return false;
        }
        if (params[i].value != NULL) {
            snprintf(msg, msglen, "parameter '%s' given twice", kv->key);
            return false;
        }
        params[i].value = kv->value;
    }
    return true;
}

static bool accepts_csv(struct evhttp_request *req)
{
    const char *accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    return accept != NULL && strstr(accept, "text/csv") != NULL;
}

/* Checks the value of a unit parameter: a short printable string (the sensor decides). */
static bool unit_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n >= 16)
        return false;
    for (; *v; v++)
        if ((unsigned char)*v <= 0x20 || *v == 0x7f)
            return false;
    return true;
}

/*
 * The checks common to both routes: timestamps, resolution, unit. Fills the job's range from
 * params; returns true, or false with msg set.
 */
static bool fill_range(api_job_t *job, const read_param_t *p, char *msg, size_t msglen)
{
    int64_t v = 0;
    if (p[P_FROM].value != NULL) {
        if (!api_parse_int64(p[P_FROM].value, 0, API_TS_MAX, &v)) {
            snprintf(msg, msglen, "%s: Unix seconds, 0 to %lld", p[P_FROM].name, API_TS_MAX);
            return false;
        }
        job->range.from = v;
    }
    if (p[P_TO].value != NULL) {
        if (!api_parse_int64(p[P_TO].value, 0, API_TS_MAX, &v)) {
            snprintf(msg, msglen, "%s: Unix seconds, 0 to %lld", p[P_TO].name, API_TS_MAX);
            return false;
        }
        job->range.to = v;
    }
    if (p[P_RESOLUTION].value != NULL) {
        int res = api_resolution_parse(p[P_RESOLUTION].value);
        if (res < 0) {
            snprintf(msg, msglen, "resolution: raw, minute, 15min, hour, day or month");
            return false;
        }
        job->range.resolution = res;
        job->range.resolution_given = true;
    }
    if (p[P_LIMIT].name != NULL && p[P_LIMIT].value != NULL) {
        if (!api_parse_int64(p[P_LIMIT].value, 1, API_READINGS_LIMIT_MAX, &v)) {
            snprintf(msg, msglen, "limit: 1 to %d", API_READINGS_LIMIT_MAX);
            return false;
        }
        job->range.limit = (long)v;
    }
    return true;
}

/* Frees a job that was never submitted; it may hold a token. */
static void discard(api_job_t *job)
{
    OPENSSL_cleanse(job, sizeof(*job));
    free(job);
}

static void submit_read(api_server_t *srv, struct evhttp_request *req, api_job_t *job)
{
    if (job->range.to <= job->range.from) {
        api_send_error(srv, req, 400, "invalid_request",
                       "the end of the range must be after its start", 0);
        discard(job);
        return;
    }
    api_db_submit(srv, job);
}

/*
 * The start both routes share: the sensor id, the query's parameters into p (names set by the
 * caller; the values borrow from kvs, which the caller clears) and the common checks. Returns
 * a job for api_run_readings (owned by the caller) with *ok false and msg set if a parameter
 * is wrong, or NULL after answering.
 */
static api_job_t *read_job_new(api_server_t *srv, struct evhttp_request *req, const char *path_id,
                               struct evkeyvalq *kvs, read_param_t *p, char *msg, size_t msglen,
                               bool *ok)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    /* It initialises kvs, also when it fails. */
    if (evhttp_parse_query_str(query != NULL ? query : "", kvs) != 0) {
        api_send_error(srv, req, 400, "invalid_request", "malformed query string", 0);
        return NULL;
    }
    if (!api_hex_id(path_id)) {
        api_send_error(srv, req, 404, "not_found", "no such sensor", 0);
        return NULL;
    }
    api_job_t *job = api_job_new(srv, req, api_run_readings, API_SCOPE_READ);
    job->anonymous_ok = true;
    snprintf(job->path_id, sizeof(job->path_id), "%s", path_id);
    *ok = parse_query(kvs, p, msg, msglen) && fill_range(job, p, msg, msglen);
    return job;
}

void api_get_readings(api_server_t *srv, struct evhttp_request *req, const char *path_id)
{
    read_param_t p[P_COUNT] = {[P_FROM] = {"from", NULL},
                               [P_TO] = {"to", NULL},
                               [P_RESOLUTION] = {"resolution", NULL},
                               [P_LIMIT] = {"limit", NULL},
                               [P_UNIT] = {"unit", NULL}};
    struct evkeyvalq kvs;
    char msg[240] = "";
    bool ok = false;

    api_job_t *job = read_job_new(srv, req, path_id, &kvs, p, msg, sizeof(msg), &ok);
    if (job == NULL) {
        evhttp_clear_headers(&kvs);
        return;
    }
    if (!p[P_LIMIT].value)
        job->range.limit = API_READINGS_LIMIT_DEFAULT;
    if (!p[P_RESOLUTION].value)
        job->range.resolution = API_RES_RAW;
    job->range.format = accepts_csv(req) ? API_FMT_CSV : API_FMT_JSON;
    if (ok && (p[P_FROM].value == NULL || p[P_TO].value == NULL)) {
        snprintf(msg, sizeof(msg), "from and to are required (Unix seconds, [from, to))");
        ok = false;
    }
    if (ok && p[P_UNIT].value != NULL) {
        ok = unit_ok(p[P_UNIT].value);
        if (ok)
            snprintf(job->range.unit, sizeof(job->range.unit), "%s", p[P_UNIT].value);
        else
            snprintf(msg, sizeof(msg), "unit: a unit name such as W, Wh, kWh/year, L/min");
    }
    evhttp_clear_headers(&kvs);
    if (!ok) {
        api_send_error(srv, req, 400, "invalid_request", msg, 0);
        discard(job);
        return;
    }
    if (!api_take_token(srv, req, job)) {
        discard(job);
        return;
    }
    submit_read(srv, req, job);
}

/* The span of a Flukso interval, in seconds, or 0. */
static int64_t flukso_interval(const char *v)
{
    static const struct {
        const char *name;
        int64_t seconds;
    } intervals[] = {{"hour", 3600}, {"day", 86400}, {"month", 30 * 86400}, {"year", 365 * 86400}};
    for (size_t i = 0; i < sizeof(intervals) / sizeof(intervals[0]); i++)
        if (strcmp(v, intervals[i].name) == 0)
            return intervals[i].seconds;
    return 0;
}

/* The token of X-Token, else of the token parameter, else the Authorization header's. */
static bool flukso_token(api_server_t *srv, struct evhttp_request *req, const char *param,
                         api_job_t *job)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Token");
    const char *t = h != NULL ? h : param;
    if (t == NULL)
        return api_take_token(srv, req, job);
    if (strlen(t) >= sizeof(job->token)) {
        api_send_error(srv, req, 401, "invalid_token", "the token is not valid", 0);
        return false;
    }
    snprintf(job->token, sizeof(job->token), "%s", t);
    return true;
}

void api_get_flukso(api_server_t *srv, struct evhttp_request *req, const char *path_id)
{
    read_param_t p[P_COUNT] = {[P_FROM] = {"start", NULL},
                               [P_TO] = {"end", NULL},
                               [P_RESOLUTION] = {"resolution", NULL},
                               [P_UNIT] = {"unit", NULL},
                               [P_INTERVAL] = {"interval", NULL},
                               [P_TOKEN] = {"token", NULL}};
    struct evkeyvalq kvs;
    const char *version = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Version");
    char msg[240] = "";
    int64_t now = (int64_t)time(NULL);
    bool ok = false;

    if (version != NULL && strcmp(version, "1.0") != 0) {
        api_send_error(srv, req, 400, "unsupported_version", "X-Version: only 1.0 is served", 0);
        return;
    }
    api_job_t *job = read_job_new(srv, req, path_id, &kvs, p, msg, sizeof(msg), &ok);
    if (job == NULL) {
        evhttp_clear_headers(&kvs);
        return;
    }
    if (!p[P_LIMIT].value)
        job->range.limit = API_READINGS_LIMIT_MAX;
    job->range.format = accepts_csv(req) ? API_FMT_FLUKSO_CSV : API_FMT_FLUKSO;
    if (!p[P_TO].value)
        job->range.to = now;
    if (ok && p[P_INTERVAL].value != NULL) {
        int64_t span = flukso_interval(p[P_INTERVAL].value);
        if (span == 0) {
            snprintf(msg, sizeof(msg), "interval: hour, day, month or year");
            ok = false;
        } else if (p[P_FROM].value != NULL || p[P_TO].value != NULL) {
            snprintf(msg, sizeof(msg), "give either interval or start (and end), not both");
            ok = false;
        } else {
            job->range.from = now - span;
        }
    } else if (ok && p[P_FROM].value == NULL) {
        snprintf(msg, sizeof(msg), "give interval (hour, day, month, year) or start (and end)");
        ok = false;
    }
    if (ok && p[P_UNIT].value != NULL) {
        const char *unit = api_flukso_unit(p[P_UNIT].value);
        if (unit == NULL) {
            snprintf(msg, sizeof(msg), "unit: watt, kwhperyear, lpermin, lperday or m3peryear");
            ok = false;
        } else {
            snprintf(job->range.unit, sizeof(job->range.unit), "%s", unit);
        }
    }
    if (ok && !job->range.resolution_given) {
        /* The finest resolution giving a modest number of points; the database thread makes
         * it coarser still if the caller may not see it. */
        int res = API_RES_MINUTE;
        while (res < API_RES_MONTH &&
               (job->range.to - job->range.from) / api_resolution_seconds(res) >
                   FLUKSO_POINTS_DEFAULT)
            res++;
        job->range.resolution = res;
    }
    if (ok)
        ok = flukso_token(srv, req, p[P_TOKEN].value, job);
    else
        api_send_error(srv, req, 400, "invalid_request", msg, 0);
    evhttp_clear_headers(&kvs);
    if (!ok) {
        discard(job);
        return;
    }
    submit_read(srv, req, job);
}
