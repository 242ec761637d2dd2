#ifndef SIM_OPTIONS_H
#define SIM_OPTIONS_H

/*
 * Command line of meterhub-sim. Parsing is pure (no I/O besides reading MH_INGEST_URL,
 * MH_CA_CERT, MH_PG_URI and MH_PKI_DIR from the environment for the defaults), so unit tests
 * drive it directly. Strings in sim_options_t are borrowed from argv or the environment.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sim_conn_mode {
    SIM_CONN_KEEPALIVE, /* one connection per device, reused */
    SIM_CONN_RECONNECT, /* a new connection (full handshake) per request */
    SIM_CONN_RESUME,    /* a new connection per request, resuming the last TLS session */
} sim_conn_mode_t;

typedef enum sim_scenario {
    SIM_SCENARIO_STEADY,
    SIM_SCENARIO_STORM,     /* a backlog of --outage seconds, posted by every device at once */
    SIM_SCENARIO_MIXED_BAD, /* a --bad-fraction of the devices misbehave (device-sim/bad.h) */
    SIM_SCENARIO_RAMP,      /* more devices step by step until latency or errors give way */
    SIM_SCENARIO_UPGRADE,   /* a firmware campaign: until every meter with the flag on and its
                             * owner's consent (--expect-consent) has an outcome */
} sim_scenario_t;

/* Bounds, checked by the parser. */
#define SIM_MAX_DEVICES 1000000u
#define SIM_MAX_SENSORS 64u
#define SIM_MAX_THREADS 256u
#define SIM_MAX_BATCH 100000u
/* Without --duration or --max-requests, a run lasts this long: a load tool must never run
 * unbounded by accident. */
#define SIM_DEFAULT_DURATION_S 10.0
/* The upgrade scenario's defaults: its time bound (it ends earlier once every expected meter
 * has an outcome) and how often its meters send heartbeats (which carry the offers). */
#define SIM_UPGRADE_DURATION_S 120.0
#define SIM_UPGRADE_HEARTBEAT_S 5u
/* Longest firmware version a meter runs (the manifest's bound). */
#define SIM_MAX_FIRMWARE_VERSION 39u

typedef struct sim_options {
    uint32_t devices;            /* 0: every device of a loaded fleet */
    uint32_t sensors_per_device; /* when provisioning; default 4 */
    uint32_t interval_s;         /* seconds between readings; default 60 */
    uint32_t post_every_s;       /* seconds between posts; 0 = closed loop; default 60 */
    uint32_t batch;              /* most readings per sensor per post; default 100 */
    uint32_t backfill_days;      /* closed loop: simulated time starts this far back; 7 */
    uint32_t heartbeat_every_s;  /* 0: no heartbeats; default 300 */
    uint32_t buffer;             /* most readings kept per sensor; default 10000 */
    uint32_t timeout_s;          /* per request (connect included); default 10 */
    uint32_t verify_timeout_s;   /* how long --verify waits for PostgreSQL; default 60 */
    sim_scenario_t scenario;
    uint32_t outage_s;   /* storm: seconds of readings each device holds at the start; 3600 */
    double bad_fraction; /* mixed-bad: the share of misbehaving devices, 0..1; 0.1 */
    uint32_t ramp_start; /* ramp: devices of the first step; 0: 10% of the run's devices */
    uint32_t ramp_step;  /* ramp: devices added per step; 0: 10% of the run's devices */
    double ramp_every_s; /* ramp: seconds per step; 2 */
    double ramp_p99_ms;  /* ramp: a step's p99 above this ends the ramp; 50 */
    double duration_s;   /* > 0; 0 only for a ramp without bounds (the fleet bounds it) */
    double warmup_s;     /* latencies of requests sent before this are not recorded; 0 */
    uint64_t max_requests;
    sim_conn_mode_t conn_mode;
    uint32_t threads; /* 0: one per online CPU */
    bool verify;
    bool quiet; /* no progress line */
    bool provision;
    uint64_t seed;
    const char *json_path;
    const char *fleet_dir;
    const char *fleet_json;
    const char *account;
    const char *pki_dir;
    const char *target; /* https URL */
    const char *ca_file;
    const char *pg_uri;
    const char *log_level;
    /* Firmware upgrades (device-sim/meter.h). */
    const char *firmware_version; /* what the meters run; "1.0.0" */
    const char *hardware;         /* what they are; "flm02" */
    double remote_upgrade;        /* share of meters whose own flag allows upgrades, 0..1; 0 */
    const char *release_key;      /* the pinned release public key (PEM) */
    const char *release_log;      /* https URL of GET /v1/firmware, or a saved answer */
    const char *api_ca;           /* CA of that URL; default: ca_file */
    const char *expect_consent;   /* file of the device ids whose owners consented */
    uint64_t download_drop_after; /* fault: cut each meter's first download after N bytes */
    bool heartbeat_set;           /* --heartbeat-every was given */
} sim_options_t;

typedef enum sim_parse_result {
    SIM_PARSE_ERROR = -1, /* usage error: message in err */
    SIM_PARSE_OK = 0,
    SIM_PARSE_HELP = 1, /* --help: print sim_options_usage() and exit 0 */
} sim_parse_result_t;

/*
 * Parses argv into *out (defaults first, then the environment, then the arguments), and
 * checks the combination: a fleet source (--fleet or --provision), a target and a CA, --pg
 * when verifying, provisioning or running mixed-bad (it revokes devices), --devices when
 * provisioning, a pinned key and a log source when any meter may take offers, a consent list
 * for the upgrade scenario. Any thread.
 */
sim_parse_result_t sim_options_parse(int argc, char **argv, sim_options_t *out, char *err,
                                     size_t errlen);

/* The --help text. Static, borrowed. */
const char *sim_options_usage(void);

/* "steady", "storm", "mixed-bad", "ramp", "upgrade". Static, borrowed. */
const char *sim_scenario_name(sim_scenario_t scenario);

/* "keepalive", "reconnect", "resume". Static, borrowed. */
const char *sim_conn_mode_name(sim_conn_mode_t mode);

#endif
