/*
 * HTTP side of meterhub-api, on the loop thread: routing, bearer tokens, request bodies,
 * and JSON answers. Every answer is JSON (errors: {"error": code, "message": text}) and is
 * never cached, since some carry tokens.
 */
#include "api_internal.h"

#include "common/alloc.h"
#include "common/log.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum { ST_2XX, ST_400, ST_401, ST_403, ST_404, ST_OTHER };

void api_count_status(api_server_t *srv, int status)
{
    int i = status >= 200 && status < 300 ? ST_2XX
            : status == 400               ? ST_400
            : status == 401               ? ST_401
            : status == 403               ? ST_403
            : status == 404               ? ST_404
                                          : ST_OTHER;
    atomic_fetch_add_explicit(&srv->metrics.requests[i], 1, memory_order_relaxed);
}

/*
 * Sends status with a body of content type (NULL: none) and counts it; NULL reason: libevent
 * supplies the standard phrase. The body is wiped from our copy once queued: a fresh token may
 * be in it.
 */
static void send_body(api_server_t *srv, struct evhttp_request *req, int status, const char *type,
                      const char *body, int retry_after)
{
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
    evhttp_add_header(hdr, "Cache-Control", "no-store");
    if (retry_after > 0) {
        char v[16];
        snprintf(v, sizeof(v), "%d", retry_after);
        evhttp_add_header(hdr, "Retry-After", v);
    }
    if (status == 401)
        evhttp_add_header(hdr, "WWW-Authenticate", "Bearer realm=\"meterhub\"");
    if (type != NULL && body != NULL) {
        evhttp_add_header(hdr, "Content-Type", type);
        evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    }
    api_count_status(srv, status);
    evhttp_send_reply(req, status, NULL, NULL);
}

/* Sends status with body (taken; NULL: no body), dumped with flags added to JSON_COMPACT. */
static void send_json(api_server_t *srv, struct evhttp_request *req, int status, json_t *body,
                      int retry_after, size_t flags)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | flags) : NULL;
    send_body(srv, req, status, "application/json", text, retry_after);
    if (text != NULL) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    json_decref(body);
}

void api_send_error(api_server_t *srv, struct evhttp_request *req, int status, const char *code,
                    const char *message, int retry_after)
{
    send_json(srv, req, status, json_pack("{s:s, s:s}", "error", code, "message", message),
              retry_after, 0);
}

/* Sends the job's answer, whatever its kind. */
static void send_answer(api_job_t *job)
{
    api_server_t *srv = job->srv;
    if (job->err_code != NULL)
        api_send_error(srv, job->req, job->status, job->err_code, job->err_msg, job->retry_after);
    else if (job->status == 0)
        api_send_error(srv, job->req, 500, "internal", "the request was not answered", 0);
    else if (job->text != NULL) {
        send_body(srv, job->req, job->status, job->text_type, job->text, 0);
    } else {
        send_json(srv, job->req, job->status, job->out, 0, job->dump_flags);
        job->out = NULL;
    }
}

void api_job_answer(api_job_t *job)
{
    api_server_t *srv = job->srv;
    int64_t now = (int64_t)time(NULL);
    if (job->login_failed) {
        api_limits_failed(srv->limits, job->username, job->peer, now);
        atomic_fetch_add_explicit(&srv->metrics.logins_failed, 1, memory_order_relaxed);
        /* The username may be anything; the address is what an operator can act on. */
        mh_log(MH_LOG_WARN, "api: failed login from %s", job->peer);
    } else if (job->login_ok) {
        api_limits_succeeded(srv->limits, job->username, now);
        atomic_fetch_add_explicit(&srv->metrics.logins_ok, 1, memory_order_relaxed);
    }
    if (job->address_used)
        api_limits_address_used(srv->limits, job->peer, now);
    /* A stream answers for itself once it has begun; until then its job answers as any other. */
    bool streamed = job->stream != NULL &&
                    api_stream_end(job->stream, job->err_code == NULL && job->status == 200);
    job->stream = NULL;
    if (!streamed)
        send_answer(job);
    free(job->text);
    json_decref(job->in);
    json_decref(job->out);
    OPENSSL_cleanse(job, sizeof(*job));
    free(job);
}

