/*
 * A device's firmware upgrades, as its owner sees and decides them (docs/upgrade.md, "People"):
 * GET and PUT /v1/devices/{id}/upgrades and POST /v1/devices/{id}/upgrades/{release}/approve.
 *
 * What a device is offered is ingest's decision (upg_heartbeat, deploy/sql/010_upgrade.sql);
 * here the owner reads it, with the exact digest and signature of the release the device
 * qualifies for before anything is offered, and gives or withdraws consent. Everything runs as
 * the token's account under row-level security (deploy/sql/011_api_upgrades.sql): another
 * account's device is not found, and its offers, approvals and consent are out of reach.
 */
#include "api_internal.h"

#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the body check, on the loop thread -------------------------------------------------- */

/* {"consent": "off" | "ask" | "auto"} */
int api_upgrade_consent_check(json_t *in, char *msg, size_t msglen)
{
    const char *consent = NULL;
    json_error_t jerr;

    if (json_unpack_ex(in, &jerr, JSON_STRICT, "{s:s}", "consent", &consent) != 0) {
        snprintf(msg, msglen, "%s (fields: consent)", jerr.text);
        return -1;
    }
    if (strcmp(consent, "off") != 0 && strcmp(consent, "ask") != 0 &&
        strcmp(consent, "auto") != 0) {
        snprintf(msg, msglen, "consent: off, ask or auto");
        return -1;
    }
    return 0;
}

/* ---- reading, on a database thread ------------------------------------------------------- */

static json_t *text_or_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? json_null() : json_string(PQgetvalue(r, row, col));
}

/* The timestamps shown, as ISO 8601 text. */
#define LAST_SEEN ISO_UTC("d.last_seen")
#define OFFERED_AT ISO_UTC("o.offered_at")
#define DOWNLOADED_AT ISO_UTC("o.downloaded_at")
#define REPORTED_AT ISO_UTC("o.reported_at")
#define CHANGED_AT ISO_UTC("o.changed_at")
#define APPROVED_AT ISO_UTC("a.approved_at")

static const char device_sql[] =
    "SELECT d.did, d.id, d.hardware, d.status, d.firmware_version, d.remote_upgrade, " LAST_SEEN
    ", d.upgrade_consent FROM devices d WHERE d.id = $1";

/* The open offer: the release as the heartbeat carries it, log entry as recorded at publish. */
static const char offer_sql[] =
    "SELECT " API_RELEASE_COLUMNS ", r.log_seq, r.log_prev, r.log_hash,"
    " o.state, " OFFERED_AT ", " DOWNLOADED_AT " FROM upgrade_offers o"
    " JOIN releases r ON r.id = o.release_id JOIN release_keys k ON k.key_id = r.key_id"
    " WHERE o.did = $1::bigint AND o.state IN ('offered', 'downloaded')"
    " ORDER BY o.offered_at DESC LIMIT 1";

/* The newest release the device qualifies for; api_upgrade_candidate answers only for a
 * device of the bound account. */
static const char available_sql[] =
    "SELECT " API_RELEASE_COLUMNS ", r.log_seq, r.log_prev, r.log_hash, c.approved"
    " FROM api_upgrade_candidate($1) c JOIN releases r ON r.id = c.release_id"
    " JOIN release_keys k ON k.key_id = r.key_id";

/* The history: the newest 100 offers, and the newest 100 approvals. */
static const char history_sql[] =
    "SELECT o.release_id, r.version, o.state, o.reason, " OFFERED_AT ", " DOWNLOADED_AT
    ", " REPORTED_AT ", " CHANGED_AT " FROM upgrade_offers o"
    " JOIN releases r ON r.id = o.release_id WHERE o.did = $1::bigint"
    " ORDER BY o.changed_at DESC, o.offered_at DESC, o.release_id LIMIT 100";

static const char approvals_sql[] =
    "SELECT a.release_id, r.version, " APPROVED_AT " FROM upgrade_approvals a"
    " JOIN releases r ON r.id = a.release_id WHERE a.did = $1::bigint"
    " ORDER BY a.approved_at DESC, a.release_id LIMIT 100";

/* Runs sql with one parameter; NULL after api_db_fail. */
static PGresult *query(api_job_t *job, PGconn *pg, const char *sql, const char *value)
{
    const char *values[1] = {value};
    return api_db_exec(job, pg, sql, 1, values, "reading upgrades");
}

static json_t *history_json(const PGresult *r)
{
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(
            list,
            json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o}", "release", PQgetvalue(r, i, 0),
                      "version", PQgetvalue(r, i, 1), "state", PQgetvalue(r, i, 2), "reason",
                      text_or_null(r, i, 3), "offered_at", text_or_null(r, i, 4), "downloaded_at",
                      text_or_null(r, i, 5), "reported_at", text_or_null(r, i, 6), "changed_at",
                      text_or_null(r, i, 7)));
    return list;
}

