/*
 * Worker threads, listeners, TLS connections and the directory swap. Each worker binds its
 * own SO_REUSEPORT socket on the same port, so the kernel spreads connections across workers
 * and no accept lock is shared.
 */
#include "ingest_internal.h"

#include "common/alloc.h"
#include "common/evloop.h"
#include "common/log.h"
#include "common/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent_ssl.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ING_TICK_MS 250

static int conn_ex_index = -1;

static void conn_unlink(ing_conn_t *c)
{
    c->prev->next = c->next;
    c->next->prev = c->prev;
}

ing_conn_t *ing_conn_of(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    ing_conn_t *c = ssl ? SSL_get_ex_data(ssl, conn_ex_index) : NULL;
    if (c != NULL && !c->nodelay) {
        /*
         * evhttp gives us the socket only now. Without TCP_NODELAY a response that TLS writes
         * as two records waits for the client's delayed ACK: 40 ms per keep-alive request.
         */
        int one = 1;
        evutil_socket_t fd = bufferevent_getfd(bev);
        if (fd >= 0 && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
            mh_log(MH_LOG_WARN, "ingest: cannot set TCP_NODELAY: %s", strerror(errno));
        c->nodelay = true;
    }
    return c;
}

/* Runs when OpenSSL frees a connection's SSL object, i.e. when evhttp frees the connection. */
static void conn_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    ing_conn_t *c = ptr;
    if (c == NULL)
        return;
    /*
     * OpenSSL drops the session of a connection freed without a sent close_notify from the
     * cache, and libevent never sends one: no meter could ever resume. Marking the shutdown
     * done (what nginx's quiet shutdown amounts to) keeps the session; TLS 1.3 allows resuming
     * after any closure, and a TLS 1.2 session's keys are not weakened by a cut connection.
     */
    if (parent != NULL)
        SSL_set_shutdown(parent, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    conn_unlink(c);
    atomic_fetch_sub_explicit(&c->worker->metrics.connections_open, 1, memory_order_relaxed);
    free(c);
}

/* Metric label of a TLS alert we sent; OpenSSL 3.0 has no name for some TLS 1.3 alerts. */
const char *ing_tls_alert_name(int desc)
{
    switch (desc) {
    case 10:
        return "unexpected_message";
    case 40:
        return "handshake_failure";
    case 42:
        return "bad_certificate";
    case 44:
        return "certificate_revoked";
    case 45:
        return "certificate_expired";
    case 46:
        return "certificate_unknown";
    case 47:
        return "illegal_parameter";
    case 48:
        return "unknown_ca";
    case 50:
        return "decode_error";
    case 51:
        return "decrypt_error";
    case 70:
        return "protocol_version";
    case 71:
        return "insufficient_security";
    case 80:
        return "internal_error";
    case 109:
        return "missing_extension";
    case 116:
        return "certificate_required";
    case 120:
        return "no_application_protocol";
    default:
        return "other";
    }
}

static void tls_info_cb(const SSL *ssl, int where, int ret)
{
    if ((where & SSL_CB_WRITE_ALERT) == 0 || (ret >> 8) != SSL3_AL_FATAL)
        return;
    ing_conn_t *c = SSL_get_ex_data(ssl, conn_ex_index);
    if (c == NULL)
        return;
    int desc = ret & 0xff;
    atomic_fetch_add_explicit(&c->worker->srv->tls_alerts[desc], 1, memory_order_relaxed);
    mh_log(MH_LOG_DEBUG, "worker %d: TLS handshake refused: %s", c->worker->index,
           ing_tls_alert_name(desc));
}

static struct bufferevent *bev_cb(struct event_base *base, void *arg)
{
    ing_worker_t *w = arg;
    SSL *ssl = SSL_new(w->srv->ssl_ctx);
    if (ssl == NULL) {
        mh_log_openssl(MH_LOG_ERROR, "SSL_new");
        return NULL;
    }
    ing_conn_t *c = mh_calloc(1, sizeof(*c));
    c->worker = w;
    c->next = w->conns.next;
    c->prev = &w->conns;
    w->conns.next->prev = c;
    w->conns.next = c;
    atomic_fetch_add_explicit(&w->metrics.connections_open, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->metrics.connections_total, 1, memory_order_relaxed);
    SSL_set_ex_data(ssl, conn_ex_index, c);
    /* evhttp sets the socket later with bufferevent_setfd. */
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl); /* frees c through the ex_data callback */
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    if (mh_bev_coalesce_output(bev) != 0) {
        bufferevent_free(bev);
        return NULL;
    }
    c->bev = bev;
    return bev;
}

/*
 * Closes every connection whose device is no longer active in the new snapshot. shutdown()
 * rather than free: evhttp sees EOF and tears the connection down through its own path, so a
 * request in flight is never freed under our feet.
 */
