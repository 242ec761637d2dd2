/*
 * Firmware on the device wire (docs/upgrade.md): the offer in a heartbeat's answer, the
 * outcome a meter reports, and GET /firmware/<release-id>.
 *
 * PostgreSQL decides everything (upg_heartbeats of deploy/sql/012, upg_download of 010), asked
 * without blocking the worker through its own connection (w->upg->pg). When it cannot be
 * asked, the answer is the safe one: a heartbeat gets no offer, a download gets 503, and a
 * report, which must not be lost, gets 503 so the meter sends it again.
 */
#include "ingest_internal.h"

#include "common/alloc.h"
#include "common/log.h"
#include "upgrade/serve.h"

#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UPG_RETRY_AFTER 2

/* Heartbeats go to PostgreSQL in batches: those that arrive while a batch is out wait for the
 * next one, up to HB_BATCH_MAX in a call. Beyond HB_PENDING_MAX waiting, the worker is
 * overloaded and sheds: a heartbeat is answered at once without an offer (a report gets 503),
 * rather than after a wait that would only end in a timeout. */
#define HB_BATCH_MAX 256
/* Download checks come in bursts (a rollout reaches many meters within one heartbeat period):
 * they are spread over a few connections, each running one at a time. */
#define FETCH_CONNS 4
#define HB_PENDING_MAX 4096

/* encode(..., 'base64') wraps lines at 76 characters: the offer wants one line. */
static const char heartbeats_sql[] =
    "SELECT ord, status, release_id, translate(encode(manifest, 'base64'), E'\\n', ''),"
    " translate(encode(signature, 'base64'), E'\\n', ''), log_seq, log_prev, log_hash"
    " FROM upg_heartbeats($1::jsonb)";
#define HB_NCOLS 8

static const char download_sql[] =
    "SELECT status, image_sha256, size FROM upg_download($1::bigint, $2, $3::bigint, $4::bigint)";

typedef struct hb_wait hb_wait_t;
struct hb_wait {
    hb_wait_t *next;
    struct evhttp_request *req;
    ing_heartbeat_t hb;
};

/* One call of upg_heartbeats: the heartbeats it decides, in the order sent. */
typedef struct hb_batch {
    ing_worker_t *w;
    size_t n;
    hb_wait_t *v[HB_BATCH_MAX];
} hb_batch_t;

struct ing_upgrade {
    mh_pgasync_t *pg;                    /* heartbeat batches */
    mh_pgasync_t *pg_fetch[FETCH_CONNS]; /* download checks: never queued behind a batch */
    hb_wait_t *head, *tail;              /* waiting for the next batch (owned) */
    size_t npending;
    bool inflight; /* a batch is out */
    bool stopping;
    struct event *flush_ev;
};

typedef struct dl_wait {
    ing_worker_t *w;
    struct evhttp_request *req;
    char release[MH_ID_LEN + 1];
    upg_range_t range;
} dl_wait_t;

/* Logs a failed check at 1, 2, 4, 8... failures, so an outage cannot flood the log. */
static void note_failure(ing_worker_t *w, const char *what, const PGresult *res, const char *err)
{
    uint64_t n =
        atomic_fetch_add_explicit(&w->metrics.upgrade_pg_failures, 1, memory_order_relaxed) + 1;
    if ((n & (n - 1)) != 0)
        return;
    const char *why = err;
    if (why == NULL && res != NULL)
        why = PQresultErrorMessage(res);
    char line[200];
    mh_pgasync_one_line(why && why[0] ? why : "unexpected answer", line, sizeof(line));
    mh_log(MH_LOG_WARN, "worker %d: %s failed (%" PRIu64 " so far): %s", w->index, what, n, line);
}

static bool one_row(const PGresult *res, int ncols)
{
    return res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
           PQnfields(res) == ncols;
}

static json_t *offer_json(const PGresult *res, int row)
{
    char url[sizeof("/firmware/") + MH_ID_LEN];
    snprintf(url, sizeof(url), "/firmware/%s", PQgetvalue(res, row, 2));
    return json_pack("{s:s, s:s, s:s, s:{s:I, s:s, s:s}, s:s}", "release", PQgetvalue(res, row, 2),
                     "manifest", PQgetvalue(res, row, 3), "signature", PQgetvalue(res, row, 4),
                     "log", "seq", (json_int_t)strtoll(PQgetvalue(res, row, 5), NULL, 10), "prev",
                     PQgetvalue(res, row, 6), "hash", PQgetvalue(res, row, 7), "url", url);
}

/* Answers one heartbeat from row `row` of its batch's result, or, with res NULL, as PostgreSQL
 * could not decide it: no offer, and 503 for a report that must not be lost. Frees hw. */
