#!/usr/bin/env bash
#
# The writer is down and a shard's stream reaches max_backlog: ingest answers 503 backlog_full
# with Retry-After: 5, queues nothing of the refused batch and does not move the counter state;
# once the writer is back and has drained the stream, the same batch is accepted and stored.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

t_init backlog_full
T_MAX_BACKLOG=100 t_start_ingest

dev="$(t_device acme 1)"
sensor="$(t_sensor "$dev" 0)"
accepted="$T_WORK/accepted"
: >"$accepted"
start=$(($(date +%s) - 3000))

# No writer: each of these sequential posts is one stream entry of the sensor's shard.
t_like "100 posts fill the shard's stream" '^ *100 200 $' \
    "$(post_series "$dev" "$sensor" "$start" 100 "$accepted")"
t_eq "the stream holds max_backlog entries" 100 "$(backlog)"
state="$(for s in 0 1 2 3; do t_redis HGETALL "$T_PREFIX:{$s}:last"; done | paste -sd' ')"

refused='{"measurements":[['$((start + 100))','$((start + 100))']]}'
code="$(t_curl "$dev" "/sensor/$sensor" -H 'Content-Type: application/json' -D "$T_WORK/headers" \
    --data-binary "$refused")"
t_eq "the next post is refused with 503" 503 "$code"
t_like "the error says backlog_full" '"error":"backlog_full"' "$(cat "$T_BODY")"
t_like "Retry-After: 5" '^Retry-After: 5' "$(grep -i '^Retry-After' "$T_WORK/headers" | tr -d '\r')"
t_eq "nothing was queued for it" 100 "$(backlog)"
t_eq "the counter state did not move" "$state" \
    "$(for s in 0 1 2 3; do t_redis HGETALL "$T_PREFIX:{$s}:last"; done | paste -sd' ')"
t_like "ingest reports the full backlog" '^[1-9]' \
    "$(t_metric ingest 'meterhub_ingest_requests_total{status="503"}')"

t_start_writer
t_ok "the writer drains the stream" t_wait_until 30 drained
code="$(t_curl "$dev" "/sensor/$sensor" -H 'Content-Type: application/json' --data-binary "$refused")"
t_eq "the same batch is accepted once there is room" 200 "$code"
printf '%s\n' $((start + 100)) >>"$accepted"
t_ok "and stored" t_wait_until 30 drained
t_eq "exactly the 101 accepted readings are stored" "$(sort -n "$accepted")" \
    "$(t_admin readings "$sensor" | tail -n +2 | cut -d, -f1)"

t_done
