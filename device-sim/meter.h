#ifndef SIM_METER_H
#define SIM_METER_H

/*
 * The firmware side of one simulated meter: what it runs, whether its own configuration
 * allows remote upgrades, the offer it is handling (checked with device-sim/upgrade.h), the
 * download's progress and the report it owes the service. A small state machine with no I/O:
 * worker.c sends the heartbeats and downloads and tells it what came back.
 *
 *   IDLE --offer accepted--> DOWNLOAD --image checks out--> IDLE (report installed; runs it)
 *   IDLE --offer refused---> IDLE (report refused + reason)
 *   IDLE --log entry beyond the copy--> WAIT_LOG --copy refetched--> DOWNLOAD or IDLE (report)
 *   DOWNLOAD --too long, wrong digest--> IDLE (report refused); --attempts spent--> IDLE
 *   (report failed); --offer withdrawn (403/404)--> IDLE (no report: nothing was decided)
 *
 * A meter whose flag is off never leaves IDLE: it takes no offer, so it never downloads.
 * Owned by its worker thread.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device-sim/release_log.h"
#include "device-sim/upgrade.h"

/* Download requests an offer gets before the meter reports it failed. */
#define SIM_METER_MAX_ATTEMPTS 5

typedef enum sim_meter_phase {
    SIM_METER_IDLE,
    SIM_METER_WAIT_LOG, /* the offer's log entry lies beyond the copy: waiting for a refetch */
    SIM_METER_DOWNLOAD, /* accepted before download: fetching the image */
} sim_meter_phase_t;

typedef enum sim_meter_outcome {
    SIM_OUTCOME_NONE,
    SIM_OUTCOME_INSTALLED,
    SIM_OUTCOME_FAILED,
    SIM_OUTCOME_REFUSED,
} sim_meter_outcome_t;

/* What a call asks of the caller next. */
typedef enum sim_meter_step {
    SIM_METER_NOTHING, /* no offer, or one ignored (busy, or a report still owed) */
    SIM_METER_REPORT,  /* an outcome was reached: send a heartbeat with the report */
    SIM_METER_WAIT,    /* fetch the log again (m->log_want), then sim_meter_log_ready */
    SIM_METER_FETCH,   /* (re)start the download at m->image.received */
    SIM_METER_ABANDON, /* the offer is gone: back to idle, nothing to report */
} sim_meter_step_t;

/* What a meter holds while it handles an offer: allocated when it takes one, freed when it is
 * back to idle, so that a large fleet pays for it only while it upgrades. */
typedef struct sim_meter_work {
    sim_upgrade_offer_t offer; /* the offer in hand */
    sim_image_check_t image;   /* DOWNLOAD: the image so far */
} sim_meter_work_t;

typedef struct sim_meter {
    char version[MH_RELEASE_MAX_VERSION + 1]; /* running */
    char hardware[MH_RELEASE_MAX_HARDWARE + 1];
    bool remote_upgrade;
    sim_meter_phase_t phase;
    sim_meter_work_t *work; /* owned; non-NULL exactly in WAIT_LOG and DOWNLOAD */
    uint64_t log_want;      /* WAIT_LOG: the log fetch that must have run */
    unsigned attempts;      /* DOWNLOAD: requests that ended without the whole image */
    /* The last outcome, repeated in every heartbeat until one is answered 200. */
    bool report_pending;
    char report_release[MH_RELEASE_ID_LEN + 1];
    sim_meter_outcome_t report_outcome;
    sim_upgrade_reason_t report_reason;
} sim_meter_t;

/* version and hardware are copied (truncated to their bounds: options.c checks them). */
void sim_meter_init(sim_meter_t *m, const char *version, const char *hardware, bool remote_upgrade);
void sim_meter_dispose(sim_meter_t *m);

/* "installed", "failed", "refused" ("-" for none). Static, borrowed. */
const char *sim_meter_outcome_name(sim_meter_outcome_t o);

/* The heartbeat body: firmware_version, remote_upgrade and, while one is owed, the
 * upgrade_report. Writes it NUL-terminated into buf; returns its length, or -1 if it does not
 * fit. */
int sim_meter_heartbeat_body(const sim_meter_t *m, char *buf, size_t len);

/* The answer to a heartbeat that carried the report: 200 settles it; any other final answer
 * (4xx but 429: the service will never take it) drops it; others keep it for the next one.
 * Returns true when the report is settled or dropped. */
bool sim_meter_report_answered(sim_meter_t *m, int status);

/*
 * The "upgrade" member of a 2xx heartbeat answer (borrowed; NULL or JSON null: none). Ignored
 * (NOTHING) unless the meter's flag is on, it is idle and owes no report. Otherwise checked
 * before download with key (borrowed, the pinned key), the clock now and the log copy
 * (borrowed, may be NULL): REPORT (refused, reason in m->report_reason), WAIT (m->log_want
 * must be set by the caller) or FETCH (DOWNLOAD begins at byte 0).
 */
sim_meter_step_t sim_meter_offer(sim_meter_t *m, const json_t *upgrade, EVP_PKEY *key, int64_t now,
                                 const sim_release_log_t *log);

/* WAIT_LOG: the refetch has run (fetched: it succeeded). Checks again: FETCH, or REPORT
 * (refused not_in_log or another reason; failed log_unavailable when it could not fetch). */
sim_meter_step_t sim_meter_log_ready(sim_meter_t *m, EVP_PKEY *key, int64_t now,
                                     const sim_release_log_t *log, bool fetched);

/* DOWNLOAD: body bytes in order. NOTHING, or REPORT (refused size: more than the manifest
 * says; stop reading). */
sim_meter_step_t sim_meter_data(sim_meter_t *m, const uint8_t *buf, size_t len);
/* DOWNLOAD: the server sent the whole image from byte 0 after all (200 to a Range request). */
void sim_meter_restart(sim_meter_t *m);
/* DOWNLOAD: a response ended normally: REPORT (installed, now running the manifest's
 * version; or refused size or sha256). */
sim_meter_step_t sim_meter_complete(sim_meter_t *m);
/* DOWNLOAD: the server sent or announced more than the manifest's size: REPORT (refused size). */
sim_meter_step_t sim_meter_too_long(sim_meter_t *m);
/* DOWNLOAD: a request ended without the whole image. interrupted: the meter itself cut it
 * (fault option), which does not use an attempt up. FETCH (resume from m->work->image.received), or
 * REPORT (failed download) once SIM_METER_MAX_ATTEMPTS are spent. */
sim_meter_step_t sim_meter_attempt_failed(sim_meter_t *m, bool interrupted);
/* DOWNLOAD or WAIT_LOG: the offer was withdrawn (403/404 to the download): ABANDON. */
sim_meter_step_t sim_meter_abandon(sim_meter_t *m);

#endif