static void peer_name(struct evhttp_request *req, char *out, size_t outlen)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, &addr, &port);
    snprintf(out, outlen, "%s", addr ? addr : "?");
}

api_job_t *api_job_new(api_server_t *srv, struct evhttp_request *req, api_job_run_fn run,
                       api_scope_t need)
{
    api_job_t *job = mh_calloc(1, sizeof(*job));
    job->srv = srv;
    job->req = req;
    job->run = run;
    job->need = need;
    peer_name(req, job->peer, sizeof(job->peer));
    return job;
}

/*
 * Copies the bearer token of the Authorization header into job->token. A missing header
 * leaves it empty (the run function answers 401); a malformed one is refused here.
 */
bool api_take_token(api_server_t *srv, struct evhttp_request *req, api_job_t *job)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (h == NULL)
        return true;
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        api_send_error(srv, req, 401, "unauthorized", "use Authorization: Bearer <token>", 0);
        return false;
    }
    h += 7;
    while (*h == ' ')
        h++;
    if (strlen(h) >= sizeof(job->token)) {
        api_send_error(srv, req, 401, "invalid_token", "the token is not valid", 0);
        return false;
    }
    snprintf(job->token, sizeof(job->token), "%s", h);
    return true;
}

/* The request body as a JSON object (owned), or NULL after answering 4xx. */
static json_t *read_json(api_server_t *srv, struct evhttp_request *req)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0 ||
        (ct[16] != '\0' && ct[16] != ';' && ct[16] != ' ')) {
        api_send_error(srv, req, 415, "unsupported_media_type",
                       "send Content-Type: application/json", 0);
        return NULL;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    json_error_t jerr;
    json_t *root =
        json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "malformed JSON at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        api_send_error(srv, req, 400, "malformed_json", msg, 0);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        api_send_error(srv, req, 400, "malformed_json", "the body must be a JSON object", 0);
        return NULL;
    }
    return root;
}

static bool printable(const char *s, size_t max)
{
    size_t n = 0;
    for (; *s; s++, n++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f || n >= max)
            return false;
    return n > 0;
}

/* POST /v1/tokens {"username", "password", "scope"?, "name"?, "expires_in"?} */
static void post_tokens(api_server_t *srv, struct evhttp_request *req)
{
    const api_conf_t *c = &srv->cfg->api;
    json_t *in = read_json(srv, req);
    const char *username = NULL, *password = NULL, *scope = "read", *name = "api";
    json_int_t expires_in = (json_int_t)c->token_default_ttl_s;
    json_t *expires = NULL;
    json_error_t jerr;
    char msg[300];

    if (in == NULL)
        return;
    /* JSON_STRICT: a field we do not know is refused, not ignored. */
    if (json_unpack_ex(in, &jerr, JSON_STRICT, "{s:s, s:s, s?:s, s?:s, s?:o}", "username",
                       &username, "password", &password, "scope", &scope, "name", &name,
                       "expires_in", &expires) != 0) {
        snprintf(msg, sizeof(msg), "%s (fields: username, password, scope, name, expires_in)",
                 jerr.text);
        json_decref(in);
        api_send_error(srv, req, 400, "invalid_request", msg, 0);
        return;
    }
    if (!printable(username, 64)) {
        json_decref(in);
        api_send_error(srv, req, 400, "invalid_request", "username: 1 to 64 printable characters",
                       0);
        return;
    }
    if (strcmp(scope, "read") != 0 && strcmp(scope, "manage") != 0) {
        json_decref(in);
        api_send_error(srv, req, 400, "invalid_request", "scope: \"read\" or \"manage\"", 0);
        return;
    }
    if (!printable(name, 64)) {
        json_decref(in);
        api_send_error(srv, req, 400, "invalid_request", "name: 1 to 64 printable characters", 0);
        return;
    }
    if (expires != NULL) {
        if (!json_is_integer(expires) || json_integer_value(expires) < 60 ||
            json_integer_value(expires) > c->token_max_ttl_s) {
            snprintf(msg, sizeof(msg), "expires_in: whole seconds, 60 to %ld", c->token_max_ttl_s);
            json_decref(in);
            api_send_error(srv, req, 400, "invalid_request", msg, 0);
            return;
        }
        expires_in = json_integer_value(expires);
    }
    if (strlen(password) > 1024) {
        json_decref(in);
        api_send_error(srv, req, 400, "invalid_request", "password: at most 1024 bytes", 0);
        return;
    }

    /* The run function reads the resolved values, defaults included, from the body. */
    json_object_set_new(in, "scope", json_string(scope));
    json_object_set_new(in, "name", json_string(name));
    api_job_t *job = api_job_new(srv, req, api_run_login, API_SCOPE_NONE);
    snprintf(job->username, sizeof(job->username), "%s", username);
    job->id = (long long)expires_in;
    job->in = in;
    int wait = api_limits_check(srv->limits, job->username, job->peer, (int64_t)time(NULL));
    if (wait > 0) {
        atomic_fetch_add_explicit(&srv->metrics.logins_limited, 1, memory_order_relaxed);
        api_send_error(srv, req, 429, "too_many_failed_logins",
                       "too many failed logins for this username or from this address; retry later",
                       wait);
        json_decref(job->in);
        free(job);
        return;
    }
    api_db_submit(srv, job);
}

