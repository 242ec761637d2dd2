#ifndef SIM_DOWNLOAD_H
#define SIM_DOWNLOAD_H

/*
 * One firmware download request, GET /firmware/<release id> (docs/upgrade.md "Device wire"),
 * on a connection the caller owns: at most the bytes the image has left are taken. A response
 * that announces more (Content-Length, Content-Range) is cut at its headers; one that sends
 * more (chunked, or until close) is cut when it does, by evhttp's max body size set to what is
 * left; the bytes are handed on as they come, never collected. A request from an offset asks
 * for `Range: bytes=N-`; a 200 answer to it starts again from byte 0.
 *
 * The fault option drop_after makes the meter itself cut the response after that many body
 * bytes, as a network failure would, so that resuming can be seen working.
 *
 * Every callback runs inside evhttp's: it may record and schedule, never free the connection.
 * Worker thread of the connection.
 */

#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device-sim/stats.h"

/* What a request came to. */
typedef struct sim_dl_result {
    int status;       /* HTTP status; 0 when no answer came */
    bool complete;    /* a 200 or 206 whose body ended where its framing said */
    bool too_long;    /* the server sent or announced more than the image has left */
    bool interrupted; /* cut by the meter itself (drop_after) */
    bool short_close; /* a body without framing ended early: a failed attempt, not an image */
    bool error_set;
    enum evhttp_request_error error;
    char code[SIM_ERROR_CODE_MAX]; /* "error" of a refusal's JSON body, "-" if none */
    uint32_t retry_after_s;        /* a refusal's Retry-After (capped at an hour); 0: none */
} sim_dl_result_t;

typedef struct sim_download_cbs {
    /* Body bytes in order, from the offset asked for (from 0 after restart). 0 to go on, -1 to
     * stop reading (then done reports too_long). */
    int (*data)(void *arg, const uint8_t *buf, size_t len);
    /* The server answered a Range request with the whole image. */
    void (*restart)(void *arg);
    /* Exactly once per request that ends while its connection lives. */
    void (*done)(void *arg, const sim_dl_result_t *r);
} sim_download_cbs_t;

typedef struct sim_download {
    const sim_download_cbs_t *cbs; /* borrowed */
    void *arg;
    int64_t offset; /* the first byte asked for */
    int64_t left;   /* bytes the image has from offset on */
    int64_t got;    /* body bytes taken from this response */
    uint64_t drop_after;
    bool in_flight; /* sent, done not yet called */
    bool finished;  /* done called: whatever evhttp says after is ignored */
    bool image;     /* the response is 200 or 206 (body bytes are image bytes) */
    bool framed;    /* Content-Length or chunked: the end of the body is known */
    char errbody[1024];
    size_t errlen;
    sim_dl_result_t result;
} sim_download_t;

/*
 * Sends GET path on evcon (borrowed) for the bytes [offset, total) of an image of total bytes,
 * with host_header as Host. drop_after: 0, or cut the response after that many body bytes.
 * Returns 0, or -1 (logged) when the request could not be made (no callback then). dl is
 * owned by the caller and must stay put while in flight; freeing the connection meanwhile
 * frees the request without any callback: then call sim_download_forget.
 */
int sim_download_start(sim_download_t *dl, struct evhttp_connection *evcon, const char *host_header,
                       const char *path, int64_t offset, int64_t total, uint64_t drop_after,
                       const sim_download_cbs_t *cbs, void *arg);

/* The request's connection was freed before it ended: it is over, without a result. */
void sim_download_forget(sim_download_t *dl);

#endif
