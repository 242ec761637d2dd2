/* Loading and refreshing the meters' copy of the release log: see release_fetch.h. */
#include "device-sim/release_fetch.h"

#include "common/fileio.h"
#include "common/log.h"
#include "common/tls.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A saved answer, or one page of the API's: 100 entries of at most a few tens of kB each. */
#define SIM_RELEASE_ANSWER_MAX (16u << 20)
#define SIM_RELEASE_PAGE_LIMIT 100

bool sim_release_source_is_url(const char *source)
{
    return source != NULL && strncmp(source, "https://", 8) == 0;
}

int sim_release_log_load_file(const char *path, sim_release_log_t *log)
{
    char *text = mh_read_text_file(path, SIM_RELEASE_ANSWER_MAX);
    json_error_t jerr;
    json_t *page = NULL;
    int64_t next = -1;
    char err[160];
    int rc = -1;

    if (text == NULL)
        goto out;
    page = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (page == NULL) {
        mh_log(MH_LOG_ERROR, "release log %s: not JSON: %s (line %d)", path, jerr.text, jerr.line);
        goto out;
    }
    if (sim_release_log_add_page(log, page, &next, err, sizeof(err)) < 0) {
        mh_log(MH_LOG_ERROR, "release log %s: %s", path, err);
        goto out;
    }
    if (next >= 0)
        mh_log(MH_LOG_WARN,
               "release log %s: one page of several (next_after %" PRId64 "): "
               "releases after seq %" PRId64 " are unknown to the meters",
               path, next, sim_release_log_head(log));
    rc = 0;
out:
    json_decref(page);
    free(text);
    return rc;
}

typedef struct fetch {
    struct event_base *base;
    bool done;
    int status;
    json_t *body;
    char why[160];
} fetch_t;

static void on_answer(struct evhttp_request *req, void *arg)
{
    fetch_t *f = arg;
    json_error_t jerr;

    f->done = true;
    f->status = req ? evhttp_request_get_response_code(req) : 0;
    if (f->status == 200) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t n = evbuffer_get_length(in);
        const char *p = n > 0 ? (const char *)evbuffer_pullup(in, (ev_ssize_t)n) : NULL;
        f->body = p ? json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr) : NULL;
        if (f->body == NULL)
            snprintf(f->why, sizeof(f->why), "the answer is not JSON");
    } else {
        snprintf(f->why, sizeof(f->why), "answered %d", f->status);
    }
    event_base_loopbreak(f->base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    fetch_t *f = arg;
    snprintf(f->why, sizeof(f->why), "no answer in time");
    event_base_loopbreak(f->base);
}

/* The TLS client side of one connection: the server must be the URL's host. */
static SSL *ssl_for(SSL_CTX *ctx, const char *host)
{
    struct in6_addr a6;
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        goto fail;
    if (inet_pton(AF_INET, host, &a6) == 1 || inet_pton(AF_INET6, host, &a6) == 1) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1)
            goto fail;
    } else if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1) {
        goto fail;
    }
    return ssl;
fail:
    mh_log_openssl(MH_LOG_ERROR, "release log: TLS setup");
    SSL_free(ssl);
    return NULL;
}