static void answer_heartbeat(ing_worker_t *w, hb_wait_t *hw, const PGresult *res, int row)
{
    json_t *offer = NULL;

    if (res == NULL) {
        if (hw->hb.has_report) {
            ing_send_error(w, hw->req, 503, "upgrade_unavailable", NULL,
                           "the upgrade report could not be recorded; send it again",
                           UPG_RETRY_AFTER);
            goto done;
        }
        /* No answer means no offer; the heartbeat itself still counts. */
        ing_queue_heartbeat(w, hw->req, &hw->hb, NULL);
        goto done;
    }
    const char *status = PQgetvalue(res, row, 1);
    if (strcmp(status, "not_offered") == 0) {
        ing_send_error(w, hw->req, 409, "not_offered", "upgrade_report",
                       "upgrade_report names a release this device was not offered", 0);
        goto done;
    }
    if (hw->hb.has_report)
        atomic_fetch_add_explicit(&w->metrics.firmware_reports, 1, memory_order_relaxed);
    if (strcmp(status, "offer") == 0) {
        offer = offer_json(res, row);
        if (offer != NULL)
            atomic_fetch_add_explicit(&w->metrics.firmware_offers, 1, memory_order_relaxed);
    }
    /* "unknown_device": revoked since the directory was loaded; the next refresh refuses it. */
    ing_queue_heartbeat(w, hw->req, &hw->hb, offer);
done:
    free(hw);
}

static void batch_done(const PGresult *res, const char *err, void *arg)
{
    hb_batch_t *b = arg;
    ing_worker_t *w = b->w;
    ing_upgrade_t *u = w->upg;

    u->inflight = false;
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != HB_NCOLS) {
        note_failure(w, "the firmware offer check", res, err);
        res = NULL;
    }
    for (int row = 0; res != NULL && row < PQntuples(res); row++) {
        long long ord = strtoll(PQgetvalue(res, row, 0), NULL, 10);
        if (ord < 1 || (size_t)ord > b->n || b->v[ord - 1] == NULL)
            continue;
        answer_heartbeat(w, b->v[ord - 1], res, row);
        b->v[ord - 1] = NULL;
    }
    /* Any heartbeat the answer left out is answered as undecided. */
    for (size_t i = 0; i < b->n; i++)
        if (b->v[i] != NULL)
            answer_heartbeat(w, b->v[i], NULL, -1);
    free(b);
    if (u->npending > 0 && !u->stopping)
        event_active(u->flush_ev, EV_TIMEOUT, 0);
}

static json_t *batch_element(const ing_heartbeat_t *hb)
{
    json_t *e = json_pack("{s:I, s:s, s:b}", "did", (json_int_t)hb->did, "version",
                          hb->firmware_version, "remote", hb->remote_upgrade);
    if (e != NULL && hb->has_report) {
        json_object_set_new(e, "release", json_string(hb->report_release));
        json_object_set_new(e, "outcome", json_string(hb->report_outcome));
        if (hb->report_reason[0] != '\0')
            json_object_set_new(e, "reason", json_string(hb->report_reason));
    }
    return e;
}

/* Sends the heartbeats waiting, up to HB_BATCH_MAX, unless a batch is already out. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    ing_worker_t *w = arg;
    ing_upgrade_t *u = w->upg;
    if (u->inflight || u->npending == 0 || u->stopping)
        return;
    hb_batch_t *b = mh_calloc(1, sizeof(*b));
    b->w = w;
    json_t *arr = json_array();
    while (u->head != NULL && b->n < HB_BATCH_MAX) {
        hb_wait_t *hw = u->head;
        u->head = hw->next;
        if (u->head == NULL)
            u->tail = NULL;
        u->npending--;
        hw->next = NULL;
        b->v[b->n++] = hw;
        json_array_append_new(arr, batch_element(&hw->hb));
    }
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    const char *params[1] = {text};
    u->inflight = true;
    if (text == NULL || mh_pgasync_query(u->pg, heartbeats_sql, 1, params, batch_done, b) != 0)
        batch_done(NULL, "cannot send the batch", b);
    free(text);
}

void ing_upgrade_heartbeat(ing_worker_t *w, struct evhttp_request *req, const ing_heartbeat_t *hb)
{
    ing_upgrade_t *u = w->upg;
    if (u == NULL) {
        if (hb->has_report) {
            ing_send_error(w, req, 409, "not_offered", "upgrade_report",
                           "this service offers no firmware", 0);
            return;
        }
        ing_queue_heartbeat(w, req, hb, NULL);
        return;
    }
    /* Asked even when the meter's flag is off: its open offers must then be withdrawn. */
    hb_wait_t *hw = mh_calloc(1, sizeof(*hw));
    hw->req = req;
    hw->hb = *hb;
    if (u->npending >= HB_PENDING_MAX) {
        note_failure(w, "the firmware offer check", NULL, "too many heartbeats waiting");
        answer_heartbeat(w, hw, NULL, -1);
        return;
    }
    if (u->tail != NULL)
        u->tail->next = hw;
    else
        u->head = hw;
    u->tail = hw;
    u->npending++;
    /* At the end of this loop turn, so that the heartbeats of the turn go together. */
    if (!u->inflight)
        event_active(u->flush_ev, EV_TIMEOUT, 0);
}