/* A positive decimal id of at most 18 digits, or -1. */
static long long parse_id(const char *s)
{
    long long v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 18)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v > 0 ? v : -1;
}

static void authed(api_server_t *srv, struct evhttp_request *req, api_job_run_fn run,
                   api_scope_t need, long long id)
{
    api_job_t *job = api_job_new(srv, req, run, need);
    job->id = id;
    if (!api_take_token(srv, req, job)) {
        free(job);
        return;
    }
    api_db_submit(srv, job);
}

/* A 32-hex id, copied into job->path_id by authed_id, or false. */
bool api_hex_id(const char *s)
{
    return mh_id_valid(s);
}

static void authed_id(api_server_t *srv, struct evhttp_request *req, api_job_run_fn run,
                      api_scope_t need, const char *id)
{
    api_job_t *job = api_job_new(srv, req, run, need);
    if (id != NULL)
        snprintf(job->path_id, sizeof(job->path_id), "%s", id);
    if (!api_take_token(srv, req, job)) {
        free(job);
        return;
    }
    api_db_submit(srv, job);
}

/* A whole decimal number in [min, max], or false. */
bool api_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = (int64_t)v;
    return true;
}

/*
 * GET /v1/export[?format=ndjson|csv]: every reading of the caller's sensors, streamed
 * (export.c). The format is the parameter's, else CSV when Accept asks for text/csv, else
 * NDJSON. An export holds a database thread for as long as its client takes to read it, so at
 * most db_threads - 1 run at once (one with a single thread): the rest of the API keeps one.
 */
