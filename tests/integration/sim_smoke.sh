#!/usr/bin/env bash
#
# meterhub-sim against the real stack: 20 devices for 3 s in each connection mode (keep-alive
# in closed loop, reconnect and resume at a post a second), each run verified reading by
# reading in PostgreSQL (--verify); then a short storm against a second ingest whose rate limit
# is low enough that the storm meets 429s and must honour them; then a short ramp; then its
# usage errors. Resume mode must resume TLS sessions.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"

t_init sim_smoke
T_RATE_PER_S=100000 T_RATE_BURST=100000 t_start_ingest
t_start_writer

fleet="$T_WORK/fleet"
mkdir -p "$fleet"
t_admin device add --account sim --sensors 4 --count 20 --out "$fleet" >"$fleet/fleet.json"
t_sync_directory

sim() {
    "$MH_BIN/meterhub-sim" --fleet "$fleet" --target "https://127.0.0.1:$T_INGEST_PORT" \
        --ca "$T_PKI/ca.crt" --pg "$T_PG_URI" --quiet "$@"
}

# json_int FILE KEY: the first integer value of "KEY" in a --json report.
json_int() {
    grep -o "\"$2\": *[0-9]*" "$1" | head -n 1 | grep -o '[0-9]*$'
}

run_mode() {
    local name=$1 rc=0
    shift
    sim --duration 3 --verify --json "$T_WORK/$name.json" "$@" >"$T_WORK/$name.out" 2>&1 || rc=$?
    t_eq "$name: exit 0 (run completed, verified)" 0 "$rc"
    ((rc == 0)) || sed 's/^/#   /' "$T_WORK/$name.out" | tail -n 20
    t_like "$name: verification passed" 'verify +passed: acked [1-9]' "$(cat "$T_WORK/$name.out")"
    t_ok "$name: requests succeeded" test "$(json_int "$T_WORK/$name.json" ok)" -gt 0
}

# Closed loop: a week of backfill at one reading a minute, batches of 60.
run_mode keepalive --connections keepalive --post-every 0 --interval 60 --batch 60
t_eq "keepalive: one handshake per device" 20 "$(json_int "$T_WORK/keepalive.json" handshakes)"
run_mode reconnect --connections reconnect --post-every 1 --interval 1
t_ok "reconnect: a handshake per request" \
    test "$(json_int "$T_WORK/reconnect.json" handshakes)" -gt 20
run_mode resume --connections resume --post-every 1 --interval 1
t_ok "resume: handshakes resumed a TLS session" \
    test "$(json_int "$T_WORK/resume.json" resumed)" -gt 0

# Storm: its own fleet (the runs above stored readings for the last minutes: a backlog of the
# same sensors would collide with them), 10 minutes of backlog at a reading every 10 s, i.e.
# 61 readings per sensor in batches of 30: 12 batches per device at once, against a limit of
# 4 requests a second (burst 4).
storm_fleet="$T_WORK/storm-fleet"
mkdir -p "$storm_fleet"
t_admin device add --account sim --sensors 4 --count 20 --out "$storm_fleet" \
    >"$storm_fleet/fleet.json"
T_RATE_PER_S=4 T_RATE_BURST=4 t_start_ingest storm
t_sync_directory
rc=0
"$MH_BIN/meterhub-sim" --fleet "$storm_fleet" --target "https://127.0.0.1:${T_LISTEN_PORTS[storm]}" \
    --ca "$T_PKI/ca.crt" --pg "$T_PG_URI" --quiet --scenario storm --devices 20 --outage 600 \
    --interval 10 --batch 30 --post-every 5 --duration 5 --verify --json "$T_WORK/storm.json" \
    >"$T_WORK/storm.out" 2>&1 || rc=$?
sed 's/^/# /' "$T_WORK/storm.out"
t_eq "storm: exit 0 (run completed, verified)" 0 "$rc"
storm_out="$(cat "$T_WORK/storm.out")"
t_like "storm: verification passed" 'verify +passed: acked [1-9]' "$storm_out"
t_like "storm: every device delivered its backlog" 'storm +outage 600 s, backlog [0-9]+ readings, recovered in' "$storm_out"
t_ok "storm: the rate limit answered 429" test "$(json_int "$T_WORK/storm.json" status_429)" -gt 0
t_eq "storm: every retry honoured Retry-After" 0 "$(json_int "$T_WORK/storm.json" retry_after_early)"
t_eq "storm: every retry resent the refused batch" 0 "$(json_int "$T_WORK/storm.json" resent_changed)"

# Ramp: 5 devices, 5 more every second, under a p99 bound no loopback run reaches: four
# steps, then the fleet is exhausted and the knee is the last step. Its own fleet too.
ramp_fleet="$T_WORK/ramp-fleet"
mkdir -p "$ramp_fleet"
t_admin device add --account sim --sensors 4 --count 20 --out "$ramp_fleet" \
    >"$ramp_fleet/fleet.json"
t_sync_directory
rc=0
"$MH_BIN/meterhub-sim" --fleet "$ramp_fleet" --target "https://127.0.0.1:$T_INGEST_PORT" \
    --ca "$T_PKI/ca.crt" --pg "$T_PG_URI" --quiet --scenario ramp --ramp-start 5 --ramp-step 5 \
    --ramp-every 1 --ramp-p99-ms 5000 --post-every 1 --interval 1 --verify \
    --json "$T_WORK/ramp.json" >"$T_WORK/ramp.out" 2>&1 || rc=$?
sed 's/^/# /' "$T_WORK/ramp.out"
t_eq "ramp: exit 0 (run completed, verified)" 0 "$rc"
ramp_out="$(cat "$T_WORK/ramp.out")"
t_like "ramp: verification passed" 'verify +passed: acked [1-9]' "$ramp_out"
t_like "ramp: ended with the fleet" 'ended: every device ran within bounds' "$ramp_out"
t_like "ramp: four steps, the knee the last" 'knee +step 4: 20 devices' "$ramp_out"

rc=0
sim --scenario bogus --duration 1 >"$T_WORK/usage.out" 2>&1 || rc=$?
t_eq "an unknown scenario is a usage error" 2 "$rc"
t_like "... saying so" 'unknown scenario' "$(cat "$T_WORK/usage.out")"
rc=0
sim --devices 21 --duration 1 >"$T_WORK/usage.out" 2>&1 || rc=$?
t_eq "more devices than the fleet is a usage error" 2 "$rc"

t_done
