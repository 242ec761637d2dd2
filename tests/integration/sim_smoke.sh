#!/usr/bin/env bash
#
# meterhub-sim against the real stack: 20 devices for 3 s in each connection mode (keep-alive
# in closed loop, reconnect and resume at a post a second), each run verified reading by
# reading in PostgreSQL (--verify); then its usage errors. Resume mode must resume TLS sessions.
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

rc=0
sim --scenario storm --duration 1 >"$T_WORK/usage.out" 2>&1 || rc=$?
t_eq "an unimplemented scenario is a usage error" 2 "$rc"
t_like "... saying so" 'not implemented yet' "$(cat "$T_WORK/usage.out")"
rc=0
sim --devices 21 --duration 1 >"$T_WORK/usage.out" 2>&1 || rc=$?
t_eq "more devices than the fleet is a usage error" 2 "$rc"

t_done
