#include "directory.h"

#include "common/alloc.h"
#include "common/log.h"
#include "common/pg.h"

#include <stdlib.h>
#include <string.h>

/*
 * Open addressing with linear probing; slots hold index + 1 (0 = empty). Tables are sized to
 * at least twice the entries, so probes stay short and always end.
 */
struct ing_directory {
    atomic_int refs;
    uint64_t generation;
    size_t ndevices, nsensors;
    ing_device_t *devices;
    ing_sensor_t *sensors;
    size_t dev_mask, sen_mask;
    uint32_t *dev_by_fp;
    uint32_t *dev_by_did;
    uint32_t *sen_by_id;
};

static atomic_uint_fast64_t next_generation = 1;

static uint64_t hash_bytes(const void *p, size_t len)
{
    /* FNV-1a: the keys are random ids and digests, so quality needs are modest. */
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static size_t table_size(size_t n)
{
    size_t size = 16;
    while (size < 2 * n)
        size <<= 1;
    return size;
}

ing_directory_t *ing_directory_build(const ing_device_t *devices, size_t ndevices,
                                     const ing_sensor_t *sensors, size_t nsensors)
{
    ing_directory_t *d = mh_calloc(1, sizeof(*d));
    atomic_init(&d->refs, 1);
    d->generation = atomic_fetch_add(&next_generation, 1);
    d->ndevices = ndevices;
    d->nsensors = nsensors;
    d->devices = mh_malloc(ndevices * sizeof(*devices));
    d->sensors = mh_malloc(nsensors * sizeof(*sensors));
    if (ndevices)
        memcpy(d->devices, devices, ndevices * sizeof(*devices));
    if (nsensors)
        memcpy(d->sensors, sensors, nsensors * sizeof(*sensors));

    size_t ds = table_size(ndevices), ss = table_size(nsensors);
    d->dev_mask = ds - 1;
    d->sen_mask = ss - 1;
    d->dev_by_fp = mh_calloc(ds, sizeof(uint32_t));
    d->dev_by_did = mh_calloc(ds, sizeof(uint32_t));
    d->sen_by_id = mh_calloc(ss, sizeof(uint32_t));
    for (size_t i = 0; i < ndevices; i++) {
        size_t h = hash_bytes(d->devices[i].fingerprint, MH_FINGERPRINT_LEN) & d->dev_mask;
        while (d->dev_by_fp[h])
            h = (h + 1) & d->dev_mask;
        d->dev_by_fp[h] = (uint32_t)i + 1;
        h = hash_u64(d->devices[i].did) & d->dev_mask;
        while (d->dev_by_did[h])
            h = (h + 1) & d->dev_mask;
        d->dev_by_did[h] = (uint32_t)i + 1;
    }
    for (size_t i = 0; i < nsensors; i++) {
        size_t h = hash_bytes(d->sensors[i].id, MH_ID_LEN) & d->sen_mask;
        while (d->sen_by_id[h])
            h = (h + 1) & d->sen_mask;
        d->sen_by_id[h] = (uint32_t)i + 1;
    }
    return d;
}

ing_directory_t *ing_directory_ref(ing_directory_t *dir)
{
    if (dir != NULL)
        atomic_fetch_add_explicit(&dir->refs, 1, memory_order_relaxed);
    return dir;
}

void ing_directory_unref(ing_directory_t *dir)
{
    if (dir == NULL || atomic_fetch_sub_explicit(&dir->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(dir->devices);
    free(dir->sensors);
    free(dir->dev_by_fp);
    free(dir->dev_by_did);
    free(dir->sen_by_id);
    free(dir);
}

const ing_device_t *ing_directory_device_by_fingerprint(const ing_directory_t *dir,
                                                        const uint8_t *fp)
{
    size_t h = hash_bytes(fp, MH_FINGERPRINT_LEN) & dir->dev_mask;
    for (uint32_t slot; (slot = dir->dev_by_fp[h]) != 0; h = (h + 1) & dir->dev_mask) {
        const ing_device_t *d = &dir->devices[slot - 1];
        if (memcmp(d->fingerprint, fp, MH_FINGERPRINT_LEN) == 0)
            return d;
    }
    return NULL;
}

const ing_device_t *ing_directory_device_by_did(const ing_directory_t *dir, uint64_t did)
{
    size_t h = hash_u64(did) & dir->dev_mask;
    for (uint32_t slot; (slot = dir->dev_by_did[h]) != 0; h = (h + 1) & dir->dev_mask) {
        const ing_device_t *d = &dir->devices[slot - 1];
        if (d->did == did)
            return d;
    }
    return NULL;
}

const ing_sensor_t *ing_directory_sensor(const ing_directory_t *dir, const char *id, size_t len)
{
    if (!mh_id_valid_n(id, len))
        return NULL;
    size_t h = hash_bytes(id, MH_ID_LEN) & dir->sen_mask;
    for (uint32_t slot; (slot = dir->sen_by_id[h]) != 0; h = (h + 1) & dir->sen_mask) {
        const ing_sensor_t *s = &dir->sensors[slot - 1];
        if (memcmp(s->id, id, MH_ID_LEN) == 0)
            return s;
    }
    return NULL;
}

size_t ing_directory_ndevices(const ing_directory_t *dir)
{
    return dir->ndevices;
}

uint64_t ing_directory_generation(const ing_directory_t *dir)
{
    return dir->generation;
}

static void log_pg_error(const char *what, PGconn *conn)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
    msg[strcspn(msg, "\n")] = '\0';
    mh_log(MH_LOG_ERROR, "directory: %s: %s", what, msg);
}

int ing_directory_read_sig(PGconn *conn, ing_directory_sig_t *sig)
{
    PGresult *res = PQexec(conn, "SELECT coalesce(max(change_seq), 0), count(*),"
                                 " coalesce(sum(change_seq), 0),"
                                 " (SELECT coalesce(max(change_seq), 0) FROM sensors),"
                                 " (SELECT count(*) FROM sensors),"
                                 " (SELECT coalesce(sum(change_seq), 0) FROM sensors)"
                                 " FROM devices");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        log_pg_error("reading change signature", conn);
        PQclear(res);
        return -1;
    }
    memset(sig, 0, sizeof(*sig));
    sig->device_seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    sig->ndevices = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    snprintf(sig->device_sum, sizeof(sig->device_sum), "%s", PQgetvalue(res, 0, 2));
    sig->sensor_seq = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    sig->nsensors = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
    snprintf(sig->sensor_sum, sizeof(sig->sensor_sum), "%s", PQgetvalue(res, 0, 5));
    PQclear(res);
    return 0;
}

static int hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
    /* bytea in text form: "\x" followed by 2n hex digits. */
    if (strncmp(hex, "\\x", 2) != 0 || strlen(hex) != 2 + 2 * n)
        return -1;
    hex += 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + k];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else
                return -1;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