/* One GET of path on a fresh connection; *page is owned by the caller on success. */
static int get_page(struct event_base *base, SSL_CTX *ctx, const char *host, int port,
                    const char *path, unsigned timeout_s, json_t **page)
{
    fetch_t f = {.base = base};
    struct bufferevent *bev = NULL;
    struct evhttp_connection *evcon = NULL;
    struct evhttp_request *req = NULL;
    struct event *deadline = NULL;
    struct timeval tv = {(time_t)timeout_s * 2 + 1, 0};
    char hosthdr[300];
    int rc = -1;

    SSL *ssl = ssl_for(ctx, host);
    if (ssl == NULL)
        goto out;
    /* BEV_OPT_CLOSE_ON_FREE: the bufferevent owns the SSL from here on, also on failure. */
    bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        snprintf(f.why, sizeof(f.why), "bufferevent_openssl_socket_new failed");
        goto out;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    evcon = evhttp_connection_base_bufferevent_new(base, NULL, bev, host, (unsigned short)port);
    if (evcon == NULL) {
        bufferevent_free(bev);
        snprintf(f.why, sizeof(f.why), "evhttp_connection_base_bufferevent_new failed");
        goto out;
    }
    evhttp_connection_set_timeout(evcon, (int)timeout_s);
    evhttp_connection_set_retries(evcon, 0);
    evhttp_connection_set_max_body_size(evcon, SIM_RELEASE_ANSWER_MAX);
    deadline = evtimer_new(base, on_deadline, &f);
    req = evhttp_request_new(on_answer, &f);
    if (deadline == NULL || req == NULL || evtimer_add(deadline, &tv) != 0)
        goto out;
    if (strchr(host, ':') != NULL)
        snprintf(hosthdr, sizeof(hosthdr), "[%s]:%d", host, port);
    else
        snprintf(hosthdr, sizeof(hosthdr), "%s:%d", host, port);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (evhttp_add_header(h, "Host", hosthdr) != 0 ||
        evhttp_add_header(h, "Accept", "application/json") != 0 ||
        evhttp_add_header(h, "Connection", "close") != 0)
        goto out;
    int made = evhttp_make_request(evcon, req, EVHTTP_REQ_GET, path);
    req = NULL; /* evhttp's now, whatever came of it */
    if (made != 0) {
        if (f.why[0] == '\0')
            snprintf(f.why, sizeof(f.why), "could not send the request");
        goto out;
    }
    if (!f.done && event_base_dispatch(base) < 0)
        snprintf(f.why, sizeof(f.why), "event loop failed");
    if (f.done && f.body != NULL) {
        *page = f.body;
        f.body = NULL;
        rc = 0;
    }
out:
    if (rc != 0)
        mh_log(MH_LOG_ERROR, "release log: GET %s from %s: %s", path, host,
               f.why[0] ? f.why : "failed");
    json_decref(f.body);
    if (req != NULL)
        evhttp_request_free(req);
    if (evcon != NULL)
        evhttp_connection_free(evcon);
    if (deadline != NULL)
        event_free(deadline);
    ERR_clear_error();
    return rc;
}

int sim_release_log_fetch(const char *url, const char *ca_file, unsigned timeout_s,
                          sim_release_log_t *log, pthread_rwlock_t *lock)
{
    struct evhttp_uri *uri = evhttp_uri_parse(url);
    const char *host = uri ? evhttp_uri_get_host(uri) : NULL;
    const char *base_path = uri ? evhttp_uri_get_path(uri) : NULL;
    int port = uri ? evhttp_uri_get_port(uri) : -1;
    struct event_base *base = NULL;
    SSL_CTX *ctx = NULL;
    json_t *page = NULL;
    char path[1200], err[160];
    int rc = -1;

    if (host == NULL || host[0] == '\0' || evhttp_uri_get_query(uri) != NULL ||
        (base_path != NULL && strlen(base_path) > 1000)) {
        mh_log(MH_LOG_ERROR, "release log: cannot use the URL %.200s", url);
        goto out;
    }
    if (base_path == NULL || base_path[0] == '\0')
        base_path = "/v1/firmware";
    base = event_base_new();
    ctx = mh_tls_client_ctx_new(ca_file, NULL, NULL);
    if (base == NULL || ctx == NULL)
        goto out;
    /* The head is only ever moved by this thread: reading it needs no lock. */
    int64_t after = sim_release_log_head(log);
    for (unsigned pages = 0;; pages++) {
        int64_t next = -1;
        if (pages == SIM_RELEASE_FETCH_PAGES) {
            mh_log(MH_LOG_ERROR, "release log: more than %u pages", SIM_RELEASE_FETCH_PAGES);
            goto out;
        }
        snprintf(path, sizeof(path), "%s?after=%" PRId64 "&limit=%d", base_path, after,
                 SIM_RELEASE_PAGE_LIMIT);
        if (get_page(base, ctx, host, port < 0 ? 443 : port, path, timeout_s, &page) != 0)
            goto out;
        if (lock != NULL)
            pthread_rwlock_wrlock(lock);
        long added = sim_release_log_add_page(log, page, &next, err, sizeof(err));
        bool broken = log->broken;
        if (lock != NULL)
            pthread_rwlock_unlock(lock);
        json_decref(page);
        page = NULL;
        if (added < 0) {
            mh_log(MH_LOG_ERROR, "release log: %s: %s", url, err);
            goto out;
        }
        if (broken) {
            mh_log(MH_LOG_WARN,
                   "release log: the chain breaks at seq %" PRId64 " (%s): "
                   "no release from there on will be installed",
                   log->broken_seq, log->broken_why);
            break;
        }
        if (next < 0)
            break;
        if (next <= after) {
            mh_log(MH_LOG_ERROR, "release log: next_after %" PRId64 " does not move on", next);
            goto out;
        }
        after = next;
    }
    rc = 0;
out:
    json_decref(page);
    SSL_CTX_free(ctx);
    if (base != NULL)
        event_base_free(base);
    if (uri != NULL)
        evhttp_uri_free(uri);
    return rc;
}
