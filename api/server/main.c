/*
 * meterhub-api: the people-facing HTTPS JSON API (docs/api.md). This file parses arguments,
 * loads the configuration and wires the parts together; the main thread runs the event loop
 * (HTTP, the ops endpoint, signals), the database pool runs the queries.
 */
#include "api_internal.h"

#include "common/cli.h"
#include "common/evloop.h"
#include "common/log.h"
#include "common/ops.h"
#include "common/tls.h"

#include <arpa/inet.h>
#include <event2/bufferevent_ssl.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: meterhub-api -c FILE [-s section.key=value]... [--check] [--dump]\n"
                 "  -c, --config FILE   configuration file (INI)\n"
                 "  -s, --set K=V       override one key, e.g. -s api.db_threads=8\n"
                 "      --check         validate the configuration and exit\n"
                 "      --dump          print the effective configuration (secrets redacted)\n");
}

/* evhttp asks for each connection's bufferevent; it sets the socket itself later. */
static struct bufferevent *bev_cb(struct event_base *base, void *arg)
{
    api_server_t *srv = arg;
    SSL *ssl = SSL_new(srv->ssl_ctx);
    if (ssl == NULL) {
        mh_log_openssl(MH_LOG_ERROR, "SSL_new");
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    if (mh_bev_coalesce_output(bev) != 0) {
        bufferevent_free(bev);
        return NULL;
    }
    return bev;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    api_server_t *srv = arg;
    mh_log(MH_LOG_INFO, "api: signal %d, shutting down", (int)sig);
    event_base_loopbreak(srv->base);
}

int main(int argc, char **argv)
{
    static api_settings_t cfg;
    static api_server_t srv;
    mh_cfg_section_t sections[API_NSECTIONS];
    mh_cli_t cli;
    bool db_started = false;
    char err[512];
    int rc;
    struct event *sigterm_ev = NULL, *sigint_ev = NULL;
    mh_ops_server_t *ops = NULL;

    mh_log_init("meterhub-api");
    mh_log_capture_libevent();
    api_settings_sections(&cfg, sections);
    rc = mh_cli_parse(&cli, argc, argv, usage);
    if (rc != MH_CLI_RUN)
        goto done;
    rc = 1;
    if (mh_cli_load(&cli, sections, API_NSECTIONS, err, sizeof(err)) != 0)
        goto config_fail;
    if (api_settings_validate(&cfg, err, sizeof(err)) != 0)
        goto config_fail;
    mh_log_level_t level;
    if (mh_log_parse_level(cfg.api.log_level, &level) != 0) {
        snprintf(err, sizeof(err), "api.log_level: unknown level '%s'", cfg.api.log_level);
        goto config_fail;
    }
    mh_log_set_level(level);
    if (cli.dump)
        mh_config_dump(stdout, sections, API_NSECTIONS);
    /* Loaded here so that --check tries it too. Configured but unusable is a configuration
     * error, not a server that quietly cannot register devices. */
    if (cfg.api.pki_dir != NULL && cfg.api.pki_dir[0] != '\0') {
        srv.device_ca = mh_device_ca_load(cfg.api.pki_dir);
        if (srv.device_ca == NULL) {
            snprintf(err, sizeof(err), "api.pki_dir: no usable device CA in %s (see above)",
                     cfg.api.pki_dir);
            goto config_fail;
        }
    }
    if (cli.check) {
        printf("configuration OK\n");
        rc = 0;
        goto done;
    }

    signal(SIGPIPE, SIG_IGN);
    if (evthread_use_pthreads() != 0) {
        mh_log(MH_LOG_ERROR, "api: libevent thread support unavailable");
        goto done;
    }
    srv.cfg = &cfg;
    srv.base = mh_event_base_new();
    if (srv.base == NULL)
        goto done;
    mh_tls_server_opts_t tls = {cfg.api.tls_cert, cfg.api.tls_key, NULL, false};
    srv.ssl_ctx = mh_tls_server_ctx_new(&tls);
    if (srv.ssl_ctx == NULL)
        goto done;
    srv.limits = api_limits_new(cfg.api.login_failures_per_account,
                                cfg.api.login_failures_per_address, cfg.api.login_window_s);
    if (srv.limits == NULL)
        goto done;
    srv.http = evhttp_new(srv.base);
    if (srv.http == NULL)
        goto done;
    evhttp_set_bevcb(srv.http, bev_cb, &srv);
    evhttp_set_gencb(srv.http, api_routes_handle, &srv);
    evhttp_set_allowed_methods(srv.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE |
                                             EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(srv.http, (ev_ssize_t)cfg.api.max_body_bytes);
    evhttp_set_max_headers_size(srv.http, 16384);
    evhttp_set_timeout(srv.http, (int)cfg.api.idle_timeout_s);
    if (evhttp_bind_socket(srv.http, cfg.api.listen_addr, (ev_uint16_t)cfg.api.listen_port) != 0) {
        mh_log(MH_LOG_ERROR, "api: cannot listen on %s:%ld", cfg.api.listen_addr,
               cfg.api.listen_port);
        goto done;
    }
    db_started = true;
    if (api_db_start(&srv) != 0)
        goto done;
    ops = mh_ops_server_new(srv.base, cfg.api.ops_addr, (int)cfg.api.ops_port, api_metrics_render,
                            api_health_render, &srv);
    if (ops == NULL)
        goto done;
    sigterm_ev = evsignal_new(srv.base, SIGTERM, signal_cb, &srv);
    sigint_ev = evsignal_new(srv.base, SIGINT, signal_cb, &srv);
    if (sigterm_ev == NULL || sigint_ev == NULL || event_add(sigterm_ev, NULL) != 0 ||
        event_add(sigint_ev, NULL) != 0)
        goto done;
    mh_log(MH_LOG_INFO, "api: listening on https://%s:%ld, %ld database connections",
           cfg.api.listen_addr, cfg.api.listen_port, cfg.api.db_threads);
    if (srv.device_ca == NULL)
        mh_log(MH_LOG_WARN, "api: no api.pki_dir: device registration answers 503");
    event_base_dispatch(srv.base);
    rc = 0;
    goto done;

config_fail:
    fprintf(stderr, "meterhub-api: %s\n", err);
    rc = 2;
done:
    if (sigterm_ev != NULL)
        event_free(sigterm_ev);
    if (sigint_ev != NULL)
        event_free(sigint_ev);
    if (ops != NULL)
        mh_ops_server_free(ops);
    if (srv.http != NULL)
        evhttp_free(srv.http);
    if (db_started)
        api_db_stop(&srv);
    api_limits_free(srv.limits);
    mh_device_ca_free(srv.device_ca);
    if (srv.ssl_ctx != NULL)
        SSL_CTX_free(srv.ssl_ctx);
    if (srv.base != NULL)
        event_base_free(srv.base);
    mh_config_dispose(sections, API_NSECTIONS);
    mh_cli_dispose(&cli);
    return rc;
}
