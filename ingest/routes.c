/*
 * The device-facing routes:
 *   POST /sensor/<sensor-id>   a batch of readings (Flukso JSON or protobuf ReadingBatch)
 *   POST /device/<device-id>   heartbeat
 *   GET  /firmware/<id>        firmware download (upgrade.c)
 * Every refusal is a JSON body {"error", "message", "field"?} with a 4xx/5xx status.
 */
#include "ingest_internal.h"

#include "common/alloc.h"
#include "common/log.h"
#include "proto/meterhub.pb-c.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ING_RETRY_AFTER_UNAVAILABLE 2
#define ING_MAX_FIRMWARE_VERSION 64

/* A request waiting for Redis. */
typedef struct ing_pending {
    struct evhttp_request *req;
    long shard;
    size_t nreadings;
    bool heartbeat;
    json_t *upgrade; /* heartbeats: the offer to answer with (owned), or NULL */
} ing_pending_t;

int ing_metrics_status_index(int status)
{
    switch (status) {
    case 200:
        return ING_ST_200;
    case 206:
        return ING_ST_206;
    case 400:
        return ING_ST_400;
    case 403:
        return ING_ST_403;
    case 404:
        return ING_ST_404;
    case 405:
        return ING_ST_405;
    case 409:
        return ING_ST_409;
    case 413:
        return ING_ST_413;
    case 415:
        return ING_ST_415;
    case 416:
        return ING_ST_416;
    case 429:
        return ING_ST_429;
    case 500:
        return ING_ST_500;
    case 503:
        return ING_ST_503;
    default:
        return ING_ST_OTHER;
    }
}

void ing_send_json(ing_worker_t *w, struct evhttp_request *req, int status, json_t *body)
{
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    char *text = json_dumps(body, JSON_COMPACT);
    evhttp_add_header(hdr, "Content-Type", "application/json");
    if (text != NULL) {
        evbuffer_add(out, text, strlen(text));
        free(text);
    }
    json_decref(body);
    atomic_fetch_add_explicit(&w->metrics.requests[ing_metrics_status_index(status)], 1,
                              memory_order_relaxed);
    /* NULL: libevent supplies the standard reason phrase. */
    evhttp_send_reply(req, status, NULL, NULL);
}

void ing_send_error(ing_worker_t *w, struct evhttp_request *req, int status, const char *code,
                    const char *field, const char *message, int retry_after)
{
    json_t *body = json_pack("{s:s, s:s}", "error", code, "message", message);
    if (body == NULL)
        body = json_object();
    if (field != NULL && field[0] != '\0')
        json_object_set_new(body, "field", json_string(field));
    if (retry_after > 0) {
        char v[16];
        snprintf(v, sizeof(v), "%d", retry_after);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", v);
        json_object_set_new(body, "retry_after", json_integer(retry_after));
    }
    ing_send_json(w, req, status, body);
}

static void send_batch_error(ing_worker_t *w, struct evhttp_request *req,
                             const ing_batch_error_t *err)
{
    ing_send_error(w, req, err->status, err->code, err->field, err->message, 0);
}

static void close_after_reply(struct evhttp_request *req)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
}

static void peer_name(struct evhttp_request *req, char *out, size_t len)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon != NULL)
        evhttp_connection_get_peer(evcon, &addr, &port);
    snprintf(out, len, "%s:%u", addr ? addr : "?", (unsigned)port);
}

static void unpark(ing_parked_t *p)
{
    p->prev->next = p->next;
    p->next->prev = p->prev;
    struct evhttp_request *req = p->req;
    ing_worker_t *w = p->worker;
    event_free(p->timer);
    free(p);
    ing_routes_handle(req, w);
}

static void park_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    unpark(arg);
}

/*
 * Holds a request from an unknown certificate until the next directory refresh (asked for
 * now) or a timeout, then handles it again; the second time an unknown certificate is refused.
 */
