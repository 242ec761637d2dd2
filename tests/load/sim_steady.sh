#!/usr/bin/env bash
#
# Steady load: 200 devices with 4 sensors, a reading and a post every second, for 10 s, over
# keep-alive mutual TLS; meterhub-sim provisions the fleet itself and proves with --verify
# that every acknowledged reading is stored exactly once and nothing else is.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"

t_init sim_steady
T_RATE_PER_S=100000 T_RATE_BURST=100000 T_INGEST_WORKERS=0 t_start_ingest
t_start_writer

rc=0
"$MH_BIN/meterhub-sim" --provision --devices 200 --sensors-per-device 4 --account load \
    --fleet "$T_WORK/fleet" --pki "$T_PKI" --pg "$T_PG_URI" \
    --target "https://127.0.0.1:$T_INGEST_PORT" --ca "$T_PKI/ca.crt" \
    --scenario steady --post-every 1 --interval 1 --duration 10 --verify --quiet \
    --json "$T_WORK/steady.json" >"$T_WORK/steady.out" 2>&1 || rc=$?
sed 's/^/# /' "$T_WORK/steady.out"
t_eq "meterhub-sim exits 0 (run completed, verified)" 0 "$rc"

json_int() {
    grep -o "\"$1\": *[0-9]*" "$T_WORK/steady.json" | head -n 1 | grep -o '[0-9]*$'
}
t_like "verification passed" 'verify +passed' "$(cat "$T_WORK/steady.out")"
# 200 devices x 4 sensors, one post a second each, for about 10 s (less the first second's
# phase spread): well over 4,000 requests and readings.
t_ok "requests were made" test "$(json_int total)" -gt 4000
t_ok "readings were acknowledged" test "$(json_int acked)" -gt 4000
t_eq "no connection errors" 0 "$(json_int connection_errors)"
t_ok "the fleet can be loaded again" test -s "$T_WORK/fleet/fleet.json"

t_done
