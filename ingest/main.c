/*
 * meterhub-ingest: the device-facing daemon. This file parses arguments, loads the
 * configuration and wires the parts together; the main thread then runs the directory
 * refresher, the ops endpoint and signal handling while the workers serve devices.
 */
#include "ingest_internal.h"

#include "common/cli.h"
#include "common/log.h"
#include "common/ops.h"
#include "common/pg.h"

#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ing_main {
    ing_settings_t cfg;
    ing_server_t srv;
    struct event_base *base;
    PGconn *pg;
    ing_directory_sig_t sig;
    bool pg_down_logged;
} ing_main_t;

static void usage(FILE *out)
{
    fprintf(out, "usage: meterhub-ingest -c FILE [-s section.key=value]... [--check] [--dump]\n"
                 "  -c, --config FILE   configuration file (INI)\n"
                 "  -s, --set K=V       override one key, e.g. -s ingest.workers=2\n"
                 "      --check         validate the configuration and exit\n"
                 "      --dump          print the effective configuration (secrets redacted)\n");
}

/* Polls PostgreSQL and publishes a new snapshot when devices or sensors changed. */
static void refresh_directory(ing_main_t *m)
{
    ing_directory_sig_t sig;
    if (m->pg == NULL || mh_pg_conn_lost(m->pg)) {
        if (m->pg != NULL)
            PQfinish(m->pg);
        char err[512];
        m->pg = mh_pg_connect_quiet(m->cfg.pg.conninfo, "meterhub-ingest", err, sizeof(err));
        if (m->pg == NULL) {
            if (!m->pg_down_logged)
                mh_log(MH_LOG_WARN,
                       "directory: PostgreSQL unavailable (%s); serving the last loaded "
                       "directory until it returns",
                       err);
            m->pg_down_logged = true;
            return;
        }
        /* A server that accepts but hangs must not freeze this thread (ops, signals). */
        if (mh_pg_exec(m->pg, "SET statement_timeout = '5s'") != 0) {
            PQfinish(m->pg);
            m->pg = NULL;
            return;
        }
        if (m->pg_down_logged)
            mh_log(MH_LOG_INFO, "directory: PostgreSQL connection restored");
        m->pg_down_logged = false;
    }
    if (ing_directory_read_sig(m->pg, &sig) != 0)
        return;
    if (atomic_load(&m->srv.dir_loaded) && memcmp(&sig, &m->sig, sizeof(sig)) == 0)
        return;
    ing_directory_t *dir = ing_directory_load(m->pg, &sig);
    if (dir == NULL)
        return;
    ing_dirhub_publish(&m->srv.dirhub, dir);
    m->sig = sig;
    atomic_store(&m->srv.dir_loaded, true);
    ing_server_notify_workers(&m->srv);
}

static void refresh_cb(evutil_socket_t fd, short what, void *arg)
{
    refresh_directory(arg);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    ing_main_t *m = arg;
    mh_log(MH_LOG_INFO, "ingest: signal %d, shutting down", (int)sig);
    event_base_loopbreak(m->base);
}

int main(int argc, char **argv)
{
    static ing_main_t m;
    mh_cfg_section_t sections[3];
    mh_cli_t cli;
    char err[512];
    int rc;
    struct event *refresh_ev = NULL, *sigterm_ev = NULL, *sigint_ev = NULL;
    mh_ops_server_t *ops = NULL;
    bool srv_inited = false;

    mh_log_init("meterhub-ingest");
    mh_log_capture_libevent();
    ing_settings_sections(&m.cfg, sections);
    rc = mh_cli_parse(&cli, argc, argv, usage);
    if (rc != MH_CLI_RUN)
        goto done;
    rc = 1;
    if (mh_cli_load(&cli, sections, 3, err, sizeof(err)) != 0)
        goto config_fail;
    if (ing_settings_validate(&m.cfg, err, sizeof(err)) != 0)
        goto config_fail;
    mh_log_level_t level;
    if (mh_log_parse_level(m.cfg.ingest.log_level, &level) != 0) {
        snprintf(err, sizeof(err), "ingest.log_level: unknown level '%s'", m.cfg.ingest.log_level);
        goto config_fail;
    }
    mh_log_set_level(level);
    if (cli.dump)
        mh_config_dump(stdout, sections, 3);
    if (cli.check) {
        printf("configuration OK\n");
        rc = 0;
        goto done;
    }

    signal(SIGPIPE, SIG_IGN);
    if (evthread_use_pthreads() != 0) {
        mh_log(MH_LOG_ERROR, "ingest: libevent thread support unavailable");
        goto done;
    }
    m.base = event_base_new();
    if (m.base == NULL)
        goto done;
    srv_inited = true;
    if (ing_server_init(&m.srv, &m.cfg) != 0)
        goto done;
    ops = mh_ops_server_new(m.base, m.cfg.ingest.ops_addr, (int)m.cfg.ingest.ops_port,
                            ing_metrics_render, ing_health_render, &m.srv);
    if (ops == NULL)
        goto done;
    refresh_directory(&m);
    refresh_ev = event_new(m.base, -1, EV_PERSIST, refresh_cb, &m);
    m.srv.refresh_now = refresh_ev;
    sigterm_ev = evsignal_new(m.base, SIGTERM, signal_cb, &m);
    sigint_ev = evsignal_new(m.base, SIGINT, signal_cb, &m);
    if (refresh_ev == NULL || sigterm_ev == NULL || sigint_ev == NULL)
        goto done;
    long ms = m.cfg.ingest.directory_refresh_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(refresh_ev, &tv);
    event_add(sigterm_ev, NULL);
    event_add(sigint_ev, NULL);
    if (ing_server_start(&m.srv) != 0)
        goto done;
    event_base_dispatch(m.base);
    ing_server_stop(&m.srv);
    mh_log(MH_LOG_INFO, "ingest: stopped");
    rc = 0;
    goto done;

config_fail:
    fprintf(stderr, "meterhub-ingest: %s\n", err);
    rc = 2;
done:
    if (rc != 0 && srv_inited)
        ing_server_stop(&m.srv);
    if (srv_inited)
        ing_server_dispose(&m.srv);
    mh_ops_server_free(ops);
    if (refresh_ev)
        event_free(refresh_ev);
    if (sigterm_ev)
        event_free(sigterm_ev);
    if (sigint_ev)
        event_free(sigint_ev);
    if (m.pg)
        PQfinish(m.pg);
    if (m.base)
        event_base_free(m.base);
    mh_config_dispose(sections, 3);
    mh_cli_dispose(&cli);
    return rc;
}