static void park(ing_worker_t *w, struct evhttp_request *req, ing_conn_t *c)
{
    long ms = w->srv->cfg->ingest.directory_refresh_ms * 2 + 250;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    ing_parked_t *p = mh_calloc(1, sizeof(*p));
    p->req = req;
    p->worker = w;
    p->timer = evtimer_new(w->base, park_timeout_cb, p);
    c->waited = true;
    if (p->timer == NULL || evtimer_add(p->timer, &tv) != 0) {
        if (p->timer != NULL)
            event_free(p->timer);
        free(p);
        ing_routes_handle(req, w);
        return;
    }
    p->next = w->parked.next;
    p->prev = &w->parked;
    w->parked.next->prev = p;
    w->parked.next = p;
    if (w->srv->refresh_now != NULL)
        event_active(w->srv->refresh_now, EV_TIMEOUT, 0);
}

void ing_routes_unpark_all(ing_worker_t *w)
{
    while (w->parked.next != &w->parked)
        unpark(w->parked.next);
}

/*
 * Maps the connection's verified client certificate to an active device. The answer is
 * cached on the connection for as long as the worker's snapshot does not change.
 */
const ing_device_t *ing_authenticate(ing_worker_t *w, struct evhttp_request *req)
{
    char peer[80];
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    ing_conn_t *c = ing_conn_of(req);

    if (ssl == NULL) {
        ing_send_error(w, req, 403, "no_certificate", NULL, "a client certificate is required", 0);
        return NULL;
    }
    if (w->dir == NULL) {
        ing_send_error(w, req, 503, "starting", NULL, "the device directory is not loaded yet",
                       ING_RETRY_AFTER_UNAVAILABLE);
        return NULL;
    }
    if (c != NULL && c->device != NULL && c->dir_generation == ing_directory_generation(w->dir))
        return c->device;

    X509 *cert = SSL_get0_peer_certificate(ssl);
    uint8_t fp[MH_FINGERPRINT_LEN];
    char cn[MH_ID_LEN + 2];
    if (cert == NULL || mh_cert_fingerprint(cert, fp) != 0) {
        ing_send_error(w, req, 403, "no_certificate", NULL, "a client certificate is required", 0);
        return NULL;
    }
    const ing_device_t *d = ing_directory_device_by_fingerprint(w->dir, fp);
    if (d == NULL && c != NULL && !c->waited) {
        park(w, req, c);
        return NULL;
    }
    if (c != NULL)
        c->waited = false;
    if (d == NULL || mh_cert_subject_cn(cert, cn, sizeof(cn)) != 0 || strcmp(cn, d->id) != 0) {
        peer_name(req, peer, sizeof(peer));
        mh_log(MH_LOG_WARN, "worker %d: %s presented a certificate of no known device", w->index,
               peer);
        close_after_reply(req);
        ing_send_error(w, req, 403, "unknown_device", NULL,
                       "this certificate does not belong to a registered device", 0);
        return NULL;
    }
    if (!d->active) {
        peer_name(req, peer, sizeof(peer));
        mh_log(MH_LOG_WARN, "worker %d: revoked device %s refused (%s)", w->index, d->id, peer);
        close_after_reply(req);
        ing_send_error(w, req, 403, "device_revoked", NULL, "this device has been revoked", 0);
        return NULL;
    }
    if (c != NULL) {
        c->device = d;
        c->did = d->did;
        memcpy(c->fingerprint, fp, MH_FINGERPRINT_LEN);
        c->dir_generation = ing_directory_generation(w->dir);
    }
    return d;
}

static double monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool ing_rate_limited(ing_worker_t *w, struct evhttp_request *req, const ing_device_t *d)
{
    double retry = 0;
    if (ing_ratelimit_take(w->srv->ratelimit, d->did, monotonic_now(), &retry))
        return false;
    int secs = (int)ceil(retry);
    ing_send_error(w, req, 429, "rate_limited", NULL,
                   "this device posts faster than its allowance; retry later", secs < 1 ? 1 : secs);
    return true;
}

