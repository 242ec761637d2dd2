#!/usr/bin/env bash
#
# Every malformed or out-of-bounds batch is refused whole with its 4xx and a JSON body naming
# what is wrong, and nothing of it is stored.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

T_MAX_READINGS=50
T_MAX_BODY_BYTES=8192
t_init ingest_validation
t_start_ingest
t_start_writer

dev="$(t_device acme 4)"
counter="$(t_sensor "$dev" 0)"
gauge="$(t_sensor "$dev" 3)"
now=$(date +%s)
JSON=(-H 'Content-Type: application/json')

# refuse NAME STATUS CODE SENSOR CURL-ARGS...: the request gets STATUS with error CODE.
refuse() {
    local name=$1 status=$2 code=$3 sensor=$4
    shift 4
    local got
    got="$(t_curl "$dev" "/sensor/$sensor" "$@")"
    t_eq "$name: status" "$status" "$got"
    t_like "$name: JSON error \"$code\"" "\"error\":\"$code\"" "$(cat "$T_BODY")"
}

refuse "malformed JSON" 400 malformed_json "$counter" "${JSON[@]}" --data-binary '{"measurements":[['
refuse "not an object" 400 invalid_body "$counter" "${JSON[@]}" --data-binary '[[1,2]]'
refuse "unknown field" 400 unknown_field "$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$now,1]],\"extra\":true}"
refuse "missing measurements" 400 missing_field "$counter" "${JSON[@]}" --data-binary '{}'
refuse "empty batch" 400 empty_batch "$counter" "${JSON[@]}" --data-binary '{"measurements":[]}'
refuse "timestamp as string" 400 invalid_timestamp "$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[\"$now\",1]]}"
refuse "fractional timestamp" 400 invalid_timestamp "$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$now.5,1]]}"
refuse "value as string" 400 invalid_value "$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$now,\"1\"]]}"
refuse "value null" 400 invalid_value "$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$now,null]]}"
refuse "pair of three" 400 invalid_type "$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$now,1,2]]}"
refuse "Infinity literal" 400 malformed_json "$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$now,Infinity]]}"
refuse "overflowing number" 400 malformed_json "$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$now,1e999]]}"
refuse "timestamp far in the future" 400 timestamp_in_future "$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$((now - 60)),1],[$((now + 86400)),2]]}"
t_like "the error names the offending field" '"field":"measurements\[1\]\[0\]"' "$(cat "$T_BODY")"
refuse "timestamp far in the past" 400 timestamp_too_old "$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$((now - 400 * 86400)),1]]}"
refuse "same timestamp, two values" 400 duplicate_timestamp "$gauge" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$now,1],[$now,2]]}"
refuse "counter decreasing within the batch" 400 counter_decreased "$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$((now - 60)),10],[$now,9]]}"
refuse "too many readings" 413 too_many_readings "$gauge" "${JSON[@]}" \
    --data-binary "$(json_series $((now - 100)) 1 51 1 1)"
big="$(json_series $((now - 9000)) 1 40 1.000000000000001 0.000000000000001)$(printf '%*s' 8000 '')"
got="$(t_curl "$dev" "/sensor/$gauge" "${JSON[@]}" --data-binary "$big")"
t_eq "oversized body refused" 413 "$got"
refuse "unsupported media type" 415 unsupported_media_type "$gauge" \
    -H 'Content-Type: text/plain' --data-binary "{\"measurements\":[[$now,1]]}"

printf '\xff\xff\xff\xff\x0f' >"$T_WORK/garbage.pb"
refuse "malformed protobuf" 400 malformed_protobuf "$gauge" \
    -H 'Content-Type: application/x-protobuf' --data-binary "@$T_WORK/garbage.pb"
printf 'ts: [%d] value: [nan]\n' "$now" |
    protoc-c --encode=meterhub.ReadingBatch -I"$MH_SRC" proto/meterhub.proto >"$T_WORK/nan.pb"
refuse "NaN in protobuf" 400 invalid_value "$gauge" \
    -H 'Content-Type: application/x-protobuf' --data-binary "@$T_WORK/nan.pb"
printf 'ts: [%d] value: [inf]\n' "$now" |
    protoc-c --encode=meterhub.ReadingBatch -I"$MH_SRC" proto/meterhub.proto >"$T_WORK/inf.pb"
refuse "Inf in protobuf" 400 invalid_value "$gauge" \
    -H 'Content-Type: application/x-protobuf' --data-binary "@$T_WORK/inf.pb"
printf 'ts: [%d, %d] value: [1]\n' "$now" "$((now - 1))" |
    protoc-c --encode=meterhub.ReadingBatch -I"$MH_SRC" proto/meterhub.proto >"$T_WORK/short.pb"
refuse "protobuf with more timestamps than values" 400 length_mismatch "$gauge" \
    -H 'Content-Type: application/x-protobuf' --data-binary "@$T_WORK/short.pb"

# Paths and methods.
t_eq "unknown path" 404 "$(t_curl "$dev" /nope)"
t_like "unknown path has a JSON error" '"error":"not_found"' "$(cat "$T_BODY")"
t_eq "GET on a sensor" 405 "$(t_curl "$dev" "/sensor/$gauge")"
t_eq "malformed sensor id" 403 "$(t_curl "$dev" "/sensor/not-an-id" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$now,1]]}")"

# Heartbeats.
hb() {
    t_curl "$dev" "/device/$(device_id "$dev")" "${JSON[@]}" --data-binary "$1"
}
t_eq "heartbeat without remote_upgrade" 400 "$(hb '{"firmware_version":"1.0"}')"
t_like "names remote_upgrade" '"field":"remote_upgrade"' "$(cat "$T_BODY")"
t_eq "heartbeat with a non-boolean flag" 400 "$(hb '{"firmware_version":"1.0","remote_upgrade":"yes"}')"
t_eq "heartbeat with an unknown field" 400 \
    "$(hb '{"firmware_version":"1.0","remote_upgrade":false,"wifi_psk":"x"}')"
t_eq "heartbeat with a 65-character version" 400 \
    "$(hb "{\"firmware_version\":\"$(printf 'v%.0s' {1..65})\",\"remote_upgrade\":false}")"
t_eq "heartbeat with malformed JSON" 400 "$(hb '{')"

# A counter reading older than the stored newest one is fine; a newer smaller one is not.
code="$(t_curl "$dev" "/sensor/$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$((now - 120)),100],[$((now - 60)),110]]}")"
t_eq "a good counter batch is accepted" 200 "$code"
refuse "counter below the stored newest reading" 409 counter_decreased "$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$((now - 30)),105]]}"
code="$(t_curl "$dev" "/sensor/$counter" "${JSON[@]}" \
    --data-binary "{\"measurements\":[[$((now - 30)),110.5]]}")"
t_eq "the counter going on from its stored value is accepted" 200 "$code"

t_ok "the writer drains the queue" t_wait_until 30 drained
t_eq "only the three accepted readings are stored" 3 "$(total_stored)"
t_eq "the refused batches never reached the queue" 0 \
    "$(t_psql "SELECT count(*) FROM readings r JOIN sensors s ON s.sid = r.sensor
               WHERE s.id = '$gauge'")"
t_ok "400s are counted" test "$(t_metric ingest 'meterhub_ingest_requests_total{status="400"}')" -ge 20

t_done
