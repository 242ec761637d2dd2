/* The firmware side of one simulated meter: see meter.h. */
#include "device-sim/meter.h"

#include "common/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sim_meter_init(sim_meter_t *m, const char *version, const char *hardware, bool remote_upgrade)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->version, sizeof(m->version), "%s", version);
    snprintf(m->hardware, sizeof(m->hardware), "%s", hardware);
    m->remote_upgrade = remote_upgrade;
}

static void drop_offer(sim_meter_t *m)
{
    if (m->work != NULL) {
        sim_upgrade_offer_dispose(&m->work->offer);
        sim_image_check_dispose(&m->work->image);
        free(m->work);
        m->work = NULL;
    }
    m->attempts = 0;
    m->log_want = 0;
    m->phase = SIM_METER_IDLE;
}

void sim_meter_dispose(sim_meter_t *m)
{
    drop_offer(m);
}

const char *sim_meter_outcome_name(sim_meter_outcome_t o)
{
    switch (o) {
    case SIM_OUTCOME_NONE:
        return "-";
    case SIM_OUTCOME_INSTALLED:
        return "installed";
    case SIM_OUTCOME_FAILED:
        return "failed";
    case SIM_OUTCOME_REFUSED:
        return "refused";
    }
    return "?";
}

int sim_meter_heartbeat_body(const sim_meter_t *m, char *buf, size_t len)
{
    json_t *o = json_pack("{s:s, s:b}", "firmware_version", m->version, "remote_upgrade",
                          m->remote_upgrade);
    int rc = -1;

    if (o == NULL)
        return -1;
    if (m->report_pending) {
        json_t *r = json_pack("{s:s, s:s}", "release", m->report_release, "outcome",
                              sim_meter_outcome_name(m->report_outcome));
        if (r != NULL && m->report_outcome != SIM_OUTCOME_INSTALLED)
            json_object_set_new(r, "reason",
                                json_string(sim_upgrade_reason_name(m->report_reason)));
        if (r == NULL || json_object_set_new(o, "upgrade_report", r) != 0)
            goto out;
    }
    size_t n = json_dumpb(o, buf, len, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (n == 0 || n >= len)
        goto out;
    buf[n] = '\0';
    rc = (int)n;
out:
    json_decref(o);
    return rc;
}

bool sim_meter_report_answered(sim_meter_t *m, int status)
{
    if (!m->report_pending)
        return true;
    /* 429 and 5xx (503 upgrade_unavailable) say "later"; any other refusal is final. */
    if (status == 429 || status >= 500 || status < 200)
        return false;
    m->report_pending = false;
    return true;
}

/* An outcome: the report to send, and the meter back to idle. */
static sim_meter_step_t finish(sim_meter_t *m, sim_meter_outcome_t outcome,
                               sim_upgrade_reason_t reason)
{
    const sim_upgrade_offer_t *o = &m->work->offer;
    memcpy(m->report_release, o->release, sizeof(m->report_release));
    m->report_outcome = outcome;
    m->report_reason = reason;
    m->report_pending = true;
    /* Installed: from now on the meter runs it (and says so in every heartbeat). */
    if (outcome == SIM_OUTCOME_INSTALLED && o->parsed)
        snprintf(m->version, sizeof(m->version), "%s", o->m.version);
    drop_offer(m);
    return SIM_METER_REPORT;
}

static sim_meter_step_t refuse(sim_meter_t *m, sim_upgrade_reason_t reason)
{
    return finish(m,
                  sim_upgrade_reason_is_failure(reason) ? SIM_OUTCOME_FAILED : SIM_OUTCOME_REFUSED,
                  reason);
}

/* The verdict of a check, as a step. */
static sim_meter_step_t decide(sim_meter_t *m, EVP_PKEY *key, int64_t now,
                               const sim_release_log_t *log, bool may_wait)
{
    sim_upgrade_reason_t reason = SIM_UPG_OK;
    sim_meter_self_t self = {key, m->hardware, m->version, now};

    sim_meter_work_t *wk = m->work;

    switch (sim_upgrade_offer_check(&wk->offer, &self, log, &reason)) {
    case SIM_UPGRADE_ACCEPT:
        if (sim_image_check_init(&wk->image, wk->offer.m.size, wk->offer.m.sha256) != 0)
            return refuse(m, SIM_UPG_DOWNLOAD);
        m->phase = SIM_METER_DOWNLOAD;
        m->attempts = 0;
        return SIM_METER_FETCH;
    case SIM_UPGRADE_NEED_LOG:
        if (may_wait) {
            m->phase = SIM_METER_WAIT_LOG;
            return SIM_METER_WAIT;
        }
        return refuse(m, SIM_UPG_NOT_IN_LOG);
    case SIM_UPGRADE_REFUSE:
        break;
    }
    return refuse(m, reason);
}

sim_meter_step_t sim_meter_offer(sim_meter_t *m, const json_t *upgrade, EVP_PKEY *key, int64_t now,
                                 const sim_release_log_t *log)
{
    sim_upgrade_reason_t reason = SIM_UPG_OK;

    if (upgrade == NULL || json_is_null(upgrade))
        return SIM_METER_NOTHING;
    /* The flag is the meter's own "no": it never acts on an offer, whatever the service says. */
    if (!m->remote_upgrade || m->phase != SIM_METER_IDLE || m->report_pending)
        return SIM_METER_NOTHING;
    m->work = mh_calloc(1, sizeof(*m->work));
    if (sim_upgrade_offer_parse(upgrade, &m->work->offer, &reason) != 0) {
        /* Reported against the release it names, when it names one. */
        const char *r = json_string_value(json_object_get(upgrade, "release"));
        snprintf(m->work->offer.release, sizeof(m->work->offer.release), "%s", r ? r : "");
        return refuse(m, reason);
    }
    return decide(m, key, now, log, true);
}

sim_meter_step_t sim_meter_log_ready(sim_meter_t *m, EVP_PKEY *key, int64_t now,
                                     const sim_release_log_t *log, bool fetched)
{
    if (m->phase != SIM_METER_WAIT_LOG)
        return SIM_METER_NOTHING;
    m->phase = SIM_METER_IDLE;
    if (!fetched)
        return refuse(m, SIM_UPG_LOG_UNAVAILABLE);
    return decide(m, key, now, log, false);
}

sim_meter_step_t sim_meter_data(sim_meter_t *m, const uint8_t *buf, size_t len)
{
    if (m->phase != SIM_METER_DOWNLOAD)
        return SIM_METER_NOTHING;
    sim_upgrade_reason_t r = sim_image_check_feed(&m->work->image, buf, len);
    return r == SIM_UPG_OK ? SIM_METER_NOTHING : refuse(m, r);
}

void sim_meter_restart(sim_meter_t *m)
{
    if (m->phase == SIM_METER_DOWNLOAD && sim_image_check_restart(&m->work->image) != 0)
        refuse(m, SIM_UPG_DOWNLOAD);
}

sim_meter_step_t sim_meter_complete(sim_meter_t *m)
{
    if (m->phase != SIM_METER_DOWNLOAD)
        return SIM_METER_NOTHING;
    sim_upgrade_reason_t r = sim_image_check_finish(&m->work->image);
    if (r == SIM_UPG_OK)
        return finish(m, SIM_OUTCOME_INSTALLED, SIM_UPG_OK);
    return refuse(m, r);
}

sim_meter_step_t sim_meter_too_long(sim_meter_t *m)
{
    if (m->phase != SIM_METER_DOWNLOAD)
        return SIM_METER_NOTHING;
    return refuse(m, SIM_UPG_SIZE);
}

sim_meter_step_t sim_meter_attempt_failed(sim_meter_t *m, bool interrupted)
{
    if (m->phase != SIM_METER_DOWNLOAD)
        return SIM_METER_NOTHING;
    if (!interrupted && ++m->attempts >= SIM_METER_MAX_ATTEMPTS)
        return refuse(m, SIM_UPG_DOWNLOAD);
    return SIM_METER_FETCH;
}

sim_meter_step_t sim_meter_abandon(sim_meter_t *m)
{
    if (m->phase == SIM_METER_IDLE)
        return SIM_METER_NOTHING;
    drop_offer(m);
    return SIM_METER_ABANDON;
}