static void accept_done(ing_worker_t *w, void *arg, const ing_qresult_t *res)
{
    ing_pending_t *p = arg;
    struct evhttp_request *req = p->req;
    char msg[200];

    if (res->backlog >= 0)
        atomic_store_explicit(&w->srv->backlog[p->shard], res->backlog, memory_order_relaxed);
    switch (res->status) {
    case ING_Q_ACCEPTED:
        if (p->heartbeat) {
            atomic_fetch_add_explicit(&w->metrics.heartbeats_accepted, 1, memory_order_relaxed);
            json_t *body = json_pack("{s:I, s:o}", "time", (json_int_t)time(NULL), "upgrade",
                                     p->upgrade ? p->upgrade : json_null());
            p->upgrade = NULL;
            if (body == NULL)
                body = json_object();
            ing_send_json(w, req, 200, body);
        } else {
            atomic_fetch_add_explicit(&w->metrics.batches_accepted, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&w->metrics.readings_accepted, p->nreadings,
                                      memory_order_relaxed);
            ing_send_json(w, req, 200, json_pack("{s:I}", "accepted", (json_int_t)p->nreadings));
        }
        break;
    case ING_Q_BACKLOG:
        atomic_store_explicit(&w->srv->backlog[p->shard], w->srv->cfg->ingest.max_backlog,
                              memory_order_relaxed);
        ing_send_error(w, req, 503, "backlog_full", NULL,
                       "the service is behind on storing readings; retry later", 5);
        break;
    case ING_Q_DECREASE:
        snprintf(msg, sizeof(msg),
                 "counter would decrease: a stored reading (ts value) %s is larger than the "
                 "first newer one in this batch",
                 res->detail ? res->detail : "");
        ing_send_error(w, req, 409, "counter_decreased", "measurements", msg, 0);
        break;
    case ING_Q_UNAVAILABLE:
        ing_send_error(w, req, 503, "queue_unavailable", NULL,
                       "the queue did not answer in time; retry later",
                       ING_RETRY_AFTER_UNAVAILABLE);
        break;
    case ING_Q_ERROR:
    default:
        ing_send_error(w, req, 503, "queue_error", NULL, "the queue refused the batch; retry",
                       ING_RETRY_AFTER_UNAVAILABLE);
        break;
    }
    json_decref(p->upgrade);
    free(p);
}

static void queue_entry(ing_worker_t *w, struct evhttp_request *req, long shard,
                        const Meterhub__QueueEntry *entry, const ing_sensor_t *counter,
                        const ing_batch_t *batch, bool heartbeat, json_t *upgrade)
{
    size_t len = meterhub__queue_entry__get_packed_size(entry);
    uint8_t *buf = mh_malloc(len ? len : 1);
    meterhub__queue_entry__pack(entry, buf);
    ing_pending_t *p = mh_calloc(1, sizeof(*p));
    p->req = req;
    p->shard = shard;
    p->nreadings = batch ? batch->n : 0;
    p->heartbeat = heartbeat;
    p->upgrade = upgrade;
    if (ing_redisq_accept(w, shard, counter ? counter->sid : 0, buf, len, counter ? batch : NULL,
                          accept_done, p) != 0) {
        json_decref(p->upgrade);
        free(p);
        ing_send_error(w, req, 503, "queue_unavailable", NULL,
                       "the queue is unavailable or saturated; retry later",
                       ING_RETRY_AFTER_UNAVAILABLE);
    }
    free(buf);
}

static bool queue_ready(ing_worker_t *w, struct evhttp_request *req)
{
    if (w->redis.ready && w->redis.inflight < w->srv->cfg->ingest.max_inflight)
        return true;
    ing_send_error(w, req, 503, "queue_unavailable", NULL,
                   "the queue is unavailable or saturated; retry later",
                   ING_RETRY_AFTER_UNAVAILABLE);
    return false;
}

