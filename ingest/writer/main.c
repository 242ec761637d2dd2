/*
 * meterhub-writer: drains the Redis stream shards into PostgreSQL.
 * Arguments, configuration and wiring only: the work is in writer.c (one thread per shard) and
 * store.c (the batch write); the main thread runs the ops endpoint and handles signals.
 */
#include "writer.h"

#include "common/alloc.h"
#include "common/config.h"
#include "common/cli.h"
#include "common/log.h"
#include "common/ops.h"
#include "common/queue.h"

#include <event2/event.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct pg_conf {
    char *conninfo;
} pg_conf_t;

/* Alphabetical, like every key table. */
static const mh_cfg_key_t writer_keys[] = {
    {"batch_size", MH_CFG_INT, offsetof(wr_conf_t, batch_size), "1000", 1, 10000,
     "stream entries per read"},
    {"batch_wait_ms", MH_CFG_INT, offsetof(wr_conf_t, batch_wait_ms), "100", 0, 10000,
     "after a read that was not full, wait this long before the next (0: read at once)"},
    {"block_ms", MH_CFG_INT, offsetof(wr_conf_t, block_ms), "1000", 1, 30000,
     "how long a read waits for new entries"},
    {"claim_idle_ms", MH_CFG_INT, offsetof(wr_conf_t, claim_idle_ms), "30000", 100, 86400000,
     "claim other consumers' entries pending longer than this"},
    {"consumer", MH_CFG_STR, offsetof(wr_conf_t, consumer), NULL, 0, 0,
     "consumer name in the group (default <hostname>-<pid>)"},
    {"log_level", MH_CFG_STR, offsetof(wr_conf_t, log_level), "info", 0, 0,
     "debug, info, warn or error"},
    {"ops_addr", MH_CFG_STR, offsetof(wr_conf_t, ops_addr), "127.0.0.1", 0, 0,
     "loopback address of /metrics and /healthz"},
    {"ops_port", MH_CFG_INT, offsetof(wr_conf_t, ops_port), "9102", 0, 65535,
     "port of /metrics and /healthz (0: none)"},
};

static const mh_cfg_key_t pg_keys[] = {
    {"conninfo", MH_CFG_SECRET, offsetof(pg_conf_t, conninfo), NULL, 0, 0,
     "libpq URI or key=value list; put the password in a passfile"},
};

typedef struct app {
    wr_writer_t **writers;
    size_t nwriters;
    struct event_base *base;
} app_t;

static void usage(FILE *out)
{
    fprintf(out, "usage: meterhub-writer -c FILE [--check] [--dump] [-s section.key=value]...\n"
                 "  -c, --config FILE   configuration file ([writer], [postgres], [redis])\n"
                 "      --check         validate the configuration, print it and exit\n"
                 "      --dump          print the effective configuration (secrets redacted)\n"
                 "  -s, --set S.K=V     override one key (repeatable)\n"
                 "  -h, --help          this text\n");
}

static void metrics_cb(struct evbuffer *out, void *arg)
{
    app_t *a = arg;
    wr_metrics_render(out, a->writers, a->nwriters);
}