int ing_upgrade_start(ing_worker_t *w)
{
    const ing_conf_t *c = &w->srv->cfg->ingest;
    if (c->firmware_store == NULL || c->firmware_store[0] == '\0')
        return 0;
    ing_upgrade_t *u = mh_calloc(1, sizeof(*u));
    w->upg = u;
    u->flush_ev = event_new(w->base, -1, 0, flush_cb, w);
    /* One batch at a time on one connection; downloads one query each on another. */
    u->pg = mh_pgasync_new(w->base, w->srv->cfg->pg.conninfo, "meterhub-ingest-upgrade",
                           c->upgrade_timeout_ms, 2);
    bool ok = u->flush_ev != NULL && u->pg != NULL;
    for (int i = 0; i < FETCH_CONNS; i++) {
        u->pg_fetch[i] =
            mh_pgasync_new(w->base, w->srv->cfg->pg.conninfo, "meterhub-ingest-download",
                           c->upgrade_timeout_ms, c->max_inflight);
        ok = ok && u->pg_fetch[i] != NULL;
    }
    return ok ? 0 : -1;
}

void ing_upgrade_stop(ing_worker_t *w)
{
    ing_upgrade_t *u = w->upg;
    if (u == NULL)
        return;
    u->stopping = true;
    mh_pgasync_free(u->pg); /* answers the batch and the downloads still out */
    for (int i = 0; i < FETCH_CONNS; i++)
        mh_pgasync_free(u->pg_fetch[i]);
    while (u->head != NULL) {
        hb_wait_t *hw = u->head;
        u->head = hw->next;
        answer_heartbeat(w, hw, NULL, -1);
    }
    if (u->flush_ev != NULL)
        event_free(u->flush_ev);
    free(u);
    w->upg = NULL;
}

static void count_status(ing_worker_t *w, int status)
{
    atomic_fetch_add_explicit(&w->metrics.requests[ing_metrics_status_index(status)], 1,
                              memory_order_relaxed);
}

/* Sends bytes [first, last] of the image; 206 unless the whole image was asked for. */
static void send_image(ing_worker_t *w, struct evhttp_request *req, const dl_wait_t *dw,
                       const char *digest, int64_t size)
{
    char path[4096], hdr[128];
    int64_t first, last;
    int fd = -1;
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);

    if (upg_range_resolve(&dw->range, size, &first, &last) != 0) {
        snprintf(hdr, sizeof(hdr), "bytes */%" PRId64, size);
        evhttp_add_header(out, "Content-Range", hdr);
        ing_send_error(w, req, 416, "range_not_satisfiable", "Range",
                       "the range starts past the end of the image", 0);
        return;
    }
    struct stat st;
    const char *why = NULL;
    path[0] = '\0';
    if (upg_store_path(w->srv->cfg->ingest.firmware_store, digest, path, sizeof(path)) != 0)
        why = "not a valid store path";
    else if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 || fstat(fd, &st) != 0)
        why = strerror(errno);
    else if (!S_ISREG(st.st_mode) || st.st_size != size)
        why = "not a file of the published size";
    if (why != NULL) {
        mh_log(MH_LOG_ERROR, "worker %d: firmware store: %s: %s (release %s, %" PRId64 " bytes)",
               w->index, path[0] ? path : digest, why, dw->release, size);
        if (fd >= 0)
            close(fd);
        ing_send_error(w, req, 503, "image_unavailable", NULL,
                       "the image is missing from this server's store; retry later",
                       UPG_RETRY_AFTER);
        return;
    }
    struct evbuffer_file_segment *seg =
        evbuffer_file_segment_new(fd, first, last - first + 1, EVBUF_FS_CLOSE_ON_FREE);
    if (seg == NULL) {
        close(fd);
        ing_send_error(w, req, 503, "image_unavailable", NULL, "cannot read the image",
                       UPG_RETRY_AFTER);
        return;
    }
    int rc = evbuffer_add_file_segment(evhttp_request_get_output_buffer(req), seg, 0, -1);
    evbuffer_file_segment_free(seg); /* the buffer holds its own reference */
    if (rc != 0) {
        ing_send_error(w, req, 503, "image_unavailable", NULL, "cannot read the image",
                       UPG_RETRY_AFTER);
        return;
    }
    int status = dw->range.kind == UPG_RANGE_ALL ? 200 : 206;
    evhttp_add_header(out, "Content-Type", "application/octet-stream");
    evhttp_add_header(out, "Accept-Ranges", "bytes");
    snprintf(hdr, sizeof(hdr), "\"%s\"", digest);
    evhttp_add_header(out, "ETag", hdr);
    if (status == 206) {
        snprintf(hdr, sizeof(hdr), "bytes %" PRId64 "-%" PRId64 "/%" PRId64, first, last, size);
        evhttp_add_header(out, "Content-Range", hdr);
    }
    atomic_fetch_add_explicit(&w->metrics.firmware_downloads, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->metrics.firmware_bytes, (uint64_t)(last - first + 1),
                              memory_order_relaxed);
    count_status(w, status);
    evhttp_send_reply(req, status, NULL, NULL);
}

