#!/usr/bin/env bash
#
# A device posts JSON and protobuf batches and a heartbeat: every reading ends up in PostgreSQL
# exactly once, the hourly and daily rollups match the raw rows, and posting the same batches
# again changes nothing.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

t_init ingest_roundtrip
t_start_ingest
t_start_writer

dev="$(t_device acme 4)"
counter="$(t_sensor "$dev" 0)"
gauge="$(t_sensor "$dev" 3)"
now=$(date +%s)
start=$(((now - 3 * 86400) / 3600 * 3600 + 17)) # 50 hours of readings, over three days

json="$(json_series "$start" 1800 100 1000.5 12.25)"
code="$(t_curl "$dev" "/sensor/$counter" -H 'Content-Type: application/json' --data-binary "$json")"
t_eq "JSON batch of 100 readings accepted" 200 "$code"
t_eq "the answer counts the readings" '{"accepted":100}' "$(cat "$T_BODY")"

pb_series "$T_WORK/batch.pb" "$start" 90 80 230.0 -1.5
code="$(t_curl "$dev" "/sensor/$gauge" -H 'Content-Type: application/x-protobuf' \
    --data-binary "@$T_WORK/batch.pb")"
t_eq "protobuf batch of 80 readings accepted" 200 "$code"

code="$(t_curl "$dev" "/device/$(device_id "$dev")" -H 'Content-Type: application/json' \
    --data-binary '{"firmware_version":"2.4.1","remote_upgrade":true,"uptime":3600}')"
t_eq "heartbeat accepted" 200 "$code"
t_like "heartbeat answers the time and no offer" '^\{"time":[0-9]+,"upgrade":null\}$' "$(cat "$T_BODY")"

t_ok "the writer drains the queue" t_wait_until 30 drained
t_eq "100 counter readings stored" 100 "$(stored_count "$counter")"
t_eq "80 gauge readings stored" 80 "$(stored_count "$gauge")"

expected="$(printf 'ts,value\n'; for ((i = 0; i < 100; i++)); do
    awk -v t=$((start + i * 1800)) -v i="$i" 'BEGIN { printf "%d,%.17g\n", t, 1000.5 + 12.25 * i }'
done)"
t_eq "meterhub-admin readings shows exactly what was posted" "$expected" \
    "$(t_admin readings "$counter")"
t_eq "hourly rollups match the raw rows" 0 "$(rollup_mismatches readings_hourly hour)"
t_eq "daily rollups match the raw rows" 0 "$(rollup_mismatches readings_daily day)"
t_ok "rollups span more than one day" \
    test "$(t_psql "SELECT count(*) FROM readings_daily")" -ge 3
t_ok "heartbeat recorded firmware, consent flag and last seen" t_wait_until 10 \
    test "$(t_psql "SELECT firmware_version || ' ' || remote_upgrade || ' ' || (last_seen IS NOT NULL)
                    FROM devices WHERE id = '$(device_id "$dev")'")" = "2.4.1 true true"

snapshot() {
    t_psql "SELECT md5(string_agg(concat_ws(',', sensor, bucket, n, sum, min, max, first_ts,
                       first_value, last_ts, last_value), ';' ORDER BY sensor, bucket))
            FROM readings_hourly"
}
before="$(snapshot)"

# A meter that did not hear the answer sends the same batch again: nothing changes.
code="$(t_curl "$dev" "/sensor/$counter" -H 'Content-Type: application/json' --data-binary "$json")"
t_eq "the same JSON batch again is accepted" 200 "$code"
code="$(t_curl "$dev" "/sensor/$gauge" -H 'Content-Type: application/x-protobuf' \
    --data-binary "@$T_WORK/batch.pb")"
t_eq "the same protobuf batch again is accepted" 200 "$code"
t_ok "the writer drains the repeats" t_wait_until 30 drained
t_eq "still 180 readings" 180 "$(total_stored)"
t_eq "rollups unchanged by the repeats" "$before" "$(snapshot)"
t_eq "no dead letters" 0 "$(for s in 0 1 2 3; do t_redis XLEN "$T_PREFIX:{$s}:dead"; done | paste -sd+ | bc)"
t_eq "ingest counted 360 accepted readings" 360 \
    "$(t_metric ingest meterhub_ingest_readings_accepted_total)"

# A batch partly stored already (50 readings) and partly new (30), posted twice at once (so that the writer is
# likely to read both copies together): the new part is stored once, the rollups follow it.
overlap="$(json_series $((start + 50 * 1800)) 1800 80 "$(awk 'BEGIN { printf "%.17g", 1000.5 + 12.25 * 50 }')" 12.25)"
code="$(t_curl "$dev" "/sensor/$counter" -H 'Content-Type: application/json' --data-binary "$overlap")"
t_eq "a half-stored batch is accepted" 200 "$code"
code="$(t_curl "$dev" "/sensor/$counter" -H 'Content-Type: application/json' --data-binary "$overlap")"
t_eq "the half-stored batch again is accepted" 200 "$code"
t_ok "the writer drains the overlap" t_wait_until 30 drained
t_eq "130 counter readings: the 30 new ones stored once" 130 "$(stored_count "$counter")"
t_eq "hourly rollups still match the raw rows" 0 "$(rollup_mismatches readings_hourly hour)"
t_eq "daily rollups still match the raw rows" 0 "$(rollup_mismatches readings_daily day)"
t_eq "still no dead letters" 0 "$(for s in 0 1 2 3; do t_redis XLEN "$T_PREFIX:{$s}:dead"; done | paste -sd+ | bc)"

t_done
