#include "api_internal.h"

#include "common/ops.h"

#include <stddef.h>
#include <stdio.h>

#define AKEY(name, type, def, min, max, help)                                                      \
    {                                                                                              \
#name, type, offsetof(api_conf_t, name), def, min, max, help                               \
    }

/* Alphabetical, as operators read it. */
static const mh_cfg_key_t api_keys[] = {
    AKEY(db_threads, MH_CFG_INT, "4", 1, 64, "PostgreSQL connections (one thread each)"),
    AKEY(idle_timeout_s, MH_CFG_INT, "30", 1, 3600, "keep-alive idle and request timeout"),
    AKEY(listen_addr, MH_CFG_STR, "127.0.0.1", 0, 0, "address for people"),
    AKEY(listen_port, MH_CFG_INT, "8444", 1, 65535, "port for people"),
    AKEY(log_level, MH_CFG_STR, "info", 0, 0, "debug, info, warn or error"),
    AKEY(login_failures_per_account, MH_CFG_INT, "5", 1, 1000,
         "failed logins of one username per window before 429"),
    AKEY(login_failures_per_address, MH_CFG_INT, "20", 1, 100000,
         "failed logins from one address per window before 429"),
    AKEY(login_window_s, MH_CFG_INT, "300", 10, 86400, "window of the failed-login limits"),
    AKEY(max_body_bytes, MH_CFG_INT, "16384", 1024, 1048576, "largest request body"),
    AKEY(ops_addr, MH_CFG_STR, "127.0.0.1", 0, 0, "metrics/health address (loopback only)"),
    AKEY(ops_port, MH_CFG_INT, "9103", 1, 65535, "metrics/health port"),
    AKEY(pki_dir, MH_CFG_STR, NULL, 0, 0,
         "device CA directory (device-ca.key, device-ca.crt, ca.crt) for POST /v1/devices;"
         " unset: registration answers 503"),
    AKEY(self_registration, MH_CFG_BOOL, "false", 0, 0,
         "anyone may create an account (POST /v1/accounts)"),
    AKEY(token_default_ttl_s, MH_CFG_INT, "2592000", 60, 10L * 365 * 86400,
         "lifetime of a token created without expires_in"),
    AKEY(token_max_ttl_s, MH_CFG_INT, "31536000", 60, 10L * 365 * 86400,
         "longest expires_in a token may ask for"),
    AKEY(tls_cert, MH_CFG_STR, NULL, 0, 0, "server certificate chain (PEM, required)"),
    AKEY(tls_key, MH_CFG_STR, NULL, 0, 0, "server private key (PEM, required)"),
};

static const mh_cfg_key_t pg_keys[] = {
    {"conninfo", MH_CFG_SECRET, offsetof(api_pg_conf_t, conninfo), NULL, 0, 0,
     "libpq URI of the meterhub_api role (password in a passfile)"},
};

void api_settings_sections(api_settings_t *s, mh_cfg_section_t *sections)
{
    sections[0] =
        (mh_cfg_section_t){"api", api_keys, sizeof(api_keys) / sizeof(api_keys[0]), &s->api};
    sections[1] = (mh_cfg_section_t){"postgres", pg_keys, 1, &s->pg};
}

static bool empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

int api_settings_validate(const api_settings_t *s, char *err, size_t errlen)
{
    const api_conf_t *c = &s->api;
    if (empty(c->tls_cert) || empty(c->tls_key)) {
        snprintf(err, errlen, "api.tls_cert and api.tls_key are required");
        return -1;
    }
    if (!mh_addr_is_loopback(c->ops_addr)) {
        snprintf(err, errlen, "api.ops_addr must be a loopback address, not %s", c->ops_addr);
        return -1;
    }
    if (c->ops_port == c->listen_port) {
        snprintf(err, errlen, "api.ops_port must differ from api.listen_port");
        return -1;
    }
    if (c->token_default_ttl_s > c->token_max_ttl_s) {
        snprintf(err, errlen, "api.token_default_ttl_s must not exceed api.token_max_ttl_s");
        return -1;
    }
    if (empty(s->pg.conninfo)) {
        snprintf(err, errlen, "postgres.conninfo is required");
        return -1;
    }
    return 0;
}