typedef enum body_kind { BODY_JSON, BODY_PROTOBUF, BODY_UNSUPPORTED } body_kind_t;

static body_kind_t body_kind(struct evhttp_request *req)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (ct == NULL)
        return BODY_JSON; /* Flukso meters send JSON, not always with a type */
    size_t n = strcspn(ct, "; ");
    if (n == strlen("application/json") && strncasecmp(ct, "application/json", n) == 0)
        return BODY_JSON;
    if ((n == strlen("application/x-protobuf") &&
         strncasecmp(ct, "application/x-protobuf", n) == 0) ||
        (n == strlen("application/protobuf") && strncasecmp(ct, "application/protobuf", n) == 0))
        return BODY_PROTOBUF;
    return BODY_UNSUPPORTED;
}

static void post_sensor(ing_worker_t *w, struct evhttp_request *req, const char *id, size_t idlen)
{
    ing_batch_t batch;
    ing_batch_error_t err;
    ing_batch_init(&batch);

    const ing_device_t *d = ing_authenticate(w, req);
    if (d == NULL)
        goto done;
    const ing_sensor_t *s = ing_directory_sensor(w->dir, id, idlen);
    if (s == NULL || s->device_did != d->did) {
        char peer[80];
        peer_name(req, peer, sizeof(peer));
        atomic_fetch_add_explicit(&w->metrics.foreign_sensor_posts, 1, memory_order_relaxed);
        mh_log(MH_LOG_WARN, "worker %d: device %s (%s) posted to sensor %.32s, not one of its own",
               w->index, d->id, peer, mh_id_valid_n(id, idlen) ? id : "(malformed id)");
        ing_send_error(w, req, 403, "not_your_sensor", "sensor",
                       "this sensor does not belong to the device of this certificate", 0);
        goto done;
    }
    if (ing_rate_limited(w, req, d) || !queue_ready(w, req))
        goto done;

    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const unsigned char *body = evbuffer_pullup(in, -1);
    int rc;
    switch (body_kind(req)) {
    case BODY_JSON:
        rc = ing_batch_parse_json((const char *)body, len, w->srv->limits.max_readings, &batch,
                                  &err);
        break;
    case BODY_PROTOBUF:
        rc = ing_batch_parse_protobuf(body, len, w->srv->limits.max_readings, &batch, &err);
        break;
    default:
        ing_send_error(w, req, 415, "unsupported_media_type", "Content-Type",
                       "send application/json or application/x-protobuf", 0);
        goto done;
    }
    if (rc != 0 ||
        ing_batch_validate(&batch, &w->srv->limits, (int64_t)time(NULL), s->counter, &err) != 0) {
        send_batch_error(w, req, &err);
        goto done;
    }

    Meterhub__SensorBatch sb;
    meterhub__sensor_batch__init(&sb);
    sb.sensor = s->sid;
    sb.sensor_id = (char *)s->id;
    sb.device = d->did;
    sb.n_ts = batch.n;
    sb.ts = batch.ts;
    sb.n_value = batch.n;
    sb.value = batch.value;
    sb.received = (int64_t)time(NULL);
    Meterhub__QueueEntry qe;
    meterhub__queue_entry__init(&qe);
    qe.body_case = METERHUB__QUEUE_ENTRY__BODY_BATCH;
    qe.batch = &sb;
    queue_entry(w, req, mh_queue_shard(s->sid, w->srv->cfg->redis.shards), &qe,
                s->counter ? s : NULL, &batch, false, NULL);
done:
    ing_batch_dispose(&batch);
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

/* The optional "upgrade_report" of a heartbeat. Returns false after answering 400. */
static bool parse_report(ing_worker_t *w, struct evhttp_request *req, json_t *rep,
                         ing_heartbeat_t *hb)
{
    static const char *const outcomes[] = {"installed", "failed", "refused"};
    char field[64];
    const char *key;
    json_t *val;

    if (!json_is_object(rep)) {
        ing_send_error(w, req, 400, "invalid_field", "upgrade_report",
                       "upgrade_report must be an object", 0);
        return false;
    }
    json_object_foreach(rep, key, val)
    {
        if (strcmp(key, "release") != 0 && strcmp(key, "outcome") != 0 &&
            strcmp(key, "reason") != 0) {
            snprintf(field, sizeof(field), "upgrade_report.%.40s", key);
            ing_send_error(w, req, 400, "unknown_field", field,
                           "upgrade_report takes release, outcome and reason", 0);
            return false;
        }
    }
    json_t *rel = json_object_get(rep, "release");
    json_t *out = json_object_get(rep, "outcome");
    json_t *why = json_object_get(rep, "reason");
    if (!json_is_string(rel) || !mh_id_valid_n(json_string_value(rel), json_string_length(rel))) {
        ing_send_error(w, req, 400, "invalid_field", "upgrade_report.release",
                       "upgrade_report.release must be a release id (32 lowercase hex)", 0);
        return false;
    }
    hb->report_outcome = NULL;
    for (size_t i = 0; json_is_string(out) && i < sizeof(outcomes) / sizeof(outcomes[0]); i++)
        if (strcmp(json_string_value(out), outcomes[i]) == 0)
            hb->report_outcome = outcomes[i];
    if (hb->report_outcome == NULL) {
        ing_send_error(w, req, 400, "invalid_field", "upgrade_report.outcome",
                       "upgrade_report.outcome must be installed, failed or refused", 0);
        return false;
    }
    if (why != NULL && (!json_is_string(why) || json_string_length(why) == 0 ||
                        json_string_length(why) >= sizeof(hb->report_reason) ||
                        !printable(json_string_value(why)))) {
        ing_send_error(w, req, 400, "invalid_field", "upgrade_report.reason",
                       "upgrade_report.reason must be a printable string of 1 to 200 characters",
                       0);
        return false;
    }
    if (why == NULL && strcmp(hb->report_outcome, "installed") != 0) {
        ing_send_error(w, req, 400, "invalid_field", "upgrade_report.reason",
                       "a failed or refused upgrade must say why (upgrade_report.reason)", 0);
        return false;
    }
    hb->has_report = true;
    memcpy(hb->report_release, json_string_value(rel), MH_ID_LEN);
    hb->report_release[MH_ID_LEN] = '\0';
    snprintf(hb->report_reason, sizeof(hb->report_reason), "%s", why ? json_string_value(why) : "");
    return true;
}

static void post_heartbeat(ing_worker_t *w, struct evhttp_request *req, const char *id,
                           size_t idlen)
{
    json_t *root = NULL;
    json_error_t jerr;
    char msg[200];

    const ing_device_t *d = ing_authenticate(w, req);
    if (d == NULL)
        goto done;
    if (idlen != MH_ID_LEN || memcmp(id, d->id, MH_ID_LEN) != 0) {
        ing_send_error(w, req, 403, "not_this_device", "device",
                       "a device may only send heartbeats as itself", 0);
        goto done;
    }
    if (ing_rate_limited(w, req, d) || !queue_ready(w, req))
        goto done;
    if (body_kind(req) != BODY_JSON) {
        ing_send_error(w, req, 415, "unsupported_media_type", "Content-Type",
                       "heartbeats are application/json", 0);
        goto done;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    root = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        snprintf(msg, sizeof(msg), "malformed JSON: %s", root ? "not an object" : jerr.text);
        ing_send_error(w, req, 400, "malformed_json", NULL, msg, 0);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "firmware_version") != 0 && strcmp(key, "remote_upgrade") != 0 &&
            strcmp(key, "uptime") != 0 && strcmp(key, "upgrade_report") != 0) {
            snprintf(msg, sizeof(msg), "unknown field '%.40s'", key);
            ing_send_error(w, req, 400, "unknown_field", key, msg, 0);
            goto done;
        }
    }
    json_t *fw = json_object_get(root, "firmware_version");
    json_t *ru = json_object_get(root, "remote_upgrade");
    json_t *up = json_object_get(root, "uptime");
    json_t *rep = json_object_get(root, "upgrade_report");
    if (!json_is_string(fw) || json_string_length(fw) == 0 ||
        json_string_length(fw) > ING_MAX_FIRMWARE_VERSION || !printable(json_string_value(fw))) {
        ing_send_error(w, req, 400, "invalid_field", "firmware_version",
                       "firmware_version must be a printable string of 1 to 64 characters", 0);
        goto done;
    }
    if (!json_is_boolean(ru)) {
        ing_send_error(w, req, 400, "invalid_field", "remote_upgrade",
                       "remote_upgrade must be true or false", 0);
        goto done;
    }
    if (up != NULL && (!json_is_integer(up) || json_integer_value(up) < 0)) {
        ing_send_error(w, req, 400, "invalid_field", "uptime",
                       "uptime must be a non-negative integer", 0);
        goto done;
    }
    ing_heartbeat_t hb = {0};
    if (rep != NULL && !parse_report(w, req, rep, &hb))
        goto done;
    hb.did = d->did;
    memcpy(hb.device_id, d->id, sizeof(hb.device_id));
    snprintf(hb.firmware_version, sizeof(hb.firmware_version), "%s", json_string_value(fw));
    hb.remote_upgrade = json_is_true(ru);
    hb.ts = (int64_t)time(NULL);
    ing_upgrade_heartbeat(w, req, &hb);
