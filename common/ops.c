#include "ops.h"
#include "alloc.h"
#include "log.h"

#include <arpa/inet.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

struct mh_ops_server {
    struct evhttp *http;
    mh_ops_metrics_fn metrics;
    mh_ops_health_fn health;
    void *arg;
};

bool mh_addr_is_loopback(const char *addr)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

static void ops_cb(struct evhttp_request *req, void *arg)
{
    mh_ops_server_t *ops = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_send_error(req, 405, NULL);
        return;
    }
    if (path != NULL && strcmp(path, "/metrics") == 0) {
        evhttp_add_header(hdr, "Content-Type", "text/plain; version=0.0.4");
        ops->metrics(out, ops->arg);
        evhttp_send_reply(req, 200, "OK", NULL);
    } else if (path != NULL && strcmp(path, "/healthz") == 0) {
        evhttp_add_header(hdr, "Content-Type", "application/json");
        bool ok = ops->health(out, ops->arg);
        evhttp_send_reply(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", NULL);
    } else {
        evhttp_send_error(req, 404, NULL);
    }
}

mh_ops_server_t *mh_ops_server_new(struct event_base *base, const char *addr, int port,
                                   mh_ops_metrics_fn metrics, mh_ops_health_fn health, void *arg)
{
    mh_ops_server_t *ops = NULL;
    if (!mh_addr_is_loopback(addr)) {
        mh_log(MH_LOG_ERROR, "ops: %s is not a loopback address; refusing to expose metrics", addr);
        goto fail;
    }
    ops = mh_calloc(1, sizeof(*ops));
    ops->metrics = metrics;
    ops->health = health;
    ops->arg = arg;
    ops->http = evhttp_new(base);
    if (ops->http == NULL) {
        mh_log(MH_LOG_ERROR, "ops: evhttp_new failed");
        goto fail;
    }
    evhttp_set_allowed_methods(ops->http, EVHTTP_REQ_GET);
    evhttp_set_timeout(ops->http, 10);
    evhttp_set_gencb(ops->http, ops_cb, ops);
    if (evhttp_bind_socket(ops->http, addr, (ev_uint16_t)port) != 0) {
        mh_log(MH_LOG_ERROR, "ops: cannot listen on %s:%d", addr, port);
        goto fail;
    }
    mh_log(MH_LOG_INFO, "ops: metrics and health on http://%s:%d", addr, port);
    return ops;
fail:
    mh_ops_server_free(ops);
    return NULL;
}

void mh_ops_server_free(mh_ops_server_t *ops)
{
    if (ops == NULL)
        return;
    if (ops->http != NULL)
        evhttp_free(ops->http);
    free(ops);
}