static void get_export(api_server_t *srv, struct evhttp_request *req)
{
    struct evkeyvalq params;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    const char *accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    bool csv = accept != NULL && strstr(accept, "text/csv") != NULL, have_format = false;
    long max = srv->cfg->api.db_threads > 1 ? srv->cfg->api.db_threads - 1 : 1;
    char msg[200];

    /* It initialises params, also when it fails. */
    if (evhttp_parse_query_str(query != NULL ? query : "", &params) != 0) {
        evhttp_clear_headers(&params);
        api_send_error(srv, req, 400, "invalid_request", "malformed query string", 0);
        return;
    }
    msg[0] = '\0';
    for (struct evkeyval *kv = params.tqh_first; kv != NULL && msg[0] == '\0';
         kv = kv->next.tqe_next) {
        if (strcmp(kv->key, "format") != 0)
            snprintf(msg, sizeof(msg), "unknown parameter '%.40s' (format)", kv->key);
        else if (have_format)
            snprintf(msg, sizeof(msg), "parameter 'format' given twice");
        else if (strcmp(kv->value, "csv") == 0 || strcmp(kv->value, "ndjson") == 0)
            csv = kv->value[0] == 'c';
        else
            snprintf(msg, sizeof(msg), "format: ndjson or csv");
        have_format = true;
    }
    evhttp_clear_headers(&params);
    if (msg[0] != '\0') {
        api_send_error(srv, req, 400, "invalid_request", msg, 0);
        return;
    }
    if (srv->exports >= max) {
        api_send_error(srv, req, 503, "busy", "too many exports in progress; retry later", 5);
        return;
    }
    api_job_t *job = api_job_new(srv, req, api_run_export, API_SCOPE_READ);
    job->range.format = csv ? API_FMT_CSV : API_FMT_JSON;
    if (!api_take_token(srv, req, job)) {
        free(job);
        return;
    }
    job->stream =
        api_stream_new(srv, req, csv ? "text/csv; charset=utf-8" : "application/x-ndjson");
    if (job->stream == NULL) {
        OPENSSL_cleanse(job->token, sizeof(job->token));
        free(job);
        api_send_error(srv, req, 500, "internal", "out of memory", 0);
        return;
    }
    api_db_submit(srv, job);
}

/* A name accounts.name accepts (deploy/sql/001_core.sql): ASCII letters, digits, ._@-, at
 * most 64, beginning with a letter or a digit. */
static bool account_name_ok(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (n >= 64 || !(alnum || (n > 0 && strchr("._@-", c) != NULL)))
            return false;
    }
    return n > 0;
}

/*
 * POST /v1/accounts {"username", "password"}: self-registration, when the configuration allows
 * it. Each attempt that reaches the database counts against the address's failed-login limit,
 * so that one address can neither make accounts nor probe names without bound.
 */
static void post_accounts(api_server_t *srv, struct evhttp_request *req)
{
    const char *username = NULL, *password = NULL;
    json_error_t jerr;
    char msg[300], why[200];

    if (!srv->cfg->api.self_registration) {
        api_send_error(srv, req, 403, "registration_disabled",
                       "self-registration is off on this server: an operator creates accounts", 0);
        return;
    }
    json_t *in = read_json(srv, req);
    if (in == NULL)
        return;
    msg[0] = '\0';
    if (json_unpack_ex(in, &jerr, JSON_STRICT, "{s:s, s:s}", "username", &username, "password",
                       &password) != 0)
        snprintf(msg, sizeof(msg), "%s (fields: username, password)", jerr.text);
    else if (!account_name_ok(username))
        snprintf(
            msg, sizeof(msg),
            "username: 1 to 64 of A-Z, a-z, 0-9 and . _ @ -, beginning with a letter or digit");
    else if (mh_password_acceptable(password, why, sizeof(why)) != 0)
        snprintf(msg, sizeof(msg), "password: %s", why);
    if (msg[0] != '\0') {
        json_decref(in);
        api_send_error(srv, req, 400, "invalid_request", msg, 0);
        return;
    }
    api_job_t *job = api_job_new(srv, req, api_run_register, API_SCOPE_NONE);
    snprintf(job->username, sizeof(job->username), "%s", username);
    job->in = in;
    int wait = api_limits_check_address(srv->limits, job->peer, (int64_t)time(NULL));
    if (wait > 0) {
        api_send_error(srv, req, 429, "too_many_attempts",
                       "too many attempts from this address; retry later", wait);
        json_decref(job->in);
        free(job);
        return;
    }
    api_db_submit(srv, job);
}

static bool one_of(const char *v, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(v, *set) == 0)
            return true;
    return false;
}

#define API_MAX_GRANTS 100

/*
 * The body of PUT /v1/sensors/{id}/sharing {"visibility", "grants"?, "public_resolution"?,
 * "public_delay_hours"?}, checked whole; the defaults are filled in, for the run function.
 */