static void sweep_connections(ing_worker_t *w)
{
    for (ing_conn_t *c = w->conns.next; c != &w->conns; c = c->next) {
        if (c->did == 0)
            continue;
        const ing_device_t *d = ing_directory_device_by_did(w->dir, c->did);
        /* A re-keyed device keeps its did: its old certificate's connections must go. */
        if (d != NULL && d->active &&
            memcmp(d->fingerprint, c->fingerprint, MH_FINGERPRINT_LEN) == 0) {
            c->device = d;
            c->dir_generation = ing_directory_generation(w->dir);
            continue;
        }
        c->device = NULL;
        evutil_socket_t fd = bufferevent_getfd(c->bev);
        if (fd >= 0) {
            shutdown(fd, SHUT_RDWR);
            atomic_fetch_add_explicit(&w->metrics.revoked_connections_closed, 1,
                                      memory_order_relaxed);
            mh_log(MH_LOG_INFO, "worker %d: closed a connection of revoked or deleted device",
                   w->index);
        }
        c->did = 0;
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    ing_worker_t *w = arg;
    uint64_t gen = atomic_load(&w->srv->dirhub.generation);
    if (gen == 0 || (w->dir != NULL && ing_directory_generation(w->dir) == gen))
        return;
    ing_directory_t *dir = ing_dirhub_acquire(&w->srv->dirhub);
    if (dir == NULL)
        return;
    ing_directory_unref(w->dir);
    w->dir = dir;
    sweep_connections(w);
    ing_routes_unpark_all(w);
}

void ing_server_notify_workers(ing_server_t *srv)
{
    for (int i = 0; i < srv->nworkers; i++)
        if (srv->workers[i].tick_ev != NULL)
            event_active(srv->workers[i].tick_ev, EV_TIMEOUT, 0);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    ing_worker_t *w = arg;
    /* Stop accepting, give requests in flight a moment to get their Redis answer. */
    if (w->listener != NULL)
        evconnlistener_disable(w->listener);
    struct timeval grace = {1, 0};
    event_base_loopexit(w->base, &grace);
}

/* The configured listen address as a sockaddr, and as text for messages. */
static int listen_sockaddr(const ing_conf_t *c, struct sockaddr_storage *ss, int *sslen, char *addr,
                           size_t addrlen)
{
    bool v6 = strchr(c->listen_addr, ':') != NULL;
    snprintf(addr, addrlen, "%s%s%s:%ld", v6 ? "[" : "", c->listen_addr, v6 ? "]" : "",
             c->listen_port);
    if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)ss, sslen) != 0) {
        mh_log(MH_LOG_ERROR, "ingest: bad listen address %s", addr);
        return -1;
    }
    return 0;
}

static struct evconnlistener *bind_listener(ing_worker_t *w)
{
    const ing_conf_t *c = &w->srv->cfg->ingest;
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    char addr[128];
    if (listen_sockaddr(c, &ss, &sslen, addr, sizeof(addr)) != 0)
        return NULL;
    struct evconnlistener *l =
        evconnlistener_new_bind(w->base, NULL, NULL,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE |
                                    LEV_OPT_REUSEABLE_PORT | LEV_OPT_DISABLED,
                                1024, (struct sockaddr *)&ss, sslen);
    if (l == NULL) {
        mh_log(MH_LOG_ERROR, "ingest: cannot listen on %s: %s", addr, strerror(errno));
        return NULL;
    }
    return l;
}

/* Refuses to share the port with a stale process: SO_REUSEPORT would let us both bind. */
static int check_port_free(const ing_conf_t *c)
{
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    char addr[128];
    if (listen_sockaddr(c, &ss, &sslen, addr, sizeof(addr)) != 0)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc = bind(fd, (struct sockaddr *)&ss, (socklen_t)sslen);
    int saved = errno;
    close(fd);
    if (rc != 0) {
        mh_log(MH_LOG_ERROR, "ingest: cannot listen on %s: %s", addr, strerror(saved));
        return -1;
    }
    return 0;
}

static int worker_init(ing_worker_t *w, ing_server_t *srv, int index)
{
    const ing_conf_t *c = &srv->cfg->ingest;
    w->index = index;
    w->srv = srv;
    w->conns.next = w->conns.prev = &w->conns;
    w->parked.next = w->parked.prev = &w->parked;
    w->base = mh_event_base_new();
    if (w->base == NULL)
        goto fail;
    w->http = evhttp_new(w->base);
    if (w->http == NULL)
        goto fail;
    evhttp_set_bevcb(w->http, bev_cb, w);
    evhttp_set_gencb(w->http, ing_routes_handle, w);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_max_body_size(w->http, (ev_ssize_t)c->max_body_bytes);
    evhttp_set_max_headers_size(w->http, 8192);
    evhttp_set_timeout(w->http, (int)c->idle_timeout_s);
    w->listener = bind_listener(w);
    if (w->listener == NULL)
        goto fail;
    if (evhttp_bind_listener(w->http, w->listener) == NULL)
        goto fail;
    w->tick_ev = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
    w->stop_ev = event_new(w->base, -1, 0, stop_cb, w);
    if (w->tick_ev == NULL || w->stop_ev == NULL)
        goto fail;
    struct timeval tick = {0, ING_TICK_MS * 1000};
    event_add(w->tick_ev, &tick);
    if (ing_redisq_start(w) != 0)
        goto fail;
    if (ing_upgrade_start(w) != 0)
        goto fail;
    return 0;
fail:
    mh_log(MH_LOG_ERROR, "ingest: cannot set up worker %d", index);
    return -1;
}

