#include "ingest_internal.h"

#include "common/ops.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IKEY(name, type, def, min, max, help)                                                      \
    {                                                                                              \
#name, type, offsetof(ing_conf_t, name), def, min, max, help                               \
    }

/* Alphabetical, as operators read it. */
static const mh_cfg_key_t ingest_keys[] = {
    IKEY(client_ca, MH_CFG_STR, NULL, 0, 0, "CA bundle for device certificates (required)"),
    IKEY(directory_refresh_ms, MH_CFG_INT, "1000", 100, 5000,
         "how often to poll PostgreSQL for device changes (revocations)"),
    IKEY(firmware_store, MH_CFG_STR, "", 0, 0,
         "firmware image store written by meterhub-release publish; empty: offer no firmware"),
    IKEY(idle_timeout_s, MH_CFG_INT, "60", 1, 3600, "keep-alive idle and request timeout"),
    IKEY(listen_addr, MH_CFG_STR, "127.0.0.1", 0, 0, "address for devices"),
    IKEY(listen_port, MH_CFG_INT, "8443", 1, 65535, "port for devices"),
    IKEY(log_level, MH_CFG_STR, "info", 0, 0, "debug, info, warn or error"),
    IKEY(max_age_s, MH_CFG_INT, "31536000", 60, 10L * 365 * 86400,
         "oldest accepted timestamp, seconds before now"),
    IKEY(max_backlog, MH_CFG_INT, "1000000", 100, 1000000000,
         "stream entries per shard beyond which posts get 503"),
    IKEY(max_body_bytes, MH_CFG_INT, "65536", 1024, 16L * 1024 * 1024, "largest request body"),
    IKEY(max_future_skew_s, MH_CFG_INT, "300", 0, 86400,
         "newest accepted timestamp, seconds after now"),
    IKEY(max_inflight, MH_CFG_INT, "4096", 1, 1000000,
         "requests waiting for Redis per worker beyond which posts get 503"),
    IKEY(max_readings, MH_CFG_INT, "1000", 1, 100000, "most readings in one batch"),
    IKEY(ops_addr, MH_CFG_STR, "127.0.0.1", 0, 0, "metrics/health address (loopback only)"),
    IKEY(ops_port, MH_CFG_INT, "9101", 1, 65535, "metrics/health port"),
    IKEY(rate_burst, MH_CFG_INT, "100", 1, 1000000, "per-device burst (requests)"),
    IKEY(rate_per_s, MH_CFG_INT, "20", 1, 1000000, "per-device sustained requests per second"),
    IKEY(tls_cert, MH_CFG_STR, NULL, 0, 0, "server certificate chain (PEM, required)"),
    IKEY(tls_key, MH_CFG_STR, NULL, 0, 0, "server private key (PEM, required)"),
    IKEY(upgrade_timeout_ms, MH_CFG_INT, "2000", 100, 30000,
         "longest wait for PostgreSQL on a firmware offer or download check"),
    IKEY(workers, MH_CFG_INT, "0", 0, 256, "worker threads; 0 = one per core"),
};

static const mh_cfg_key_t pg_keys[] = {
    {"conninfo", MH_CFG_SECRET, offsetof(ing_pg_conf_t, conninfo), NULL, 0, 0,
     "libpq URI of the meterhub_ingest role (password in a passfile)"},
};

void ing_settings_sections(ing_settings_t *s, mh_cfg_section_t *sections)
{
    sections[0] = (mh_cfg_section_t){"ingest", ingest_keys,
                                     sizeof(ingest_keys) / sizeof(ingest_keys[0]), &s->ingest};
    sections[1] = (mh_cfg_section_t){"postgres", pg_keys, 1, &s->pg};
    sections[2] = (mh_cfg_section_t){"redis", mh_redis_conf_keys, mh_redis_conf_nkeys, &s->redis};
}

static bool empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

int ing_settings_validate(const ing_settings_t *s, char *err, size_t errlen)
{
    const ing_conf_t *c = &s->ingest;
    if (empty(c->tls_cert) || empty(c->tls_key)) {
        snprintf(err, errlen, "ingest.tls_cert and ingest.tls_key are required");
        return -1;
    }
    /* Devices are identified by their certificates: without a CA there is no identity. */
    if (empty(c->client_ca)) {
        snprintf(err, errlen, "ingest.client_ca is required: devices must present certificates");
        return -1;
    }
    if (!mh_addr_is_loopback(c->ops_addr)) {
        snprintf(err, errlen, "ingest.ops_addr must be a loopback address, not %s", c->ops_addr);
        return -1;
    }
    if (c->ops_port == c->listen_port) {
        snprintf(err, errlen, "ingest.ops_port must differ from ingest.listen_port");
        return -1;
    }
    if (c->rate_burst < 1 || c->rate_per_s < 1) {
        snprintf(err, errlen, "ingest.rate_per_s and ingest.rate_burst must be at least 1");
        return -1;
    }
    /* Fail at start, not at the first reconnect, when the Redis password cannot be read. */
    char *password = mh_redis_password(&s->redis, err, errlen);
    if (password == NULL && err[0] != '\0')
        return -1;
    if (password != NULL) {
        explicit_bzero(password, strlen(password));
        free(password);
    }
    if (empty(s->pg.conninfo)) {
        snprintf(err, errlen, "postgres.conninfo is required");
        return -1;
    }
    return 0;
}