static int sharing_check(json_t *in, char *msg, size_t msglen)
{
    static const char *const visibilities[] = {"private", "shared", "public", NULL};
    static const char *const public_resolutions[] = {"hour", "day", NULL};
    const char *vis = NULL, *pubres = "day";
    json_t *grants = NULL, *delay = NULL;
    json_error_t jerr;

    msg[0] = '\0';
    if (json_unpack_ex(in, &jerr, JSON_STRICT, "{s:s, s?:o, s?:s, s?:o}", "visibility", &vis,
                       "grants", &grants, "public_resolution", &pubres, "public_delay_hours",
                       &delay) != 0)
        snprintf(msg, msglen,
                 "%s (fields: visibility, grants, public_resolution, public_delay_hours)",
                 jerr.text);
    else if (!one_of(vis, visibilities))
        snprintf(msg, msglen, "visibility: private, shared or public");
    else if (!one_of(pubres, public_resolutions))
        snprintf(msg, msglen, "public_resolution: hour or day");
    else if (delay != NULL && (!json_is_integer(delay) || json_integer_value(delay) < 1 ||
                               json_integer_value(delay) > 8760))
        snprintf(msg, msglen, "public_delay_hours: whole hours, 1 to 8760");
    else if (grants != NULL && (!json_is_array(grants) || json_array_size(grants) > API_MAX_GRANTS))
        snprintf(msg, msglen, "grants: a list of at most %d {account, resolution}", API_MAX_GRANTS);
    else if (grants != NULL && json_array_size(grants) > 0 && strcmp(vis, "shared") != 0)
        snprintf(msg, msglen, "grants: only a shared sensor has grants");
    for (size_t i = 0; msg[0] == '\0' && grants != NULL && i < json_array_size(grants); i++) {
        const char *account = NULL, *res = NULL;
        if (json_unpack_ex(json_array_get(grants, i), &jerr, JSON_STRICT, "{s:s, s:s}", "account",
                           &account, "resolution", &res) != 0)
            snprintf(msg, msglen, "grants[%zu]: %s (fields: account, resolution)", i, jerr.text);
        else if (!printable(account, 64))
            snprintf(msg, msglen, "grants[%zu].account: 1 to 64 printable characters", i);
        else if (api_resolution_parse(res) < 0)
            snprintf(msg, msglen, "grants[%zu].resolution: raw, minute, 15min, hour, day or month",
                     i);
        for (size_t j = 0; msg[0] == '\0' && j < i; j++)
            if (strcmp(account, json_string_value(
                                    json_object_get(json_array_get(grants, j), "account"))) == 0)
                snprintf(msg, msglen, "grants[%zu]: '%.64s' is granted twice", i, account);
    }
    if (msg[0] != '\0')
        return -1;
    json_object_set_new(in, "public_resolution", json_string(pubres));
    json_object_set_new(in, "public_delay_hours",
                        json_integer(delay ? json_integer_value(delay) : 24));
    if (grants == NULL)
        json_object_set_new(in, "grants", json_array());
    return 0;
}

/*
 * A manage request with a JSON body checked by check (sharing_check, devices.c) on this thread,
 * then run as a job on path id (NULL: none).
 */
static void checked_body(api_server_t *srv, struct evhttp_request *req, api_check_fn check,
                         api_job_run_fn run, const char *id)
{
    char msg[300];
    json_t *in = read_json(srv, req);
    if (in == NULL)
        return;
    if (check(in, msg, sizeof(msg)) != 0) {
        json_decref(in);
        api_send_error(srv, req, 400, "invalid_request", msg, 0);
        return;
    }
    api_job_t *job = api_job_new(srv, req, run, API_SCOPE_MANAGE);
    if (id != NULL)
        snprintf(job->path_id, sizeof(job->path_id), "%s", id);
    job->in = in;
    if (!api_take_token(srv, req, job)) {
        json_decref(job->in);
        free(job);
        return;
    }
    api_db_submit(srv, job);
}