static void download_done(const PGresult *res, const char *err, void *arg)
{
    dl_wait_t *dw = arg;
    ing_worker_t *w = dw->w;

    if (!one_row(res, 3)) {
        note_failure(w, "the firmware download check", res, err);
        ing_send_error(w, dw->req, 503, "upgrade_unavailable", NULL,
                       "cannot check the offer right now; retry later", UPG_RETRY_AFTER);
        goto done;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "ok") != 0) {
        atomic_fetch_add_explicit(&w->metrics.firmware_refused, 1, memory_order_relaxed);
        ing_send_error(w, dw->req, 403, "not_offered", NULL,
                       "this device holds no open offer of that release", 0);
        goto done;
    }
    send_image(w, dw->req, dw, PQgetvalue(res, 0, 1), strtoll(PQgetvalue(res, 0, 2), NULL, 10));
done:
    free(dw);
}

void ing_upgrade_download(ing_worker_t *w, struct evhttp_request *req, const char *id, size_t idlen)
{
    const ing_device_t *d = ing_authenticate(w, req);
    if (d == NULL)
        return;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
        ing_send_error(w, req, 405, "method_not_allowed", NULL, "use GET", 0);
        return;
    }
    if (!mh_id_valid_n(id, idlen)) {
        ing_send_error(w, req, 404, "not_found", NULL, "no such release", 0);
        return;
    }
    if (ing_rate_limited(w, req, d))
        return;
    if (w->upg == NULL) {
        atomic_fetch_add_explicit(&w->metrics.firmware_refused, 1, memory_order_relaxed);
        ing_send_error(w, req, 403, "not_offered", NULL, "this service offers no firmware", 0);
        return;
    }
    dl_wait_t *dw = mh_calloc(1, sizeof(*dw));
    dw->w = w;
    dw->req = req;
    memcpy(dw->release, id, MH_ID_LEN);
    upg_range_parse(evhttp_find_header(evhttp_request_get_input_headers(req), "Range"), &dw->range);

    /* What the response will cover, so PostgreSQL can tell when it reaches the last byte
     * (an empty suffix never does). */
    char did[24], first[24], last[24];
    const char *pfirst = first, *plast = NULL;
    snprintf(did, sizeof(did), "%" PRIu64, d->did);
    switch (dw->range.kind) {
    case UPG_RANGE_SUFFIX:
        if (dw->range.a > 0)
            pfirst = NULL;
        else
            snprintf(first, sizeof(first), "%" PRId64, INT64_MAX);
        break;
    case UPG_RANGE_SPAN:
        snprintf(last, sizeof(last), "%" PRId64, dw->range.b);
        plast = last;
        /* fall through */
    case UPG_RANGE_FROM:
        snprintf(first, sizeof(first), "%" PRId64, dw->range.a);
        break;
    case UPG_RANGE_ALL:
    default:
        snprintf(first, sizeof(first), "0");
        break;
    }
    const char *params[4] = {did, dw->release, pfirst, plast};
    mh_pgasync_t *pg = w->upg->pg_fetch[0];
    for (int i = 1; i < FETCH_CONNS; i++)
        if (mh_pgasync_pending(w->upg->pg_fetch[i]) < mh_pgasync_pending(pg))
            pg = w->upg->pg_fetch[i];
    if (mh_pgasync_query(pg, download_sql, 4, params, download_done, dw) != 0)
        download_done(NULL, "too many checks waiting", dw);
}
