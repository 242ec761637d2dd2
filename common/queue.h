#ifndef MH_QUEUE_H
#define MH_QUEUE_H

/*
 * The Redis side of the queue, shared by ingest and writer: connection settings, key names and
 * the shard of a sensor or device.
 *
 * Keys carry the shard in a hash tag so a Redis Cluster keeps each shard's keys together:
 *   <prefix>:{<shard>}:q      stream of QueueEntry messages (field "e"), consumer group "writers"
 *   <prefix>:{<shard>}:dead   dead-letter stream (fields "e", "reason", "src")
 *   <prefix>:{<shard>}:last   hash sensor sid -> "<ts> <value>" of the newest accepted counter
 *                             reading, updated in the same script as the XADD
 */

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define MH_QUEUE_GROUP "writers"
#define MH_QUEUE_FIELD "e"
#define MH_QUEUE_KEY_MAX 96

typedef struct mh_redis_conf {
    char *host;
    long port;
    char *user;          /* ACL user; NULL: the default user */
    char *password_file; /* file holding the password (mode 0600); NULL: no AUTH */
    char *prefix;
    long shards;
    long timeout_ms;
} mh_redis_conf_t;

/* The [redis] key table; `dst` of the section must be a mh_redis_conf_t. */
extern const mh_cfg_key_t mh_redis_conf_keys[];
extern const size_t mh_redis_conf_nkeys;

typedef enum mh_queue_key_kind {
    MH_QKEY_STREAM,
    MH_QKEY_DEAD,
    MH_QKEY_LAST,
} mh_queue_key_kind_t;

/* Writes the key name into out[MH_QUEUE_KEY_MAX]. */
void mh_queue_key(char *out, const char *prefix, long shard, mh_queue_key_kind_t kind);

/* Stable shard of an internal sensor or device key. */
long mh_queue_shard(uint64_t key, long shards);

/*
 * Blocking connection with conf->timeout_ms for connect and commands, authenticated when a
 * password file is set. Returns an owned context (redisFree) or NULL with err filled. The
 * password is never logged.
 */
redisContext *mh_redis_connect(const mh_redis_conf_t *conf, char *err, size_t errlen);

/* Reads conf->password_file; NULL when no AUTH is configured or on error (err filled; check
 * err[0]). Owned by the caller, who should explicit_bzero it after use. */
char *mh_redis_password(const mh_redis_conf_t *conf, char *err, size_t errlen);

#endif
