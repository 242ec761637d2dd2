#include "queue.h"
#include "alloc.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const mh_cfg_key_t mh_redis_conf_keys[] = {
    {"host", MH_CFG_STR, offsetof(mh_redis_conf_t, host), "127.0.0.1", 0, 0, "Redis address"},
    {"password_file", MH_CFG_STR, offsetof(mh_redis_conf_t, password_file), NULL, 0, 0,
     "file with the ACL user's password"},
    {"port", MH_CFG_INT, offsetof(mh_redis_conf_t, port), "6379", 1, 65535, "Redis port"},
    {"prefix", MH_CFG_STR, offsetof(mh_redis_conf_t, prefix), "mh", 0, 0, "key prefix"},
    {"shards", MH_CFG_INT, offsetof(mh_redis_conf_t, shards), "4", 1, 1024,
     "number of stream shards (same on every ingest and writer)"},
    {"timeout_ms", MH_CFG_INT, offsetof(mh_redis_conf_t, timeout_ms), "2000", 10, 60000,
     "connect and command timeout"},
    {"user", MH_CFG_STR, offsetof(mh_redis_conf_t, user), NULL, 0, 0, "ACL user"},
};
const size_t mh_redis_conf_nkeys = sizeof(mh_redis_conf_keys) / sizeof(mh_redis_conf_keys[0]);

void mh_queue_key(char *out, const char *prefix, long shard, mh_queue_key_kind_t kind)
{
    static const char *const suffix[] = {"q", "dead", "last"};
    snprintf(out, MH_QUEUE_KEY_MAX, "%s:{%ld}:%s", prefix, shard, suffix[kind]);
}

long mh_queue_shard(uint64_t key, long shards)
{
    /* Fibonacci hashing spreads sequential sids evenly across shards. */
    return (long)((key * 0x9E3779B97F4A7C15ull) >> 32) % shards;
}

char *mh_redis_password(const mh_redis_conf_t *conf, char *err, size_t errlen)
{
    err[0] = '\0';
    if (conf->password_file == NULL || conf->password_file[0] == '\0')
        return NULL;
    return mh_config_read_secret_file(conf->password_file, err, errlen);
}

redisContext *mh_redis_connect(const mh_redis_conf_t *conf, char *err, size_t errlen)
{
    struct timeval tv = {conf->timeout_ms / 1000, (conf->timeout_ms % 1000) * 1000};
    redisContext *c = NULL;
    redisReply *r = NULL;
    char *password = NULL;

    c = redisConnectWithTimeout(conf->host, (int)conf->port, tv);
    if (c == NULL || c->err) {
        snprintf(err, errlen, "redis %s:%ld: %s", conf->host, conf->port,
                 c ? c->errstr : "out of memory");
        goto fail;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(err, errlen, "redis: cannot set timeout");
        goto fail;
    }
    password = mh_redis_password(conf, err, errlen);
    if (password == NULL && err[0] != '\0')
        goto fail;
    if (password != NULL) {
        if (conf->user != NULL)
            r = redisCommand(c, "AUTH %s %s", conf->user, password);
        else
            r = redisCommand(c, "AUTH %s", password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "redis: AUTH failed: %s",
                     r ? r->str : (c->errstr[0] ? c->errstr : "no reply"));
            goto fail;
        }
    }
    if (r != NULL)
        freeReplyObject(r);
    if (password != NULL) {
        explicit_bzero(password, strlen(password));
        free(password);
    }
    return c;
fail:
    if (r != NULL)
        freeReplyObject(r);
    if (password != NULL) {
        explicit_bzero(password, strlen(password));
        free(password);
    }
    if (c != NULL)
        redisFree(c);
    return NULL;
}