static void method_not_allowed(api_server_t *srv, struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    api_send_error(srv, req, 405, "method_not_allowed", "this resource does not take that method",
                   0);
}

/*
 * /v1/devices/{id}/upgrades (GET, PUT) and /v1/devices/{id}/upgrades/{release}/approve (POST);
 * rest is the path after "/v1/devices/", at least 32 characters.
 */
static void device_upgrades(api_server_t *srv, struct evhttp_request *req, enum evhttp_cmd_type m,
                            const char *rest)
{
    char id[33], release[33];
    const char *tail = rest + 32;

    snprintf(id, sizeof(id), "%.32s", rest);
    if (!api_hex_id(id)) {
        api_send_error(srv, req, 404, "not_found", "no such device", 0);
        return;
    }
    if (strcmp(tail, "/upgrades") == 0) {
        if (m == EVHTTP_REQ_GET)
            authed_id(srv, req, api_run_upgrades_get, API_SCOPE_READ, id);
        else if (m == EVHTTP_REQ_PUT)
            checked_body(srv, req, api_upgrade_consent_check, api_run_upgrades_put, id);
        else
            method_not_allowed(srv, req, "GET, PUT");
        return;
    }
    /* "/upgrades/" 32 hex "/approve" */
    if (strlen(tail) != 10 + 32 + 8 || memcmp(tail, "/upgrades/", 10) != 0 ||
        strcmp(tail + 42, "/approve") != 0) {
        api_send_error(srv, req, 404, "not_found", "no such resource", 0);
        return;
    }
    snprintf(release, sizeof(release), "%.32s", tail + 10);
    if (m != EVHTTP_REQ_POST) {
        method_not_allowed(srv, req, "POST");
        return;
    }
    if (!api_hex_id(release)) {
        api_send_error(srv, req, 404, "unknown_release", "no such release", 0);
        return;
    }
    api_job_t *job = api_job_new(srv, req, api_run_upgrade_approve, API_SCOPE_MANAGE);
    snprintf(job->path_id, sizeof(job->path_id), "%s", id);
    snprintf(job->sub_id, sizeof(job->sub_id), "%s", release);
    if (!api_take_token(srv, req, job)) {
        free(job);
        return;
    }
    api_db_submit(srv, job);
}

/* The resources that read query parameters (each checks its own). */
static bool takes_query(const char *path)
{
    size_t n = strlen(path);
    return strncmp(path, "/sensor/", 8) == 0 || strcmp(path, "/v1/export") == 0 ||
           strcmp(path, "/v1/firmware") == 0 ||
           (strncmp(path, "/v1/sensors/", 12) == 0 && n > 9 &&
            strcmp(path + n - 9, "/readings") == 0);
}

