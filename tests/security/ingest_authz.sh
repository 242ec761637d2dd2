#!/usr/bin/env bash
#
# A device may post only to its own sensors and heartbeat only as itself: another device's
# sensor (same account or another tenant's) and another device's heartbeat get 403, are
# counted, and store nothing.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

t_init ingest_authz
t_start_ingest
t_start_writer

mine="$(t_device alice 2)"
sibling="$(t_device alice 2)"
tenant="$(t_device bob 2)"
now=$(date +%s)
body="{\"measurements\":[[$now,1]]}"
JSON=(-H 'Content-Type: application/json')

code="$(t_curl "$mine" "/sensor/$(t_sensor "$sibling" 1)" "${JSON[@]}" --data-binary "$body")"
t_eq "posting to a sibling device's sensor" 403 "$code"
t_like "error not_your_sensor" '"error":"not_your_sensor"' "$(cat "$T_BODY")"
code="$(t_curl "$mine" "/sensor/$(t_sensor "$tenant" 1)" "${JSON[@]}" --data-binary "$body")"
t_eq "posting to another account's sensor" 403 "$code"
code="$(t_curl "$mine" "/sensor/00000000000000000000000000000000" "${JSON[@]}" --data-binary "$body")"
t_eq "posting to a sensor that does not exist looks the same" 403 "$code"
code="$(t_curl "$mine" "/device/$(device_id "$tenant")" "${JSON[@]}" \
    --data-binary '{"firmware_version":"6.6.6","remote_upgrade":true}')"
t_eq "heartbeat as another device" 403 "$code"
t_like "error not_this_device" '"error":"not_this_device"' "$(cat "$T_BODY")"

t_eq "own sensor still works" 200 \
    "$(t_curl "$mine" "/sensor/$(t_sensor "$mine" 1)" "${JSON[@]}" --data-binary "$body")"
t_ok "the writer drains the queue" t_wait_until 30 drained
t_eq "only the device's own reading is stored" 1 "$(total_stored)"
t_eq "the other devices' sensors are untouched" 0 \
    "$(t_psql "SELECT count(*) FROM readings r JOIN sensors s ON s.sid = r.sensor
               WHERE s.id IN ('$(t_sensor "$sibling" 1)', '$(t_sensor "$tenant" 1)')")"
t_eq "the forged heartbeat changed nothing" "" \
    "$(t_psql "SELECT firmware_version FROM devices WHERE id = '$(device_id "$tenant")'")"
t_eq "foreign posts are counted" 3 "$(t_metric ingest meterhub_ingest_foreign_sensor_posts_total)"

t_done