static json_t *approvals_json(const PGresult *r)
{
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(list, json_pack("{s:s, s:s, s:o}", "release", PQgetvalue(r, i, 0),
                                              "version", PQgetvalue(r, i, 1), "approved_at",
                                              text_or_null(r, i, 2)));
    return list;
}

/*
 * In the open transaction: the upgrades of the bound account's device job->path_id, as GET
 * answers them, into *out (owned). Returns 1; 0 when the account has no such device; -1 after
 * api_db_fail.
 */
static int upgrades_read(api_job_t *job, PGconn *pg, json_t **out)
{
    PGresult *r = NULL;
    json_t *o = NULL;
    char did[24];
    int found = -1;

    *out = NULL;
    if ((r = query(job, pg, device_sql, job->path_id)) == NULL)
        goto done;
    if (PQntuples(r) != 1) {
        found = 0;
        goto done;
    }
    snprintf(did, sizeof(did), "%s", PQgetvalue(r, 0, 0));
    bool ask = strcmp(PQgetvalue(r, 0, 7), "ask") == 0;
    json_t *ru = PQgetisnull(r, 0, 5) ? json_null() : json_boolean(PQgetvalue(r, 0, 5)[0] == 't');
    o = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:s}", "device", PQgetvalue(r, 0, 1), "hardware",
                  PQgetvalue(r, 0, 2), "status", PQgetvalue(r, 0, 3), "firmware_version",
                  text_or_null(r, 0, 4), "remote_upgrade", ru, "last_seen", text_or_null(r, 0, 6),
                  "consent", PQgetvalue(r, 0, 7));
    PQclear(r);

    if ((r = query(job, pg, offer_sql, did)) == NULL)
        goto done;
    json_t *offer = json_null();
    if (PQntuples(r) == 1) {
        offer = api_release_json(r, 0, 0);
        json_object_set_new(offer, "state", json_string(PQgetvalue(r, 0, API_RELEASE_NCOLUMNS)));
        json_object_set_new(offer, "offered_at", text_or_null(r, 0, API_RELEASE_NCOLUMNS + 1));
        json_object_set_new(offer, "downloaded_at", text_or_null(r, 0, API_RELEASE_NCOLUMNS + 2));
    }
    json_object_set_new(o, "offer", offer);
    PQclear(r);

    if ((r = query(job, pg, available_sql, job->path_id)) == NULL)
        goto done;
    json_t *available = json_null();
    if (PQntuples(r) == 1) {
        bool approved = PQgetvalue(r, 0, API_RELEASE_NCOLUMNS)[0] == 't';
        available = api_release_json(r, 0, 0);
        json_object_set_new(available, "approved", json_boolean(approved));
        /* Under ask, the owner's approval is what this release still waits for. */
        json_object_set_new(available, "awaiting_approval", json_boolean(ask && !approved));
    }
    json_object_set_new(o, "available", available);
    PQclear(r);

    if ((r = query(job, pg, history_sql, did)) == NULL)
        goto done;
    json_object_set_new(o, "history", history_json(r));
    PQclear(r);

    if ((r = query(job, pg, approvals_sql, did)) == NULL)
        goto done;
    json_object_set_new(o, "approvals", approvals_json(r));
    *out = o;
    o = NULL;
    found = 1;
done:
    PQclear(r);
    json_decref(o);
    return found;
}

/* Reads the upgrades into the job's answer and commits. */
static void answer_upgrades(api_job_t *job, PGconn *pg)
{
    json_t *out = NULL;
    int found = upgrades_read(job, pg, &out);
    if (found < 0)
        return;
    if (api_db_commit(job, pg) != 0) {
        json_decref(out);
        return;
    }
    if (found == 0) {
        /* Another account's, or none: the same answer, so existence does not leak. */
        api_job_error(job, 404, "not_found", "no such device");
        return;
    }
    job->status = 200;
    job->out = out;
}

void api_run_upgrades_get(api_job_t *job, PGconn *pg)
{
    /* One snapshot: the offer, the candidate and the history agree with each other. */
    if (api_db_begin_snapshot_as(job, pg) < 0)
        return;
    answer_upgrades(job, pg);
}

/* ---- changes, on a database thread ------------------------------------------------------- */

/* Ends the open transaction, which changed nothing, before a refusal. */
static void rollback(PGconn *pg)
{
    PGresult *r = PQexec(pg, "ROLLBACK");
    PQclear(r);
}

/* Runs a statement of the change; false after api_db_fail. Its result is dropped. */
static bool step(api_job_t *job, PGconn *pg, const char *sql, int n, const char *const *values)
{
    PGresult *r = api_db_exec(job, pg, sql, n, values, "changing upgrades");
    bool ok = r != NULL;
    PQclear(r);
    return ok;
}