static bool health_cb(struct evbuffer *out, void *arg)
{
    app_t *a = arg;
    return wr_health_render(out, a->writers, a->nwriters);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    app_t *a = arg;
    mh_log(MH_LOG_INFO, "%s: finishing the current batches", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    for (size_t i = 0; i < a->nwriters; i++)
        wr_writer_stop(a->writers[i]);
    event_base_loopexit(a->base, NULL);
}

/* Refuses what the key table cannot express. Returns 0, or -1 after printing why. */
static int validate(const wr_conf_t *wc, const pg_conf_t *pg, const mh_redis_conf_t *rc)
{
    char err[256];
    mh_log_level_t level;
    char *pw = NULL;

    if (mh_log_parse_level(wc->log_level, &level) != 0) {
        fprintf(stderr, "meterhub-writer: writer.log_level: unknown level '%s'\n", wc->log_level);
        return -1;
    }
    if (pg->conninfo == NULL || pg->conninfo[0] == '\0') {
        fprintf(stderr, "meterhub-writer: postgres.conninfo is required\n");
        return -1;
    }
    if (wc->ops_port != 0 && !mh_addr_is_loopback(wc->ops_addr)) {
        fprintf(stderr, "meterhub-writer: writer.ops_addr '%s' is not a loopback address\n",
                wc->ops_addr);
        return -1;
    }
    if (rc->prefix == NULL || rc->prefix[0] == '\0') {
        fprintf(stderr, "meterhub-writer: redis.prefix must not be empty\n");
        return -1;
    }
    /* Read the password once now so that a missing or world-readable file fails at start. */
    pw = mh_redis_password(rc, err, sizeof(err));
    if (pw == NULL && err[0] != '\0') {
        fprintf(stderr, "meterhub-writer: redis.password_file: %s\n", err);
        return -1;
    }
    if (pw != NULL) {
        explicit_bzero(pw, strlen(pw));
        free(pw);
    }
    return 0;
}

int main(int argc, char **argv)
{
    wr_conf_t wc = {0};
    pg_conf_t pg = {0};
    mh_redis_conf_t rc = {0};
    const mh_cfg_section_t sections[] = {
        {"writer", writer_keys, sizeof(writer_keys) / sizeof(writer_keys[0]), &wc},
        {"postgres", pg_keys, sizeof(pg_keys) / sizeof(pg_keys[0]), &pg},
        {"redis", mh_redis_conf_keys, mh_redis_conf_nkeys, &rc},
    };
    const size_t nsections = sizeof(sections) / sizeof(sections[0]);
    mh_cli_t cli;
    int status;
    char err[512], consumer[HOST_NAME_MAX + 32];
    mh_log_level_t level;
    app_t app = {0};
    struct event *sigterm = NULL, *sigint = NULL;
    mh_ops_server_t *ops = NULL;
    sigset_t block, old;

    mh_log_init("meterhub-writer");
    status = mh_cli_parse(&cli, argc, argv, usage);
    if (status != MH_CLI_RUN)
        goto done;
    /* A configuration error exits 2, like a usage error: retrying cannot help. */
    status = 2;
    if (mh_cli_load(&cli, sections, nsections, err, sizeof(err)) != 0) {
        fprintf(stderr, "meterhub-writer: %s\n", err);
        goto done;
    }
    if (validate(&wc, &pg, &rc) != 0)
        goto done;
    status = 1;
    if (cli.dump || cli.check)
        mh_config_dump(stdout, sections, nsections);
    if (cli.check) {
        status = 0;
        goto done;
    }
    mh_log_parse_level(wc.log_level, &level);
    mh_log_set_level(level);
    mh_log_capture_libevent();

    if (wc.consumer != NULL && wc.consumer[0] != '\0') {
        snprintf(consumer, sizeof(consumer), "%s", wc.consumer);
    } else {
        char host[HOST_NAME_MAX + 1] = "localhost";
        gethostname(host, sizeof(host));
        host[sizeof(host) - 1] = '\0';
        snprintf(consumer, sizeof(consumer), "%s-%ld", host, (long)getpid());
    }

    /* hiredis writes to sockets without MSG_NOSIGNAL: a peer that went away must be an error,
     * not the end of the process. */
    signal(SIGPIPE, SIG_IGN);
    app.base = event_base_new();
    if (app.base == NULL) {
        mh_log(MH_LOG_ERROR, "event_base_new failed");
        goto done;
    }
    app.nwriters = (size_t)rc.shards;
    app.writers = mh_calloc(app.nwriters, sizeof(*app.writers));
    for (size_t i = 0; i < app.nwriters; i++)
        app.writers[i] = wr_writer_new(&wc, &rc, pg.conninfo, consumer, (long)i);
    if (wc.ops_port != 0) {
        ops =
            mh_ops_server_new(app.base, wc.ops_addr, (int)wc.ops_port, metrics_cb, health_cb, &app);
        if (ops == NULL)
            goto done;
    }
    sigterm = evsignal_new(app.base, SIGTERM, signal_cb, &app);
    sigint = evsignal_new(app.base, SIGINT, signal_cb, &app);
    if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) != 0 ||
        evsignal_add(sigint, NULL) != 0) {
        mh_log(MH_LOG_ERROR, "cannot install signal handlers");
        goto done;
    }

    /* Shard threads inherit a mask without SIGTERM and SIGINT: the main thread takes them. */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (size_t i = 0; i < app.nwriters; i++) {
        if (wr_writer_start(app.writers[i]) != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            goto done;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    mh_log(MH_LOG_INFO, "writing %ld shards of %s as %s", rc.shards, rc.prefix, consumer);

    if (event_base_dispatch(app.base) < 0) {
        mh_log(MH_LOG_ERROR, "event loop failed");
        goto done;
    }
    status = 0;
done:
    /* Freeing a writer waits for its thread to finish the batch in hand. */
    for (size_t i = 0; i < app.nwriters && app.writers != NULL; i++)
        wr_writer_free(app.writers[i]);
    free(app.writers);
    mh_ops_server_free(ops);
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    if (app.base != NULL)
        event_base_free(app.base);
    mh_config_dispose(sections, nsections);
    mh_cli_dispose(&cli);
    if (status == 0 && !cli.check && app.base != NULL)
        mh_log(MH_LOG_INFO, "stopped");
    return status;
}
