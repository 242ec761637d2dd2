#include "device-sim/fleet.h"

#include "common/alloc.h"
#include "common/fileio.h"
#include "common/log.h"
#include "common/pg.h"
#include "common/provision.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A device key or certificate is a few hundred bytes; anything much larger is not ours. */
#define SIM_PEM_MAX 65536
/* One line of the admin's output: an id and up to 64 sensor ids. */
#define SIM_FLEET_LINE_MAX 8192

static void device_dispose(sim_fleet_device_t *d)
{
    free(d->sensor_ids);
    X509_free(d->cert);
    EVP_PKEY_free(d->key);
    memset(d, 0, sizeof(*d));
}

void sim_fleet_free(sim_fleet_t *fleet)
{
    if (fleet == NULL)
        return;
    for (size_t i = 0; i < fleet->count; i++)
        device_dispose(&fleet->devices[i]);
    free(fleet->devices);
    free(fleet);
}

/* Parses a certificate and a key from PEM text and checks that they belong together. */
static int load_creds(sim_fleet_device_t *d, const char *cert_pem, const char *key_pem)
{
    int rc = -1;
    BIO *cb = BIO_new_mem_buf(cert_pem, -1);
    BIO *kb = BIO_new_mem_buf(key_pem, -1);
    if (cb == NULL || kb == NULL) {
        mh_log_openssl(MH_LOG_ERROR, "fleet: BIO_new_mem_buf");
        goto fail;
    }
    d->cert = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    d->key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    if (d->cert == NULL || d->key == NULL) {
        mh_log_openssl(MH_LOG_ERROR, "fleet: parsing a device certificate or key");
        mh_log(MH_LOG_ERROR, "fleet: device %s: bad certificate or key", d->id);
        goto fail;
    }
    if (X509_check_private_key(d->cert, d->key) != 1) {
        mh_log_openssl(MH_LOG_ERROR, "fleet: key does not match certificate");
        mh_log(MH_LOG_ERROR, "fleet: device %s: key and certificate do not match", d->id);
        goto fail;
    }
    rc = 0;
fail:
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

/* Fills d's ids from one output line of meterhub-admin. */
static int parse_line(sim_fleet_device_t *d, const char *line, const char *file, size_t lineno)
{
    json_error_t jerr;
    json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
    json_t *sensors = o ? json_object_get(o, "sensors") : NULL;
    const char *id = o ? json_string_value(json_object_get(o, "device")) : NULL;
    size_t n = json_array_size(sensors);

    if (id == NULL || !mh_id_valid(id) || !json_is_array(sensors) || n > MH_PROV_MAX_SENSORS) {
        mh_log(MH_LOG_ERROR, "fleet: %s:%zu: not a device line of meterhub-admin", file, lineno);
        goto fail;
    }
    memcpy(d->id, id, MH_ID_LEN + 1);
    d->nsensors = n;
    d->sensor_ids = mh_calloc(n ? n : 1, sizeof(*d->sensor_ids));
    for (size_t s = 0; s < n; s++) {
        const char *sid = json_string_value(json_array_get(sensors, s));
        if (sid == NULL || !mh_id_valid(sid)) {
            mh_log(MH_LOG_ERROR, "fleet: %s:%zu: sensor %zu is not an id", file, lineno, s);
            goto fail;
        }
        memcpy(d->sensor_ids[s], sid, MH_ID_LEN + 1);
    }
    json_decref(o);
    return 0;
fail:
    json_decref(o);
    return -1;
}

/* dir/<id>/name, or dir/name for a fleet of one device (meterhub-admin's layout then). */
static char *read_device_file(const char *dir, const char *id, const char *name, bool single)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s/%s", dir, id, name);
    if (single && stat(path, &st) != 0)
        snprintf(path, sizeof(path), "%s/%s", dir, name);
    return mh_read_text_file(path, SIM_PEM_MAX);
}

sim_fleet_t *sim_fleet_load(const char *dir, const char *json_file, size_t max)
{
    sim_fleet_t *fleet = mh_calloc(1, sizeof(*fleet));
    char path[PATH_MAX];
    char *line = mh_malloc(SIM_FLEET_LINE_MAX);
    char *cert = NULL, *key = NULL;
    size_t alloc = 0, lineno = 0;
    FILE *f = NULL;

    if (json_file == NULL) {
        snprintf(path, sizeof(path), "%s/fleet.json", dir);
        json_file = path;
    }
    f = fopen(json_file, "r");
    if (f == NULL) {
        mh_log(MH_LOG_ERROR, "fleet: %s: %s (give --fleet-json FILE with meterhub-admin's output)",
               json_file, strerror(errno));
        goto fail;
    }
    while ((max == 0 || fleet->count < max) && fgets(line, SIM_FLEET_LINE_MAX, f) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            mh_log(MH_LOG_ERROR, "fleet: %s:%zu: line too long", json_file, lineno);
            goto fail;
        }
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        if (fleet->count == alloc) {
            alloc = alloc ? alloc * 2 : 64;
            fleet->devices = mh_realloc(fleet->devices, alloc * sizeof(*fleet->devices));
        }
        sim_fleet_device_t *d = &fleet->devices[fleet->count];
        memset(d, 0, sizeof(*d));
        fleet->count++;
        if (parse_line(d, line, json_file, lineno) != 0)
            goto fail;
    }
    if (ferror(f)) {
        mh_log(MH_LOG_ERROR, "fleet: reading %s failed", json_file);
        goto fail;
    }
    if (fleet->count == 0) {
        mh_log(MH_LOG_ERROR, "fleet: %s lists no device", json_file);
        goto fail;
    }
    for (size_t i = 0; i < fleet->count; i++) {
        sim_fleet_device_t *d = &fleet->devices[i];
        cert = read_device_file(dir, d->id, "device.crt", fleet->count == 1);
        key = read_device_file(dir, d->id, "device.key", fleet->count == 1);
        if (cert == NULL || key == NULL || load_creds(d, cert, key) != 0)
            goto fail;
        OPENSSL_cleanse(key, strlen(key));
        free(key);
        free(cert);
        key = cert = NULL;
    }
    fclose(f);
    free(line);
    return fleet;
