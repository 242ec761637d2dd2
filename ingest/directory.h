#ifndef ING_DIRECTORY_H
#define ING_DIRECTORY_H

/*
 * The directory: which certificate belongs to which device, and which sensor to which device.
 * Loaded from PostgreSQL by the main thread into an immutable snapshot; workers read their
 * own reference to a snapshot without locks on the hot path and swap to a newer one on their
 * tick. Snapshots are reference counted; the last unref frees one.
 */

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/cert.h"
#include "common/ids.h"

typedef struct ing_device {
    uint64_t did;
    uint64_t account;
    bool active;
    char id[MH_ID_LEN + 1];
    uint8_t fingerprint[MH_FINGERPRINT_LEN];
} ing_device_t;

typedef struct ing_sensor {
    uint64_t sid;
    uint64_t device_did;
    uint64_t account;
    bool counter;
    char id[MH_ID_LEN + 1];
} ing_sensor_t;

typedef struct ing_directory ing_directory_t;

/* The signature of the tables' content: a snapshot is reloaded when it changes. */
/*
 * change_seq values are drawn at update time but become visible at commit, so a change may
 * appear with a number below the highest one already seen: the sums catch that, since every
 * new number changes them.
 */
typedef struct ing_directory_sig {
    int64_t device_seq, sensor_seq, ndevices, nsensors;
    char device_sum[32], sensor_sum[32]; /* numeric sums, as text */
} ing_directory_sig_t;

/* Reads the signature. Returns 0 or -1 (logged). conn is borrowed. Main thread. */
int ing_directory_read_sig(PGconn *conn, ing_directory_sig_t *sig);

/* Loads a whole snapshot. Returns an owned snapshot (refcount 1) or NULL (logged). */
ing_directory_t *ing_directory_load(PGconn *conn, const ing_directory_sig_t *sig);

/* Builds a snapshot from arrays (tests). Copies them. Returns an owned snapshot. */
ing_directory_t *ing_directory_build(const ing_device_t *devices, size_t ndevices,
                                     const ing_sensor_t *sensors, size_t nsensors);

ing_directory_t *ing_directory_ref(ing_directory_t *dir);
void ing_directory_unref(ing_directory_t *dir);

/* Lookups return pointers borrowed from the snapshot (valid while it is referenced), or NULL. */
const ing_device_t *ing_directory_device_by_fingerprint(const ing_directory_t *dir,
                                                        const uint8_t *fp);
const ing_device_t *ing_directory_device_by_did(const ing_directory_t *dir, uint64_t did);
const ing_sensor_t *ing_directory_sensor(const ing_directory_t *dir, const char *id, size_t len);
size_t ing_directory_ndevices(const ing_directory_t *dir);
uint64_t ing_directory_generation(const ing_directory_t *dir);

/*
 * The current snapshot, shared between the main thread (publisher) and the workers.
 * generation increases with every publish so a worker can tell cheaply that it is behind.
 */
typedef struct ing_dirhub {
    pthread_mutex_t lock;
    ing_directory_t *current; /* owned reference; NULL until the first load */
    atomic_uint_fast64_t generation;
} ing_dirhub_t;

void ing_dirhub_init(ing_dirhub_t *hub);
void ing_dirhub_dispose(ing_dirhub_t *hub);
/* Takes ownership of dir's reference and makes it current. Any thread. */
void ing_dirhub_publish(ing_dirhub_t *hub, ing_directory_t *dir);
/* Returns a new reference to the current snapshot (or NULL). Any thread. */
ing_directory_t *ing_dirhub_acquire(ing_dirhub_t *hub);

#endif