void api_routes_handle(struct evhttp_request *req, void *arg)
{
    api_server_t *srv = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);

    if (path == NULL) {
        api_send_error(srv, req, 400, "invalid_request", "no path", 0);
        return;
    }
    if (!takes_query(path) && query != NULL && query[0] != '\0') {
        /* A parameter nobody reads is refused, not ignored: it is usually a mistake. */
        api_send_error(srv, req, 400, "invalid_request", "this resource takes no query parameters",
                       0);
        return;
    }
    if (strcmp(path, "/v1/tokens") == 0) {
        if (m == EVHTTP_REQ_POST)
            post_tokens(srv, req);
        else if (m == EVHTTP_REQ_GET)
            authed(srv, req, api_run_tokens_list, API_SCOPE_READ, 0);
        else
            method_not_allowed(srv, req, "GET, POST");
        return;
    }
    if (strncmp(path, "/v1/tokens/", 11) == 0) {
        long long id = parse_id(path + 11);
        if (id < 0) {
            api_send_error(srv, req, 404, "not_found", "no such token", 0);
            return;
        }
        if (m == EVHTTP_REQ_DELETE)
            authed(srv, req, api_run_token_delete, API_SCOPE_MANAGE, id);
        else
            method_not_allowed(srv, req, "DELETE");
        return;
    }
    if (strcmp(path, "/v1/devices") == 0 || strcmp(path, "/v1/sensors") == 0) {
        bool device = path[4] == 'd';
        if (m == EVHTTP_REQ_GET)
            authed_id(srv, req, device ? api_run_devices_read : api_run_sensors_read,
                      API_SCOPE_READ, NULL);
        else if (device && m == EVHTTP_REQ_POST)
            checked_body(srv, req, api_device_register_check, api_run_device_register, NULL);
        else
            method_not_allowed(srv, req, device ? "GET, POST" : "GET");
        return;
    }
    if (strncmp(path, "/v1/sensors/", 12) == 0 && strlen(path) == 12 + 32 + 9 &&
        strcmp(path + 44, "/readings") == 0) {
        char id[33];
        snprintf(id, sizeof(id), "%.32s", path + 12);
        if (m == EVHTTP_REQ_GET)
            api_get_readings(srv, req, id);
        else
            method_not_allowed(srv, req, "GET");
        return;
    }
    if (strncmp(path, "/v1/sensors/", 12) == 0 && strlen(path) == 12 + 32 + 8 &&
        strcmp(path + 44, "/sharing") == 0) {
        char id[33];
        snprintf(id, sizeof(id), "%.32s", path + 12);
        if (!api_hex_id(id))
            api_send_error(srv, req, 404, "not_found", "no such sensor", 0);
        else if (m == EVHTTP_REQ_GET)
            authed_id(srv, req, api_run_sharing_get, API_SCOPE_READ, id);
        else if (m == EVHTTP_REQ_PUT)
            checked_body(srv, req, sharing_check, api_run_sharing_put, id);
        else
            method_not_allowed(srv, req, "GET, PUT");
        return;
    }
    if (strcmp(path, "/v1/audit") == 0) {
        if (m == EVHTTP_REQ_GET)
            authed(srv, req, api_run_audit, API_SCOPE_READ, 0);
        else
            method_not_allowed(srv, req, "GET");
        return;
    }
    if (strncmp(path, "/v1/devices/", 12) == 0 && strlen(path) > 12 + 32 &&
        strncmp(path + 44, "/upgrades", 9) == 0) {
        device_upgrades(srv, req, m, path + 12);
        return;
    }
    if (strcmp(path, "/v1/firmware") == 0 || strncmp(path, "/v1/firmware/", 13) == 0) {
        /* The public release log: no token needed, none looked at. */
        const char *release = path[12] == '/' ? path + 13 : NULL;
        if (release != NULL && !api_hex_id(release))
            api_send_error(srv, req, 404, "not_found", "no such release", 0);
        else if (m == EVHTTP_REQ_GET)
            api_get_firmware(srv, req, release);
        else
            method_not_allowed(srv, req, "GET");
        return;
    }
    if (strncmp(path, "/v1/devices/", 12) == 0 || strncmp(path, "/v1/sensors/", 12) == 0) {
        bool device = path[4] == 'd';
        if (!api_hex_id(path + 12)) {
            api_send_error(srv, req, 404, "not_found", device ? "no such device" : "no such sensor",
                           0);
            return;
        }
        if (m == EVHTTP_REQ_GET)
            authed_id(srv, req, device ? api_run_devices_read : api_run_sensors_read,
                      API_SCOPE_READ, path + 12);
        else if (device && m == EVHTTP_REQ_DELETE)
            authed_id(srv, req, api_run_device_revoke, API_SCOPE_MANAGE, path + 12);
        else if (m == EVHTTP_REQ_PATCH)
            checked_body(srv, req, device ? api_device_patch_check : api_sensor_patch_check,
                         device ? api_run_device_patch : api_run_sensor_patch, path + 12);
        else
            method_not_allowed(srv, req, device ? "GET, PATCH, DELETE" : "GET, PATCH");
        return;
    }
    if (strncmp(path, "/sensor/", 8) == 0) {
        /* Flukso's read, for existing dashboards and scripts. */
        if (m == EVHTTP_REQ_GET)
            api_get_flukso(srv, req, path + 8);
        else
            method_not_allowed(srv, req, "GET");
        return;
    }
    if (strcmp(path, "/v1/me") == 0) {
        if (m == EVHTTP_REQ_GET)
            authed(srv, req, api_run_me, API_SCOPE_READ, 0);
        else if (m == EVHTTP_REQ_DELETE)
            authed(srv, req, api_run_erase, API_SCOPE_MANAGE, 0);
        else
            method_not_allowed(srv, req, "GET, DELETE");
        return;
    }
    if (strcmp(path, "/v1/export") == 0) {
        if (m == EVHTTP_REQ_GET)
            get_export(srv, req);
        else
            method_not_allowed(srv, req, "GET");
        return;
    }
    if (strcmp(path, "/v1/accounts") == 0) {
        if (m == EVHTTP_REQ_POST)
            post_accounts(srv, req);
        else
            method_not_allowed(srv, req, "POST");
        return;
    }
    api_send_error(srv, req, 404, "not_found", "no such resource", 0);
}