/*
 * Begins the change as the bound account (its id into acc[24]) and reads the device of the path
 * with sql ($1: its id). Returns the owned one-row result, or NULL after answering: 404 for
 * another account's device or none (row-level security hides the one like the other).
 */
static PGresult *owned_device(api_job_t *job, PGconn *pg, const char *sql, char *acc)
{
    long long account = api_db_begin_as(job, pg);
    if (account < 0)
        return NULL;
    snprintf(acc, 24, "%lld", account);
    PGresult *r = query(job, pg, sql, job->path_id);
    if (r != NULL && PQntuples(r) != 1) {
        PQclear(r);
        rollback(pg);
        api_job_error(job, 404, "not_found", "no such device");
        return NULL;
    }
    return r;
}

void api_run_upgrades_put(api_job_t *job, PGconn *pg)
{
    const char *consent = json_string_value(json_object_get(job->in, "consent"));
    char acc[24], before[8];
    PGresult *r =
        owned_device(job, pg, "SELECT upgrade_consent FROM devices WHERE id = $1 FOR UPDATE", acc);
    if (r == NULL)
        return;
    snprintf(before, sizeof(before), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    /* Only a change is a change: the same consent again records nothing. */
    if (strcmp(before, consent) != 0) {
        const char *set[2] = {job->path_id, consent};
        const char *audit[4] = {acc, job->path_id, before, consent};
        if (!step(job, pg, "UPDATE devices SET upgrade_consent = $2 WHERE id = $1", 2, set) ||
            !step(job, pg,
                  "INSERT INTO audit_log (account_id, actor_id, kind, device_id, detail)"
                  " VALUES ($1::bigint, $1::bigint, 'upgrade_consent_changed', $2,"
                  " jsonb_build_object('before', $3::text, 'after', $4::text))",
                  4, audit))
            return;
        mh_log(MH_LOG_INFO, "api: upgrade consent of device %s changed by its owner: %s -> %s",
               job->path_id, before, consent);
    }
    answer_upgrades(job, pg);
}

void api_run_upgrade_approve(api_job_t *job, PGconn *pg)
{
    char acc[24], did[24], hardware[40], consent[8];
    PGresult *r = owned_device(
        job, pg, "SELECT did, hardware, upgrade_consent FROM devices WHERE id = $1", acc);
    if (r == NULL)
        return;
    snprintf(did, sizeof(did), "%s", PQgetvalue(r, 0, 0));
    snprintf(hardware, sizeof(hardware), "%s", PQgetvalue(r, 0, 1));
    snprintf(consent, sizeof(consent), "%s", PQgetvalue(r, 0, 2));
    PQclear(r);

    r = query(job, pg, "SELECT hardware FROM releases WHERE id = $1", job->sub_id);
    if (r == NULL)
        return;
    if (PQntuples(r) != 1) {
        PQclear(r);
        rollback(pg);
        api_job_error(job, 404, "unknown_release", "no such release: %s", job->sub_id);
        return;
    }
    if (strcmp(PQgetvalue(r, 0, 0), hardware) != 0) {
        api_job_error(job, 409, "wrong_hardware",
                      "release %s is for hardware %.32s; this device is %.32s", job->sub_id,
                      PQgetvalue(r, 0, 0), hardware);
        PQclear(r);
        rollback(pg);
        return;
    }
    PQclear(r);

    /* Approving twice is approving once: the first approval, and its one audit entry, stay. */
    const char *add[3] = {did, job->sub_id, acc};
    r = api_db_exec(job, pg,
                    "INSERT INTO upgrade_approvals (did, release_id, account_id)"
                    " VALUES ($1::bigint, $2, $3::bigint)"
                    " ON CONFLICT (did, release_id) DO NOTHING RETURNING release_id",
                    3, add, "approving a release");
    if (r == NULL)
        return;
    int added = PQntuples(r);
    PQclear(r);
    if (added == 1) {
        const char *audit[4] = {acc, job->path_id, job->sub_id, consent};
        if (!step(job, pg,
                  "INSERT INTO audit_log (account_id, actor_id, kind, device_id, detail)"
                  " SELECT $1::bigint, $1::bigint, 'firmware_approved', $2,"
                  " jsonb_build_object('release', r.id, 'version', r.version,"
                  " 'image_sha256', r.image_sha256, 'consent', $4::text)"
                  " FROM releases r WHERE r.id = $3",
                  4, audit))
            return;
        mh_log(MH_LOG_INFO, "api: release %s approved for device %s by its owner", job->sub_id,
               job->path_id);
    }
    answer_upgrades(job, pg);
}
