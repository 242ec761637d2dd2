# shellcheck shell=bash
# Helpers shared by the ingest tests (sourced after testlib.sh).

# json_series START STEP COUNT V0 DV: a Flukso JSON body of COUNT readings, timestamps START,
# START+STEP..., values V0, V0+DV...
json_series() {
    local start=$1 step=$2 count=$3 v0=$4 dv=$5 i sep=""
    printf '{"measurements":['
    for ((i = 0; i < count; i++)); do
        printf '%s[%d,%s]' "$sep" $((start + i * step)) "$(awk -v a="$v0" -v b="$dv" -v i="$i" \
            'BEGIN { printf "%.17g", a + b * i }')"
        sep=,
    done
    printf ']}'
}

# pb_series FILE START STEP COUNT V0 DV: the same batch as a protobuf meterhub.ReadingBatch,
# encoded by protoc-c from its text format.
pb_series() {
    local file=$1 start=$2 step=$3 count=$4 v0=$5 dv=$6 i ts="" vs="" sep=""
    for ((i = 0; i < count; i++)); do
        ts+="$sep$((start + i * step))"
        vs+="$sep$(awk -v a="$v0" -v b="$dv" -v i="$i" 'BEGIN { printf "%.17g", a + b * i }')"
        sep=", "
    done
    printf 'ts: [%s] value: [%s]\n' "$ts" "$vs" |
        protoc-c --encode=meterhub.ReadingBatch -I"$MH_SRC" proto/meterhub.proto >"$file"
}

# device_id DEVICE_DIR: the device id of a device made by t_device.
device_id() {
    basename "$1"
}

# stored_count SENSOR_ID: readings stored for a sensor (public id).
stored_count() {
    t_psql "SELECT count(*) FROM readings r JOIN sensors s ON s.sid = r.sensor WHERE s.id = '$1'"
}

# total_stored: all readings in this test's database.
total_stored() {
    t_psql "SELECT count(*) FROM readings"
}

# backlog: stream entries not yet stored, over all shards.
backlog() {
    local total=0 n s
    for ((s = 0; s < ${T_SHARDS:-4}; s++)); do
        n="$(t_redis XLEN "$T_PREFIX:{$s}:q")"
        total=$((total + ${n:-0}))
    done
    printf '%s\n' "$total"
}

# drained: the writer has stored everything queued.
drained() {
    [[ "$(backlog)" == 0 ]]
}

# rollup_mismatches TABLE UNIT: rows where the rollup differs from aggregates recomputed from
# the raw readings (either side missing counts too). 0 when the rollups are right.
rollup_mismatches() {
    local table=$1 unit=$2
    t_psql "
      WITH raw AS (
        SELECT sensor, date_trunc('$unit', ts, 'UTC') AS bucket, count(*) AS n, sum(value) AS sum,
               min(value) AS min, max(value) AS max, min(ts) AS first_ts, max(ts) AS last_ts,
               (array_agg(value ORDER BY ts))[1] AS first_value,
               (array_agg(value ORDER BY ts DESC))[1] AS last_value
        FROM readings GROUP BY 1, 2)
      SELECT count(*) FROM raw FULL JOIN $table r USING (sensor, bucket)
      WHERE r.n IS DISTINCT FROM raw.n OR abs(r.sum - raw.sum) > 1e-6 * greatest(1, abs(raw.sum))
         OR r.min IS DISTINCT FROM raw.min OR r.max IS DISTINCT FROM raw.max
         OR r.first_ts IS DISTINCT FROM raw.first_ts OR r.last_ts IS DISTINCT FROM raw.last_ts
         OR r.first_value IS DISTINCT FROM raw.first_value
         OR r.last_value IS DISTINCT FROM raw.last_value"
}

# post_series DEVICE_DIR SENSOR START COUNT ACCEPTED_FILE: posts COUNT one-reading batches
# (timestamps START.., value = the timestamp, so a counter only grows) and appends the
# timestamp of every batch that got 200 to ACCEPTED_FILE; prints the status codes seen.
post_series() {
    local dev=$1 sensor=$2 start=$3 count=$4 out=$5 i code
    for ((i = 0; i < count; i++)); do
        code="$(t_curl "$dev" "/sensor/$sensor" -H 'Content-Type: application/json' \
            --data-binary "{\"measurements\":[[$((start + i)),$((start + i))]]}")"
        [[ "$code" == 200 ]] && printf '%s\n' $((start + i)) >>"$out"
        printf '%s\n' "$code"
    done | sort | uniq -c | tr '\n' ' '
}