static void worker_dispose(ing_worker_t *w)
{
    if (w->base == NULL)
        return;
    ing_redisq_stop(w);
    ing_upgrade_stop(w);
    ing_routes_unpark_all(w);
    /* Frees every connection; their SSL ex_data callbacks unlink them. */
    if (w->http != NULL)
        evhttp_free(w->http); /* also frees the bound listener */
    if (w->tick_ev != NULL)
        event_free(w->tick_ev);
    if (w->stop_ev != NULL)
        event_free(w->stop_ev);
    ing_directory_unref(w->dir);
    event_base_free(w->base);
    w->base = NULL;
}

static void *worker_main(void *arg)
{
    ing_worker_t *w = arg;
    /* Serve from the first request on with the snapshot main loaded before starting us. */
    w->dir = ing_dirhub_acquire(&w->srv->dirhub);
    evconnlistener_enable(w->listener);
    event_base_dispatch(w->base);
    return NULL;
}

int ing_server_init(ing_server_t *srv, const ing_settings_t *cfg)
{
    const ing_conf_t *c = &cfg->ingest;
    memset(srv, 0, sizeof(*srv));
    srv->cfg = cfg;
    ing_dirhub_init(&srv->dirhub);
    srv->limits.max_readings = c->max_readings;
    srv->limits.max_future_skew_s = c->max_future_skew_s;
    srv->limits.max_age_s = c->max_age_s;
    srv->backlog = mh_calloc((size_t)cfg->redis.shards, sizeof(*srv->backlog));
    srv->ratelimit = ing_ratelimit_new((double)c->rate_per_s, (double)c->rate_burst, 1u << 17);
    if (conn_ex_index < 0)
        conn_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_ex_free);
    if (conn_ex_index < 0) {
        mh_log_openssl(MH_LOG_ERROR, "SSL_get_ex_new_index");
        goto fail;
    }
    mh_tls_server_opts_t opts = {
        .cert_file = c->tls_cert,
        .key_file = c->tls_key,
        .client_ca_file = c->client_ca,
        .require_client_cert = true,
    };
    srv->ssl_ctx = mh_tls_server_ctx_new(&opts);
    if (srv->ssl_ctx == NULL)
        goto fail;
    SSL_CTX_set_info_callback(srv->ssl_ctx, tls_info_cb);
    if (check_port_free(c) != 0)
        goto fail;

    long n = c->workers;
    if (n == 0) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1)
            n = 1;
    }
    srv->nworkers = (int)n;
    srv->workers = mh_calloc((size_t)n, sizeof(*srv->workers));
    for (int i = 0; i < srv->nworkers; i++)
        if (worker_init(&srv->workers[i], srv, i) != 0)
            goto fail;
    return 0;
fail:
    return -1;
}

int ing_server_start(ing_server_t *srv)
{
    for (int i = 0; i < srv->nworkers; i++) {
        if (pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]) != 0) {
            mh_log(MH_LOG_ERROR, "ingest: cannot start worker thread %d", i);
            srv->nworkers = i;
            return -1;
        }
    }
    mh_log(MH_LOG_INFO, "ingest: %d workers listening on %s:%ld", srv->nworkers,
           srv->cfg->ingest.listen_addr, srv->cfg->ingest.listen_port);
    return 0;
}

void ing_server_stop(ing_server_t *srv)
{
    for (int i = 0; i < srv->nworkers; i++)
        if (srv->workers[i].stop_ev != NULL)
            event_active(srv->workers[i].stop_ev, EV_TIMEOUT, 0);
    for (int i = 0; i < srv->nworkers; i++)
        if (srv->workers[i].thread)
            pthread_join(srv->workers[i].thread, NULL);
}

void ing_server_dispose(ing_server_t *srv)
{
    if (srv->workers != NULL) {
        for (int i = 0; i < srv->nworkers; i++)
            worker_dispose(&srv->workers[i]);
        free(srv->workers);
    }
    SSL_CTX_free(srv->ssl_ctx);
    ing_ratelimit_free(srv->ratelimit);
    free((void *)srv->backlog);
    ing_dirhub_dispose(&srv->dirhub);
}