fail:
    if (key != NULL)
        OPENSSL_cleanse(key, strlen(key));
    free(key);
    free(cert);
    if (f != NULL)
        fclose(f);
    free(line);
    sim_fleet_free(fleet);
    return NULL;
}

static void progress(const char *phase, size_t done, size_t total, void *arg)
{
    (void)arg;
    mh_log(MH_LOG_INFO, "provisioning %s: %zu/%zu devices", phase, done, total);
}

/* out_dir/fleet.json in meterhub-admin's output format, so --fleet DIR loads the fleet later. */
static int write_fleet_json(const char *out_dir, const char *account, const mh_prov_batch_t *b)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    FILE *f = NULL;

    snprintf(path, sizeof(path), "%s/fleet.json", out_dir);
    snprintf(tmp, sizeof(tmp), "%s/.fleet.json.tmp", out_dir);
    f = fopen(tmp, "w");
    if (f == NULL) {
        mh_log(MH_LOG_ERROR, "fleet: %s: %s", tmp, strerror(errno));
        goto fail;
    }
    for (size_t i = 0; i < b->count; i++) {
        const mh_prov_device_t *d = &b->devices[i];
        json_t *sensors = json_array();
        for (size_t s = 0; s < d->nsensors; s++)
            json_array_append_new(sensors, json_string(d->sensor_ids[s]));
        json_t *o = json_pack("{s:s, s:s, s:o}", "account", account, "device", d->cred.id,
                              "sensors", sensors);
        int rc = o ? json_dumpf(o, f, JSON_COMPACT) : -1;
        json_decref(o);
        if (rc != 0 || fputc('\n', f) == EOF)
            goto fail;
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        goto fail;
    if (fclose(f) != 0) {
        f = NULL;
        goto fail;
    }
    f = NULL;
    if (rename(tmp, path) != 0)
        goto fail;
    return 0;
fail:
    mh_log(MH_LOG_ERROR, "fleet: writing %s failed: %s", path, strerror(errno));
    if (f != NULL)
        fclose(f);
    unlink(tmp);
    return -1;
}

sim_fleet_t *sim_fleet_provision(const char *pg_uri, const char *pki_dir, const char *account,
                                 size_t count, size_t nsensors, const char *out_dir)
{
    sim_fleet_t *fleet = NULL;
    mh_device_ca_t *ca = NULL;
    PGconn *conn = NULL;
    mh_prov_batch_t *batch = NULL;
    mh_prov_timing_t t;

    if (!mh_account_name_valid(account)) {
        mh_log(MH_LOG_ERROR, "provision: account '%.80s': invalid name", account);
        goto fail;
    }
    ca = mh_device_ca_load(pki_dir);
    if (ca == NULL)
        goto fail;
    conn = mh_pg_connect(pg_uri, "meterhub-sim");
    if (conn == NULL)
        goto fail;
    batch = mh_prov_run(conn, ca, account, count, nsensors, NULL, out_dir,
                        count > MH_PROV_CHUNK ? progress : NULL, NULL, NULL, &t);
    if (batch == NULL)
        goto fail;
    mh_log(MH_LOG_INFO, "provisioned %zu devices with %zu sensors each in %.2f s", count, nsensors,
           t.keys_s + t.files_s + t.db_s + t.publish_s);
    if (out_dir != NULL && write_fleet_json(out_dir, account, batch) != 0)
        goto fail;

    fleet = mh_calloc(1, sizeof(*fleet));
    fleet->devices = mh_calloc(batch->count, sizeof(*fleet->devices));
    for (size_t i = 0; i < batch->count; i++) {
        const mh_prov_device_t *pd = &batch->devices[i];
        sim_fleet_device_t *d = &fleet->devices[i];
        fleet->count++;
        memcpy(d->id, pd->cred.id, MH_ID_LEN + 1);
        d->nsensors = pd->nsensors;
        d->sensor_ids = mh_calloc(pd->nsensors ? pd->nsensors : 1, sizeof(*d->sensor_ids));
        memcpy(d->sensor_ids, pd->sensor_ids, pd->nsensors * sizeof(*d->sensor_ids));
        if (load_creds(d, pd->cred.cert_pem, pd->cred.key_pem) != 0)
            goto fail;
    }
    mh_prov_batch_free(batch);
    PQfinish(conn);
    mh_device_ca_free(ca);
    return fleet;
fail:
    sim_fleet_free(fleet);
    mh_prov_batch_free(batch);
    PQfinish(conn);
    mh_device_ca_free(ca);
    return NULL;
}
