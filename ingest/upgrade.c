/*
 * Firmware on the device wire (docs/upgrade.md): the offer in a heartbeat's answer, the
 * outcome a meter reports, and GET /firmware/<release-id>.
 *
 * PostgreSQL decides everything (upg_heartbeats and upg_downloads of deploy/sql/013), asked in
 * batches without blocking the worker, on connections of its own (w->upg). When it cannot be
 * asked, the answer is the safe one: a heartbeat gets no offer, a download gets 503, and a
 * report, which must not be lost, gets 503 so the meter sends it again.
 */
#include "ingest_internal.h"

#include "common/alloc.h"
#include "common/log.h"
#include "common/pgbatch.h"
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

/* Offer checks and download checks go to PostgreSQL in batches (common/pgbatch): those that
 * arrive while a batch is out wait for the next one, up to BATCH_MAX in a call. Beyond
 * PENDING_MAX waiting, the worker is overloaded and sheds: a heartbeat is answered at once
 * without an offer (a report and a download get 503), rather than after a wait that would only
 * end in a timeout. Download checks come in bursts (a rollout reaches many meters within one
 * heartbeat period) and have connections of their own, so they never wait behind heartbeats. */
#define BATCH_MAX 256
#define PENDING_MAX 4096
#define DOWNLOAD_CONNS 2

/* encode(..., 'base64') wraps lines at 76 characters: the offer wants one line. */
static const char heartbeats_sql[] =
    "SELECT ord, status, release_id, translate(encode(manifest, 'base64'), E'\\n', ''),"
    " translate(encode(signature, 'base64'), E'\\n', ''), log_seq, log_prev, log_hash"
    " FROM upg_heartbeats($1::jsonb)";
#define HB_NCOLS 8

static const char downloads_sql[] =
    "SELECT ord, status, image_sha256, size FROM upg_downloads($1::jsonb)";
#define DL_NCOLS 4

typedef struct hb_wait {
    struct evhttp_request *req;
    ing_heartbeat_t hb;
} hb_wait_t;

struct ing_upgrade {
    mh_pgbatch_t *heartbeats;
    mh_pgbatch_t *downloads;
};

typedef struct dl_wait {
    struct evhttp_request *req;
    uint64_t did;
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
static void answer_heartbeat(void *item, const PGresult *res, int row, void *arg)
{
    hb_wait_t *hw = item;
    ing_worker_t *w = arg;
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

static json_t *heartbeat_element(void *item, void *arg)
{
    (void)arg;
    const ing_heartbeat_t *hb = &((hb_wait_t *)item)->hb;
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

static void heartbeats_failed(const PGresult *res, const char *err, void *arg)
{
    note_failure(arg, "the firmware offer check", res, err);
}

static const mh_pgbatch_ops_t heartbeat_ops = {
    .sql = heartbeats_sql,
    .ncols = HB_NCOLS,
    .element = heartbeat_element,
    .answer = answer_heartbeat,
    .failed = heartbeats_failed,
};

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
    if (mh_pgbatch_add(u->heartbeats, hw) != 0) {
        note_failure(w, "the firmware offer check", NULL, "too many heartbeats waiting");
        answer_heartbeat(hw, NULL, -1, w);
    }
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

/* Answers one download from row `row` of its batch's result, or with 503 when PostgreSQL did
 * not decide it. Frees dw. */
static void answer_download(void *item, const PGresult *res, int row, void *arg)
{
    dl_wait_t *dw = item;
    ing_worker_t *w = arg;

    if (res == NULL) {
        ing_send_error(w, dw->req, 503, "upgrade_unavailable", NULL,
                       "cannot check the offer right now; retry later", UPG_RETRY_AFTER);
        goto done;
    }
    if (strcmp(PQgetvalue(res, row, 1), "ok") != 0) {
        atomic_fetch_add_explicit(&w->metrics.firmware_refused, 1, memory_order_relaxed);
        ing_send_error(w, dw->req, 403, "not_offered", NULL,
                       "this device holds no open offer of that release", 0);
        goto done;
    }
    send_image(w, dw->req, dw, PQgetvalue(res, row, 2), strtoll(PQgetvalue(res, row, 3), NULL, 10));
done:
    free(dw);
}

/* The check's element: what the response will cover, so PostgreSQL can tell when it reaches
 * the last byte ("first" null: a non-empty suffix, which may; an empty suffix never does). */
static json_t *download_element(void *item, void *arg)
{
    (void)arg;
    const dl_wait_t *dw = item;
    json_t *first = NULL, *last = json_null();
    switch (dw->range.kind) {
    case UPG_RANGE_SUFFIX:
        first = dw->range.a > 0 ? json_null() : json_integer(INT64_MAX);
        break;
    case UPG_RANGE_SPAN:
        json_decref(last);
        last = json_integer(dw->range.b);
        /* fall through */
    case UPG_RANGE_FROM:
        first = json_integer(dw->range.a);
        break;
    case UPG_RANGE_ALL:
    default:
        first = json_integer(0);
        break;
    }
    return json_pack("{s:I, s:s, s:o, s:o}", "did", (json_int_t)dw->did, "release", dw->release,
                     "first", first, "last", last);
}

static void downloads_failed(const PGresult *res, const char *err, void *arg)
{
    note_failure(arg, "the firmware download check", res, err);
}

static const mh_pgbatch_ops_t download_ops = {
    .sql = downloads_sql,
    .ncols = DL_NCOLS,
    .element = download_element,
    .answer = answer_download,
    .failed = downloads_failed,
};

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
    dw->req = req;
    dw->did = d->did;
    memcpy(dw->release, id, MH_ID_LEN);
    upg_range_parse(evhttp_find_header(evhttp_request_get_input_headers(req), "Range"), &dw->range);
    if (mh_pgbatch_add(w->upg->downloads, dw) != 0) {
        note_failure(w, "the firmware download check", NULL, "too many downloads waiting");
        answer_download(dw, NULL, -1, w);
    }
}

int ing_upgrade_start(ing_worker_t *w)
{
    const ing_conf_t *c = &w->srv->cfg->ingest;
    const char *conninfo = w->srv->cfg->pg.conninfo;
    if (c->firmware_store == NULL || c->firmware_store[0] == '\0')
        return 0;
    ing_upgrade_t *u = mh_calloc(1, sizeof(*u));
    w->upg = u;
    u->heartbeats =
        mh_pgbatch_new(w->base, conninfo, "meterhub-ingest-upgrade", c->upgrade_timeout_ms, 1,
                       BATCH_MAX, PENDING_MAX, &heartbeat_ops, w);
    u->downloads =
        mh_pgbatch_new(w->base, conninfo, "meterhub-ingest-download", c->upgrade_timeout_ms,
                       DOWNLOAD_CONNS, BATCH_MAX, PENDING_MAX, &download_ops, w);
    return u->heartbeats != NULL && u->downloads != NULL ? 0 : -1;
}

void ing_upgrade_stop(ing_worker_t *w)
{
    ing_upgrade_t *u = w->upg;
    if (u == NULL)
        return;
    mh_pgbatch_free(u->heartbeats); /* answers what is out and what waits */
    mh_pgbatch_free(u->downloads);
    free(u);
    w->upg = NULL;
}
