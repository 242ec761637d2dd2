/* One firmware download request: see download.h. */
#include "device-sim/download.h"

#include "common/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An error answer's body is JSON of a few hundred bytes: more than this is not read. */
#define SIM_DL_ERROR_BODY_MAX 65536
/* Bytes handed on per call. */
#define SIM_DL_SLICE 16384
/* Longest Retry-After honoured, as for batches. */
#define SIM_DL_RETRY_AFTER_MAX_S 3600

static void finish(sim_download_t *dl)
{
    if (dl->finished)
        return;
    dl->finished = true;
    dl->in_flight = false;
    dl->cbs->done(dl->arg, &dl->result);
}

/* A decimal header value into *out; false unless it is all digits and fits. */
static bool parse_count(const char *s, int64_t *out)
{
    char *end = NULL;
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* "bytes a-b/t" into its three numbers. */
static bool parse_content_range(const char *s, int64_t *a, int64_t *b, int64_t *t)
{
    long long x, y, z;
    int n = 0;
    if (s == NULL || sscanf(s, "bytes %lld-%lld/%lld%n", &x, &y, &z, &n) != 3 || s[n] != '\0' ||
        x < 0 || y < x || z <= y)
        return false;
    *a = x;
    *b = y;
    *t = z;
    return true;
}

/* After the headers: what the body will be, and whether it may be more than is left. */
static int on_headers(struct evhttp_request *req, void *arg)
{
    sim_download_t *dl = arg;
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    int status = evhttp_request_get_response_code(req);
    const char *te = evhttp_find_header(h, "Transfer-Encoding");
    int64_t expect = dl->left, len = 0, a = 0, b = 0, t = 0;
    bool has_len = parse_count(evhttp_find_header(h, "Content-Length"), &len);

    if (dl->finished)
        return -1;
    dl->result.status = status;
    dl->framed = has_len || (te != NULL && evutil_ascii_strcasecmp(te, "chunked") == 0);
    if (status == 200) {
        /* The whole image, whatever was asked. */
        expect = dl->offset + dl->left;
        if (dl->offset > 0 && dl->cbs->restart != NULL)
            dl->cbs->restart(dl->arg);
        dl->image = true;
    } else if (status == 206) {
        if (!parse_content_range(evhttp_find_header(h, "Content-Range"), &a, &b, &t)) {
            mh_log(MH_LOG_DEBUG, "download: 206 without a usable Content-Range");
            goto abort;
        }
        if (t != dl->offset + dl->left || b >= t) {
            /* The server's image is not the manifest's size. */
            dl->result.too_long = t > dl->offset + dl->left;
            goto abort;
        }
        if (a != dl->offset || b != t - 1)
            goto abort;
        dl->image = true;
    } else {
        if (evcon != NULL)
            evhttp_connection_set_max_body_size(evcon, SIM_DL_ERROR_BODY_MAX);
        return 0;
    }
    if (has_len && len > expect) {
        dl->result.too_long = true;
        goto abort;
    }
    /* A body that goes on beyond what is left fails in evhttp as too long. */
    if (evcon != NULL)
        evhttp_connection_set_max_body_size(evcon, (ev_ssize_t)expect);
    return 0;
abort:
    finish(dl);
    return -1;
}

static void on_chunk(struct evhttp_request *req, void *arg)
{
    sim_download_t *dl = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    uint8_t slice[SIM_DL_SLICE];

    if (dl->finished)
        return; /* evhttp drains what is left */
    if (!dl->image) {
        size_t room = sizeof(dl->errbody) - 1 - dl->errlen;
        int n = room > 0 ? evbuffer_remove(in, dl->errbody + dl->errlen, room) : 0;
        if (n > 0)
            dl->errlen += (size_t)n;
        dl->errbody[dl->errlen] = '\0';
        return;
    }
    for (;;) {
        int n = evbuffer_remove(in, slice, sizeof(slice));
        if (n <= 0)
            break;
        if (dl->cbs->data(dl->arg, slice, (size_t)n) != 0) {
            dl->result.too_long = true;
            finish(dl);
            return;
        }
        dl->got += n;
        if (dl->drop_after > 0 && (uint64_t)dl->got >= dl->drop_after) {
            /* The fault option: as if the network had dropped the connection here. */
            dl->result.interrupted = true;
            finish(dl);
            return;
        }
    }
}

static void on_error(enum evhttp_request_error err, void *arg)
{
    sim_download_t *dl = arg;
    dl->result.error = err;
    dl->result.error_set = true;
}

static void on_done(struct evhttp_request *req, void *arg)
{
    sim_download_t *dl = arg;
    json_t *o = NULL;

    if (dl->finished)
        return;
    if (req == NULL || evhttp_request_get_response_code(req) <= 0) {
        dl->result.status = 0;
        if (dl->result.error_set && dl->result.error == EVREQ_HTTP_DATA_TOO_LONG && dl->image)
            dl->result.too_long = true;
        finish(dl);
        return;
    }
    dl->result.status = evhttp_request_get_response_code(req);
    if (dl->image) {
        dl->result.complete = true;
        /* Without framing, the end of the body is only the end of the connection, which a
         * failure looks like too: short is an interrupted attempt, not a short image. */
        if (!dl->framed && dl->got < dl->left) {
            dl->result.complete = false;
            dl->result.short_close = true;
        }
    } else {
        const char *ra = evhttp_find_header(evhttp_request_get_input_headers(req), "Retry-After");
        int64_t s = 0;
        /* An HTTP date or garbage: come back later all the same. */
        if (ra != NULL)
            dl->result.retry_after_s = !parse_count(ra, &s)           ? 1
                                       : s > SIM_DL_RETRY_AFTER_MAX_S ? SIM_DL_RETRY_AFTER_MAX_S
                                                                      : (uint32_t)s;
        if (dl->errlen > 0)
            o = json_loadb(dl->errbody, dl->errlen, 0, NULL);
    }
    const char *code = json_string_value(json_object_get(o, "error"));
    snprintf(dl->result.code, sizeof(dl->result.code), "%s", code ? code : "-");
    json_decref(o);
    finish(dl);
}

int sim_download_start(sim_download_t *dl, struct evhttp_connection *evcon, const char *host_header,
                       const char *path, int64_t offset, int64_t total, uint64_t drop_after,
                       const sim_download_cbs_t *cbs, void *arg)
{
    struct evhttp_request *req = NULL;
    char range[48];

    memset(dl, 0, sizeof(*dl));
    dl->cbs = cbs;
    dl->arg = arg;
    dl->offset = offset;
    dl->left = total - offset;
    dl->drop_after = drop_after;
    snprintf(dl->result.code, sizeof(dl->result.code), "-");
    if (dl->left <= 0)
        goto fail;
    req = evhttp_request_new(on_done, dl);
    if (req == NULL)
        goto fail;
    evhttp_request_set_header_cb(req, on_headers);
    evhttp_request_set_chunked_cb(req, on_chunk);
    evhttp_request_set_error_cb(req, on_error);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (evhttp_add_header(h, "Host", host_header) != 0)
        goto fail;
    if (offset > 0) {
        snprintf(range, sizeof(range), "bytes=%" PRId64 "-", offset);
        if (evhttp_add_header(h, "Range", range) != 0)
            goto fail;
    }
    dl->in_flight = true;
    if (evhttp_make_request(evcon, req, EVHTTP_REQ_GET, path) != 0) {
        /* evhttp owned the request: it is gone, and if evhttp failed it through on_done, the
         * caller has its result already. */
        req = NULL;
        if (dl->finished)
            return 0;
        dl->in_flight = false;
        dl->finished = true;
        goto fail;
    }
    return 0;
fail:
    if (req != NULL)
        evhttp_request_free(req);
    mh_log(MH_LOG_WARN, "download: could not send GET %s", path);
    return -1;
}

void sim_download_forget(sim_download_t *dl)
{
    dl->in_flight = false;
    dl->finished = true;
}
