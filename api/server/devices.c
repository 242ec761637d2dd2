/*
 * Registering and changing devices and sensors: POST /v1/devices, PATCH /v1/devices/{id} and
 * PATCH /v1/sensors/{id}. The body checks run on the loop thread; the run functions on a
 * database thread, as the token's account under row-level security. Certificates come from
 * the device CA loaded at start (api.pki_dir), which is immutable and shared by the threads.
 *
 * Two privacy rules are kept here and again in PostgreSQL (008_api_device_config.sql): a
 * location is rounded to 0.01 degree (about 1 km) before the body leaves the loop thread, and
 * its columns cannot hold more; secrets are written and never read back: the API role cannot
 * SELECT them, and answers show only their names.
 */
#include "api_internal.h"

#include "common/ids.h"
#include "common/log.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API_MAX_SENSORS MH_PROV_MAX_SENSORS
#define API_NAME_MAX 64
/* Bounds of the secrets of one device: a few Wi-Fi networks and tokens, not a store. */
#define API_MAX_SECRETS 16
#define API_SECRET_NAME_MAX 64
#define API_SECRET_VALUE_MAX 1024

/* The CHECK constraints of the sensors table (001_core.sql). */
static const char *const sensor_kinds[] = {"electricity", "gas", "water", NULL};
static const char *const sensor_types[] = {"counter", "gauge", NULL};
static const char *const sensor_units[] = {"Wh", "W", "L", "L/min", "m3", NULL};

/* ---- checks, on the loop thread ---------------------------------------------------------- */

static bool one_of(const char *v, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(v, *set) == 0)
            return true;
    return false;
}

/* A name people give: 1 to 64 bytes, no control characters (the name columns' CHECK). */
static bool name_ok(const json_t *v)
{
    if (!json_is_string(v))
        return false;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > API_NAME_MAX)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* Secret names are shown in answers and name settings on the device: a tame alphabet. */
