#!/usr/bin/env bash
#
# Mixed good and bad devices: 50 devices with 4 sensors, a fifth of them misbehaving (two of
# each kind: a certificate from another CA, revoked, another device's sensor, malformed bodies,
# a clock a day ahead), a reading and a post every second, for 10 s. meterhub-sim provisions the
# fleet itself (the revoked kind is revoked for good: the fleet is made for this run), checks
# every bad request's refusal, and proves with --verify that the good devices lost nothing and
# that nothing was stored for the sensors the bad devices attacked.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"

t_init sim_mixed_bad
T_RATE_PER_S=100000 T_RATE_BURST=100000 t_start_ingest
t_start_writer

rc=0
"$MH_BIN/meterhub-sim" --provision --devices 50 --sensors-per-device 4 --account mixed \
    --fleet "$T_WORK/fleet" --pki "$T_PKI" --pg "$T_PG_URI" \
    --target "https://127.0.0.1:$T_INGEST_PORT" --ca "$T_PKI/ca.crt" \
    --scenario mixed-bad --bad-fraction 0.2 --post-every 1 --interval 1 --duration 10 \
    --verify --quiet --json "$T_WORK/mixed.json" >"$T_WORK/mixed.out" 2>&1 || rc=$?
sed 's/^/# /' "$T_WORK/mixed.out"
t_eq "meterhub-sim exits 0 (every refusal as expected, good devices verified)" 0 "$rc"

out="$(cat "$T_WORK/mixed.out")"
t_like "verification of the good devices passed" 'verify +passed: acked [1-9]' "$out"
t_like "ten bad devices, no failure of a good one" \
    'mixed-bad +10 bad devices of 50 \(fraction 0.2\); good devices: 0 answers other' "$out"
for kind in wrong-ca revoked other-sensor malformed future-clock; do
    t_like "$kind: exercised, every answer the expected refusal" \
        " $kind +devices 2, requests [1-9][0-9]*, expected [^:]*: got expected [1-9][0-9]*, got unexpected 0 " \
        "$out"
done
t_ok "the JSON report has the kinds" grep -q '"other-sensor"' "$T_WORK/mixed.json"

t_done