done:
    json_decref(root);
}

void ing_queue_heartbeat(ing_worker_t *w, struct evhttp_request *req, const ing_heartbeat_t *hb,
                         json_t *upgrade)
{
    Meterhub__Heartbeat msg;
    meterhub__heartbeat__init(&msg);
    msg.device = hb->did;
    msg.device_id = (char *)hb->device_id;
    msg.ts = hb->ts;
    msg.firmware_version = (char *)hb->firmware_version;
    msg.remote_upgrade = hb->remote_upgrade;
    Meterhub__QueueEntry qe;
    meterhub__queue_entry__init(&qe);
    qe.body_case = METERHUB__QUEUE_ENTRY__BODY_HEARTBEAT;
    qe.heartbeat = &msg;
    queue_entry(w, req, mh_queue_shard(hb->did, w->srv->cfg->redis.shards), &qe, NULL, NULL, true,
                upgrade);
}

/* Matches "/<prefix>/<id>" and returns the id part, or NULL. */
static const char *match_path(const char *path, const char *prefix, size_t *idlen)
{
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0)
        return NULL;
    const char *id = path + n;
    *idlen = strlen(id);
    if (*idlen == 0 || *idlen > 64 || strchr(id, '/') != NULL)
        return NULL;
    return id;
}

void ing_routes_handle(struct evhttp_request *req, void *arg)
{
    ing_worker_t *w = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const char *id;
    size_t idlen;

    if (path == NULL) {
        ing_send_error(w, req, 400, "bad_request", NULL, "malformed request line", 0);
        return;
    }
    if ((id = match_path(path, "/sensor/", &idlen)) != NULL) {
        if (cmd != EVHTTP_REQ_POST) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
            ing_send_error(w, req, 405, "method_not_allowed", NULL, "use POST", 0);
            return;
        }
        post_sensor(w, req, id, idlen);
    } else if ((id = match_path(path, "/device/", &idlen)) != NULL) {
        if (cmd != EVHTTP_REQ_POST) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
            ing_send_error(w, req, 405, "method_not_allowed", NULL, "use POST", 0);
            return;
        }
        post_heartbeat(w, req, id, idlen);
    } else if ((id = match_path(path, "/firmware/", &idlen)) != NULL) {
        ing_upgrade_download(w, req, id, idlen);
    } else {
        ing_send_error(w, req, 404, "not_found", NULL, "no such resource", 0);
    }
}
