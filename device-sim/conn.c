/* The TLS client side: one SSL_CTX per worker, one SSL and evhttp connection per device
 * connection. */
#include "device-sim/sim_internal.h"

#include "common/evloop.h"
#include "common/log.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <time.h>

/* Responses of ingest are a few hundred bytes; anything much larger is refused. */
#define SIM_MAX_RESPONSE_BODY 65536
#define SIM_MAX_RESPONSE_HEADERS 8192

uint64_t sim_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* SSL ex_data index of the connection's sim_conn_tls_t. */
static int tls_state_index = -1;

static int keep_session(SSL *ssl, SSL_SESSION *session)
{
    sim_conn_tls_t *tls = SSL_get_ex_data(ssl, tls_state_index);
    if (tls == NULL || !tls->resume)
        return 0;
    /*
     * A copy, not the session itself: when evhttp resets or frees a connection the server
     * closed, OpenSSL marks that connection's session not resumable (no close_notify was
     * sent), and the mark would reach a shared object.
     */
    SSL_SESSION *copy = SSL_SESSION_dup(session);
    if (copy == NULL)
        return 0;
    SSL_SESSION_free(tls->session);
    tls->session = copy;
    return 0; /* OpenSSL keeps and frees the original */
}

/* Records at the end of each handshake whether it resumed: by the time the answer arrives,
 * evhttp may already have reset a closed connection, and SSL_session_reused with it. */
static void handshake_info(const SSL *ssl, int where, int ret)
{
    if ((where & SSL_CB_HANDSHAKE_DONE) == 0)
        return;
    sim_conn_tls_t *tls = SSL_get_ex_data(ssl, tls_state_index);
    if (tls != NULL)
        tls->resumed = SSL_session_reused(ssl) == 1;
}

SSL_CTX *sim_tls_ctx_new(const char *ca_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        mh_log_openssl(MH_LOG_ERROR, "tls: SSL_CTX_new");
        goto fail;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "tls: minimum protocol version");
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "tls: loading the CA");
        mh_log(MH_LOG_ERROR, "tls: cannot load CA file %s", ca_file);
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* Ingest closes after "Connection: close" without a close_notify. OpenSSL 3 treats that
     * EOF as a fatal error, and a fatal error marks the session not resumable, which would
     * defeat the resume mode; the HTTP framing already tells us the answer was complete. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /*
     * Resume mode keeps each device's session as the server hands it out (new_session_cb):
     * asking SSL_get1_session after the answer is too late, since evhttp resets a closed
     * connection first and the reset drops a session whose connection ended without a
     * close_notify. No shared store: a session belongs to its device.
     */
    if (tls_state_index < 0)
        tls_state_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, keep_session);
    SSL_CTX_set_info_callback(ctx, handshake_info);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static SSL *ssl_new(SSL_CTX *ctx, const sim_run_t *run, const sim_fleet_device_t *dev,
                    sim_conn_tls_t *tls)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        mh_log_openssl(MH_LOG_ERROR, "tls: SSL_new");
        goto fail;
    }
    if (SSL_use_certificate(ssl, dev->cert) != 1 || SSL_use_PrivateKey(ssl, dev->key) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "tls: device certificate or key");
        goto fail;
    }
    /* The server certificate must name the target: an IP literal is checked against the
     * certificate's IP SANs, a name against its DNS SANs (and sent as SNI). */
    if (run->host_is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), run->host) != 1) {
            mh_log_openssl(MH_LOG_ERROR, "tls: expected server address");
            goto fail;
        }
    } else if (SSL_set_tlsext_host_name(ssl, run->host) != 1 ||
               SSL_set1_host(ssl, run->host) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "tls: expected server name");
        goto fail;
    }
    if (tls->resume && tls->session != NULL && SSL_set_session(ssl, tls->session) != 1) {
        mh_log_openssl(MH_LOG_WARN, "tls: SSL_set_session");
        goto fail;
    }
    tls->resumed = false;
    SSL_set_ex_data(ssl, tls_state_index, tls);
    return ssl;
fail:
    SSL_free(ssl);
    return NULL;
}

struct evhttp_connection *sim_conn_new(struct event_base *base, SSL_CTX *ctx, const sim_run_t *run,
                                       const sim_fleet_device_t *dev, sim_conn_tls_t *tls,
                                       unsigned timeout_s)
{
    struct bufferevent *bev = NULL;
    struct evhttp_connection *evcon = NULL;
    SSL *ssl = ssl_new(ctx, run, dev, tls);
    if (ssl == NULL)
        goto fail;
    /* BEV_OPT_CLOSE_ON_FREE: the bufferevent owns the SSL from here on, also on failure. */
    bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    ssl = NULL;
    if (bev == NULL) {
        mh_log(MH_LOG_ERROR, "device %s: bufferevent_openssl_socket_new failed", dev->id);
        goto fail;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    if (mh_bev_coalesce_output(bev) != 0) {
        mh_log(MH_LOG_ERROR, "device %s: evbuffer_add_cb failed", dev->id);
        goto fail;
    }
    evcon = evhttp_connection_base_bufferevent_new(base, NULL, bev, run->host, run->port);
    if (evcon == NULL) {
        mh_log(MH_LOG_ERROR, "device %s: evhttp_connection_base_bufferevent_new failed", dev->id);
        goto fail;
    }
    bev = NULL;
    evhttp_connection_set_timeout(evcon, (int)timeout_s);
    /* A retry by evhttp would reconnect with the same, already used SSL object: it cannot
     * work. The caller makes a new connection instead. */
    evhttp_connection_set_retries(evcon, 0);
    evhttp_connection_set_max_body_size(evcon, SIM_MAX_RESPONSE_BODY);
    evhttp_connection_set_max_headers_size(evcon, SIM_MAX_RESPONSE_HEADERS);
    return evcon;
fail:
    SSL_free(ssl);
    if (bev != NULL)
        bufferevent_free(bev);
    return NULL;
}

SSL *sim_conn_ssl(struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    return bev ? bufferevent_openssl_get_ssl(bev) : NULL;
}

void sim_conn_free(struct evhttp_connection *evcon)
{
    if (evcon == NULL)
        return;
    SSL *ssl = sim_conn_ssl(evcon);
    /* Only after a completed handshake: a close_notify is meaningless before, and OpenSSL
     * forgets a session whose connection ends without one. Errors do not matter here (the
     * peer may be gone: SIGPIPE is ignored); the flag is set before anything is written. */
    if (ssl != NULL && SSL_is_init_finished(ssl)) {
        SSL_shutdown(ssl);
        ERR_clear_error();
    }
    evhttp_connection_free(evcon);
}