ing_directory_t *ing_directory_load(PGconn *conn, const ing_directory_sig_t *sig)
{
    PGresult *dres = NULL, *sres = NULL;
    ing_device_t *devices = NULL;
    ing_sensor_t *sensors = NULL;
    ing_directory_t *dir = NULL;

    /* One snapshot of both tables: a sensor never refers to a device the snapshot lacks. */
    if (mh_pg_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != 0)
        goto fail;
    dres = PQexec(conn, "SELECT did, account_id, status = 'active', id, cert_fingerprint "
                        "FROM devices");
    if (PQresultStatus(dres) != PGRES_TUPLES_OK) {
        log_pg_error("loading devices", conn);
        goto fail;
    }
    sres = PQexec(conn, "SELECT sid, device_did, account_id, type = 'counter', id FROM sensors");
    if (PQresultStatus(sres) != PGRES_TUPLES_OK) {
        log_pg_error("loading sensors", conn);
        goto fail;
    }
    PQclear(PQexec(conn, "COMMIT"));

    size_t nd = (size_t)PQntuples(dres), ns = (size_t)PQntuples(sres);
    devices = mh_calloc(nd ? nd : 1, sizeof(*devices));
    sensors = mh_calloc(ns ? ns : 1, sizeof(*sensors));
    for (size_t i = 0; i < nd; i++) {
        ing_device_t *d = &devices[i];
        d->did = strtoull(PQgetvalue(dres, (int)i, 0), NULL, 10);
        d->account = strtoull(PQgetvalue(dres, (int)i, 1), NULL, 10);
        d->active = PQgetvalue(dres, (int)i, 2)[0] == 't';
        snprintf(d->id, sizeof(d->id), "%s", PQgetvalue(dres, (int)i, 3));
        if (hex_to_bytes(PQgetvalue(dres, (int)i, 4), d->fingerprint, MH_FINGERPRINT_LEN) != 0) {
            mh_log(MH_LOG_ERROR, "directory: device %s has a malformed fingerprint", d->id);
            goto fail;
        }
    }
    for (size_t i = 0; i < ns; i++) {
        ing_sensor_t *s = &sensors[i];
        s->sid = strtoull(PQgetvalue(sres, (int)i, 0), NULL, 10);
        s->device_did = strtoull(PQgetvalue(sres, (int)i, 1), NULL, 10);
        s->account = strtoull(PQgetvalue(sres, (int)i, 2), NULL, 10);
        s->counter = PQgetvalue(sres, (int)i, 3)[0] == 't';
        snprintf(s->id, sizeof(s->id), "%s", PQgetvalue(sres, (int)i, 4));
    }
    dir = ing_directory_build(devices, nd, sensors, ns);
    mh_log(MH_LOG_INFO, "directory: loaded %zu devices and %zu sensors (seq %lld/%lld)", nd, ns,
           (long long)sig->device_seq, (long long)sig->sensor_seq);
fail:
    if (dir == NULL && PQtransactionStatus(conn) == PQTRANS_INTRANS)
        PQclear(PQexec(conn, "ROLLBACK"));
    PQclear(dres);
    PQclear(sres);
    free(devices);
    free(sensors);
    return dir;
}

void ing_dirhub_init(ing_dirhub_t *hub)
{
    pthread_mutex_init(&hub->lock, NULL);
    hub->current = NULL;
    atomic_init(&hub->generation, 0);
}

void ing_dirhub_dispose(ing_dirhub_t *hub)
{
    ing_directory_unref(hub->current);
    hub->current = NULL;
    pthread_mutex_destroy(&hub->lock);
}

void ing_dirhub_publish(ing_dirhub_t *hub, ing_directory_t *dir)
{
    pthread_mutex_lock(&hub->lock);
    ing_directory_t *old = hub->current;
    hub->current = dir;
    atomic_store(&hub->generation, dir ? dir->generation : 0);
    pthread_mutex_unlock(&hub->lock);
    ing_directory_unref(old);
}

ing_directory_t *ing_dirhub_acquire(ing_dirhub_t *hub)
{
    pthread_mutex_lock(&hub->lock);
    ing_directory_t *dir = ing_directory_ref(hub->current);
    pthread_mutex_unlock(&hub->lock);
    return dir;
}