static bool secret_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > API_SECRET_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* Writes a message and returns -1, for the checks' refusals. */
static int refuse(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(char *msg, size_t msglen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Absent, or a string of set. */
static bool absent_or_in(const json_t *v, const char *const *set)
{
    return v == NULL || (json_is_string(v) && one_of(json_string_value(v), set));
}

/*
 * The fields of a sensor, strictly: kind, type and unit (all three required when all), and
 * name (a name, or null for none). where ("sensors[2]", or "" for the body itself) starts
 * each message.
 */
static int sensor_check(json_t *obj, bool all, const char *where, char *msg, size_t msglen)
{
    const char *dot = where[0] != '\0' ? "." : "";
    json_t *kind = NULL, *type = NULL, *unit = NULL, *name = NULL;
    json_error_t jerr;

    if (!json_is_object(obj))
        return refuse(msg, msglen, "%s: an object {kind, type, unit, name}", where);
    if (json_unpack_ex(obj, &jerr, JSON_STRICT, "{s?:o, s?:o, s?:o, s?:o}", "kind", &kind, "type",
                       &type, "unit", &unit, "name", &name) != 0)
        return refuse(msg, msglen, "%s%s%s (fields: kind, type, unit, name)", where,
                      where[0] != '\0' ? ": " : "", jerr.text);
    if (all && (kind == NULL || type == NULL || unit == NULL))
        return refuse(msg, msglen, "%s: kind, type and unit are required", where);
    if (!absent_or_in(kind, sensor_kinds))
        return refuse(msg, msglen, "%s%skind: electricity, gas or water", where, dot);
    if (!absent_or_in(type, sensor_types))
        return refuse(msg, msglen, "%s%stype: counter or gauge", where, dot);
    if (!absent_or_in(unit, sensor_units))
        return refuse(msg, msglen, "%s%sunit: Wh, W, L, L/min or m3", where, dot);
    if (name != NULL && !json_is_null(name) && !name_ok(name))
        return refuse(msg, msglen, "%s%sname: 1 to 64 characters without control characters", where,
                      dot);
    return 0;
}

/* The CHECK of devices.hardware (010_upgrade.sql), on a JSON string with no NUL inside. */
static bool hardware_ok_json(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v) &&
           mh_hardware_valid(json_string_value(v));
}

/* {"csr": PEM} or {"generate_key": true}, with "name", "sensors" and "hardware" optional. */
int api_device_register_check(json_t *in, char *msg, size_t msglen)
{
    json_t *csr = NULL, *generate = NULL, *name = NULL, *sensors = NULL, *hardware = NULL, *s;
    json_error_t jerr;
    size_t i;

    if (json_unpack_ex(in, &jerr, JSON_STRICT, "{s?:o, s?:o, s?:o, s?:o, s?:o}", "csr", &csr,
                       "generate_key", &generate, "name", &name, "sensors", &sensors, "hardware",
                       &hardware) != 0)
        return refuse(msg, msglen, "%s (fields: csr, generate_key, name, sensors, hardware)",
                      jerr.text);
    if (hardware != NULL && !hardware_ok_json(hardware))
        return refuse(msg, msglen,
                      "hardware: 1 to 32 of a-z 0-9 . _ -, beginning with a letter or a digit");
    if (csr != NULL && (!json_is_string(csr) || json_string_length(csr) == 0 ||
                        json_string_length(csr) > MH_CSR_MAX_BYTES))
        return refuse(msg, msglen, "csr: a PEM certificate request of at most %d bytes",
                      MH_CSR_MAX_BYTES);
    if (generate != NULL && !json_is_boolean(generate))
        return refuse(msg, msglen, "generate_key: true or false");
    if ((csr != NULL) == json_is_true(generate))
        return refuse(msg, msglen,
                      "send either csr (a PEM certificate request) or \"generate_key\": true");
    if (name != NULL && !json_is_null(name) && !name_ok(name))
        return refuse(msg, msglen, "name: 1 to 64 characters without control characters");
    if (sensors != NULL && (!json_is_array(sensors) || json_array_size(sensors) > API_MAX_SENSORS))
        return refuse(msg, msglen, "sensors: a list of at most %d {kind, type, unit, name}",
                      API_MAX_SENSORS);
    json_array_foreach(sensors, i, s)
    {
        char where[32];
        snprintf(where, sizeof(where), "sensors[%zu]", i);
        if (sensor_check(s, true, where, msg, msglen) != 0)
            return -1;
    }
    return 0;
}

/* Degrees to hundredths of a degree, rounded half away from zero. */
static json_int_t hundredths(double degrees)
{
    return (json_int_t)(degrees * 100.0 + (degrees < 0 ? -0.5 : 0.5));
}

/* {"name"?, "location"?, "secrets"?}: at least one. */
int api_device_patch_check(json_t *in, char *msg, size_t msglen)
{
    json_t *name = NULL, *location = NULL, *secrets = NULL, *value;
    json_error_t jerr;
    const char *key;

    if (json_unpack_ex(in, &jerr, JSON_STRICT, "{s?:o, s?:o, s?:o}", "name", &name, "location",
                       &location, "secrets", &secrets) != 0)
        return refuse(msg, msglen, "%s (fields: name, location, secrets)", jerr.text);
    if (name == NULL && location == NULL && secrets == NULL)
        return refuse(msg, msglen, "nothing to change: send name, location or secrets");
    if (name != NULL && !json_is_null(name) && !name_ok(name))
        return refuse(msg, msglen, "name: 1 to 64 characters without control characters, or null");
    if (location != NULL && !json_is_null(location)) {
        double lat = 0, lon = 0;
        if (json_unpack_ex(location, &jerr, JSON_STRICT, "{s:F, s:F}", "lat", &lat, "lon", &lon) !=
            0)
            return refuse(msg, msglen, "location: {\"lat\", \"lon\"} in degrees, or null (%s)",
                          jerr.text);
        if (!(lat >= -90 && lat <= 90))
            return refuse(msg, msglen, "location.lat: -90 to 90 degrees");
        if (!(lon >= -180 && lon <= 180))
            return refuse(msg, msglen, "location.lon: -180 to 180 degrees");
        /* The exact coordinates go no further than this: the job carries hundredths. */
        json_object_set_new(
            in, "location",
            json_pack("{s:I, s:I}", "lat", hundredths(lat), "lon", hundredths(lon)));
    }
    if (secrets != NULL) {
        if (!json_is_object(secrets) || json_object_size(secrets) > API_MAX_SECRETS)
            return refuse(msg, msglen,
                          "secrets: an object of at most %d names to string values ({} removes "
                          "them all)",
                          API_MAX_SECRETS);
        /* No message repeats a value, nor a name that failed the check: it might be one. */
        json_object_foreach(secrets, key, value)
        {
            if (!secret_name_ok(key))
                return refuse(msg, msglen, "secrets: names are 1 to %d of A-Z a-z 0-9 . _ -",
                              API_SECRET_NAME_MAX);
            if (!json_is_string(value) || json_string_length(value) == 0 ||
                json_string_length(value) > API_SECRET_VALUE_MAX)
                return refuse(msg, msglen, "secrets.%s: a string of 1 to %d bytes", key,
                              API_SECRET_VALUE_MAX);
        }
    }
    return 0;
}

/* {"name"?, "kind"?, "type"?, "unit"?}: at least one. */
int api_sensor_patch_check(json_t *in, char *msg, size_t msglen)
{
    if (json_object_size(in) == 0)
        return refuse(msg, msglen, "nothing to change: send name, kind, type or unit");
    return sensor_check(in, false, "", msg, msglen);
}

/* ---- run functions, on a database thread ------------------------------------------------- */

/* Ends the open transaction, which changed nothing, before a refusal. */
static void rollback(PGconn *pg)
{
    PGresult *r = PQexec(pg, "ROLLBACK");
    PQclear(r);
}

/* The answer to a registration: the device as GET shows it, and its credentials. */
static void register_answer(api_job_t *job, json_t *device, const mh_device_cred_t *cred)
{
    json_object_set_new(device, "certificate", json_string(cred->cert_pem));
    json_object_set_new(device, "ca", json_string(mh_device_ca_trust_pem(job->srv->device_ca)));
    /* Shown this once: the service keeps no copy of a key it generated. */
    if (cred->key_pem != NULL)
        json_object_set_new(device, "private_key", json_string(cred->key_pem));
    job->status = 201;
    job->out = device;
    job->dump_flags = API_DEVICE_DUMP_FLAGS;
}

/*
 * The sensors asked for, each with a fresh id, as JSON text (malloc'd) for the INSERT; NULL
 * if none were asked for or an id could not be drawn (*err set).
 */
static char *sensors_with_ids(json_t *asked, bool *err)
{
    json_t *rows = json_array(), *s;
    size_t i;
    char *text = NULL;

    *err = false;
    json_array_foreach(asked, i, s)
    {
        char id[MH_ID_LEN + 1];
        if (mh_id_random(id) != 0) {
            *err = true;
            goto done;
        }
        json_t *row = json_copy(s);
        json_object_set_new(row, "id", json_string(id));
        json_array_append_new(rows, row);
    }
    if (json_array_size(rows) > 0)
        text = json_dumps(rows, JSON_COMPACT);
    *err = json_array_size(rows) > 0 && text == NULL;
done:
    json_decref(rows);
    return text;
}

void api_run_device_register(api_job_t *job, PGconn *pg)
{
    const mh_device_ca_t *ca = job->srv->device_ca;
    const char *csr = json_string_value(json_object_get(job->in, "csr"));
    const json_t *name = json_object_get(job->in, "name");
    const char *hardware = json_string_value(json_object_get(job->in, "hardware"));
    mh_device_cred_t cred = {0};
    char id[MH_ID_LEN + 1], acc[24], did[24], fp[2 * MH_FINGERPRINT_LEN + 1];
    char *sensors = NULL;
    json_t *device = NULL;
    PGresult *r = NULL;
    bool err = false;

    long long account = api_db_begin_as(job, pg);
    if (account < 0)
        return;
    if (ca == NULL) {
        rollback(pg);
        api_job_error(job, 503, "registration_unavailable",
                      "device registration is not configured on this server (api.pki_dir)");
        goto done;
    }
    /* Checked first, quietly: a bad request is the sender's mistake, told to them, not an
     * error of ours to log. */
    if (csr != NULL) {
        mh_csr_status_t st = mh_csr_check(csr, strlen(csr));
        if (st != MH_CSR_OK) {
            rollback(pg);
            api_job_error(job, 400, "invalid_request", "csr: %s", mh_csr_status_text(st));
            goto done;
        }
    }
    sensors = sensors_with_ids(json_object_get(job->in, "sensors"), &err);
    if (err || mh_id_random(id) != 0 ||
        (csr != NULL ? mh_device_ca_sign_csr(ca, id, csr, strlen(csr), NULL, &cred)
                     : mh_device_ca_issue(ca, id, NULL, &cred)) != 0) {
        rollback(pg);
        api_job_error(job, 500, "internal", "could not issue the device's certificate");
        goto done;
    }

    mh_hex_encode(cred.fingerprint, MH_FINGERPRINT_LEN, fp);
    snprintf(acc, sizeof(acc), "%lld", account);
    const char *dvalues[5] = {id, acc, fp, json_is_string(name) ? json_string_value(name) : NULL,
                              hardware};
    /* Without hardware, the column's default (flm02) applies: it is said once, in SQL. */
    r = api_db_exec(job, pg,
                    hardware != NULL
                        ? "INSERT INTO devices (id, account_id, cert_fingerprint, name, hardware)"
                          " VALUES ($1, $2::bigint, decode($3, 'hex'), $4, $5) RETURNING did"
                        : "INSERT INTO devices (id, account_id, cert_fingerprint, name)"
                          " VALUES ($1, $2::bigint, decode($3, 'hex'), $4) RETURNING did",
                    hardware != NULL ? 5 : 4, dvalues, "registering a device");
    if (r == NULL)
        goto done;
    snprintf(did, sizeof(did), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    r = NULL;
    if (sensors != NULL) {
        /* In the order asked (nextval runs after the sort), so the device's sensors list,
         * ordered by sid, matches the request's. */
        const char *svalues[3] = {did, acc, sensors};
        r = api_db_exec(job, pg,
                        "INSERT INTO sensors (id, device_did, account_id, kind, type, unit, name)"
                        " SELECT e->>'id', $1::bigint, $2::bigint, e->>'kind', e->>'type',"
                        " e->>'unit', e->>'name'"
                        " FROM json_array_elements($3::json) WITH ORDINALITY AS t (e, n)"
                        " ORDER BY t.n",
                        3, svalues, "registering sensors");
        if (r == NULL)
            goto done;
        PQclear(r);
        r = NULL;
    }
    int found = api_device_read_one(job, pg, id, &device);
    if (found <= 0) {
        if (found == 0) {
            rollback(pg);
            api_job_error(job, 500, "internal", "the new device cannot be read back");
        }
        goto done;
    }
    if (api_db_commit(job, pg) != 0)
        goto done;
    mh_log(MH_LOG_INFO, "api: device %s registered by account %lld (%s)", id, account,
           csr != NULL ? "from a CSR" : "generated key");
    register_answer(job, device, &cred);
    device = NULL;
done:
    json_decref(device);
    free(sensors);
    PQclear(r);
    mh_device_cred_dispose(&cred);
}

/* Hundredths of a degree as decimal text: -5 -> "-0.05". */
static void degrees_text(json_int_t h, char *out, size_t outlen)
{
    json_int_t a = h < 0 ? -h : h;
    snprintf(out, outlen, "%s%lld.%02lld", h < 0 ? "-" : "", (long long)(a / 100),
             (long long)(a % 100));
}

/* Appends to the statement being built in sql[cap]. */
static void sql_add(char *sql, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sql_add(char *sql, size_t cap, const char *fmt, ...)
{
    size_t len = strlen(sql);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql + len, cap - len, fmt, ap);
    va_end(ap);
}

void api_run_device_patch(api_job_t *job, PGconn *pg)
{
    const json_t *name = json_object_get(job->in, "name");
    const json_t *location = json_object_get(job->in, "location");
    const json_t *secrets = json_object_get(job->in, "secrets");
    const char *values[5];
    char sql[512], lat[24], lon[24];
    char *secrets_text = NULL;
    json_t *device = NULL;
    PGresult *r = NULL;
    int n = 0;

    if (api_db_begin_as(job, pg) < 0)
        return;
    /* Only the columns asked for are named: secrets must never appear on the right of an
     * assignment, which would need the SELECT privilege the role does not have. */
    values[n++] = job->path_id;
    snprintf(sql, sizeof(sql), "UPDATE devices SET");
    if (name != NULL) {
        values[n++] = json_string_value(name); /* NULL for null: no name */
        sql_add(sql, sizeof(sql), " name = $%d,", n);
    }
    if (location != NULL) {
        values[n] = values[n + 1] = NULL;
        if (!json_is_null(location)) {
            degrees_text(json_integer_value(json_object_get(location, "lat")), lat, sizeof(lat));
            degrees_text(json_integer_value(json_object_get(location, "lon")), lon, sizeof(lon));
            values[n] = lat;
            values[n + 1] = lon;
        }
        n += 2;
        sql_add(sql, sizeof(sql), " location_lat = $%d::numeric, location_lon = $%d::numeric,",
                n - 1, n);
    }
    if (secrets != NULL) {
        /* The whole set is replaced: being unreadable, it cannot be merged with. */
        secrets_text = json_dumps(secrets, JSON_COMPACT | JSON_SORT_KEYS);
        if (secrets_text == NULL) {
            rollback(pg);
            api_job_error(job, 500, "internal", "out of memory");
            goto done;
        }
        values[n++] = secrets_text;
        sql_add(sql, sizeof(sql),
                " secrets = nullif($%d::jsonb, '{}'), secret_names ="
                " ARRAY(SELECT jsonb_object_keys($%d::jsonb) ORDER BY 1),",
                n, n);
    }
    /* The check let no empty body through, so there is a trailing comma to replace. */
    sql[strlen(sql) - 1] = ' ';
    sql_add(sql, sizeof(sql), "WHERE id = $1 RETURNING id");
    r = api_db_exec(job, pg, sql, n, values, "changing a device");
    if (r == NULL)
        goto done;
    if (PQntuples(r) == 0) {
        /* Another account's, or none: the same answer. */
        rollback(pg);
        api_job_error(job, 404, "not_found", "no such device");
        goto done;
    }
    int found = api_device_read_one(job, pg, job->path_id, &device);
    if (found == 0) {
        rollback(pg);
        api_job_error(job, 500, "internal", "the device cannot be read back");
    }
    if (found <= 0 || api_db_commit(job, pg) != 0)
        goto done;
    mh_log(MH_LOG_INFO, "api: device %s changed by its owner:%s%s%s", job->path_id,
           name ? " name" : "", location ? " location" : "", secrets ? " secrets" : "");
    job->status = 200;
    job->out = device;
    job->dump_flags = API_DEVICE_DUMP_FLAGS;
    device = NULL;
done:
    if (secrets_text != NULL) {
        OPENSSL_cleanse(secrets_text, strlen(secrets_text));
        free(secrets_text);
    }
    json_decref(device);
    PQclear(r);
}

void api_run_sensor_patch(api_job_t *job, PGconn *pg)
{
    const json_t *name = json_object_get(job->in, "name");
    json_t *sensor = NULL;
    /* Absent fields are NULL and keep their value; the name is the one that may be cleared. */
    const char *values[6] = {job->path_id,
                             json_string_value(json_object_get(job->in, "kind")),
                             json_string_value(json_object_get(job->in, "type")),
                             json_string_value(json_object_get(job->in, "unit")),
                             name != NULL ? "t" : "f",
                             json_string_value(name)};

    if (api_db_begin_as(job, pg) < 0)
        return;
    /* A new type moves change_seq (the sensors_change trigger): ingest reloads and checks the
     * next batches as the new type. */
    PGresult *r = api_db_exec(job, pg,
                              "UPDATE sensors SET kind = coalesce($2, kind),"
                              " type = coalesce($3, type), unit = coalesce($4, unit),"
                              " name = CASE WHEN $5::boolean THEN $6 ELSE name END"
                              " WHERE id = $1 RETURNING id",
                              6, values, "changing a sensor");
    if (r == NULL)
        return;
    int changed = PQntuples(r);
    PQclear(r);
    if (changed == 0) {
        rollback(pg);
        api_job_error(job, 404, "not_found", "no such sensor");
        return;
    }
    int found = api_sensor_read_one(job, pg, job->path_id, &sensor);
    if (found == 0) {
        rollback(pg);
        api_job_error(job, 500, "internal", "the sensor cannot be read back");
    }
    if (found <= 0 || api_db_commit(job, pg) != 0) {
        json_decref(sensor);
        return;
    }
    mh_log(MH_LOG_INFO, "api: sensor %s changed by its owner", job->path_id);
    job->status = 200;
    job->out = sensor;
}