void api_metrics_render(struct evbuffer *out, void *arg)
{
    api_server_t *srv = arg;
    static const char *labels[] = {"2xx", "400", "401", "403", "404", "other"};
    evbuffer_add_printf(out, "# HELP meterhub_api_requests_total Answers by HTTP status.\n"
                             "# TYPE meterhub_api_requests_total counter\n");
    for (int i = 0; i < 6; i++)
        evbuffer_add_printf(out, "meterhub_api_requests_total{status=\"%s\"} %llu\n", labels[i],
                            (unsigned long long)atomic_load(&srv->metrics.requests[i]));
    evbuffer_add_printf(out,
                        "# HELP meterhub_api_logins_total Password logins by outcome.\n"
                        "# TYPE meterhub_api_logins_total counter\n"
                        "meterhub_api_logins_total{outcome=\"ok\"} %llu\n"
                        "meterhub_api_logins_total{outcome=\"failed\"} %llu\n"
                        "meterhub_api_logins_total{outcome=\"limited\"} %llu\n",
                        (unsigned long long)atomic_load(&srv->metrics.logins_ok),
                        (unsigned long long)atomic_load(&srv->metrics.logins_failed),
                        (unsigned long long)atomic_load(&srv->metrics.logins_limited));
    evbuffer_add_printf(out,
                        "# HELP meterhub_api_db_errors_total Failed database operations.\n"
                        "# TYPE meterhub_api_db_errors_total counter\n"
                        "meterhub_api_db_errors_total %llu\n",
                        (unsigned long long)atomic_load(&srv->metrics.db_errors));
    evbuffer_add_printf(
        out,
        "# HELP meterhub_api_exports_total Exports by outcome.\n"
        "# TYPE meterhub_api_exports_total counter\n"
        "meterhub_api_exports_total{outcome=\"complete\"} %llu\n"
        "meterhub_api_exports_total{outcome=\"client_gone\"} %llu\n"
        "meterhub_api_exports_total{outcome=\"failed\"} %llu\n"
        "# HELP meterhub_api_export_bytes_total Bytes of exports written.\n"
        "# TYPE meterhub_api_export_bytes_total counter\n"
        "meterhub_api_export_bytes_total %llu\n",
        (unsigned long long)atomic_load(&srv->metrics.exports[API_EXPORT_COMPLETE]),
        (unsigned long long)atomic_load(&srv->metrics.exports[API_EXPORT_CLIENT_GONE]),
        (unsigned long long)atomic_load(&srv->metrics.exports[API_EXPORT_FAILED]),
        (unsigned long long)atomic_load(&srv->metrics.export_bytes));
}

bool api_health_render(struct evbuffer *out, void *arg)
{
    api_server_t *srv = arg;
    int ready = atomic_load(&srv->db_ready);
    evbuffer_add_printf(out, "{\"status\":\"%s\",\"db_connections\":%d}\n",
                        ready > 0 ? "ok" : "degraded", ready);
    return ready > 0;
}
