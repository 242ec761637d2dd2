#!/usr/bin/env bash
#
# Redis stopped mid-run: ingest answers 503 with Retry-After instead of buffering; once Redis
# is back, posting resumes and every reading that got a 2xx is stored, exactly once.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

t_init redis_outage
t_own_stack
t_start_ingest
t_start_writer

dev="$(t_device acme 2)"
sensor="$(t_sensor "$dev" 0)"
accepted="$T_WORK/accepted"
: >"$accepted"
start=$(($(date +%s) - 3000))

printf 'before: %s\n' "$(post_series "$dev" "$sensor" "$start" 20 "$accepted")"
t_redis_stop
during="$(post_series "$dev" "$sensor" $((start + 20)) 10 "$accepted")"
printf 'during: %s\n' "$during"
t_like "posts during the outage get 503" '^ *10 503 $' "$during"
code="$(t_curl "$dev" "/sensor/$sensor" -H 'Content-Type: application/json' -D "$T_WORK/h" \
    --data-binary "{\"measurements\":[[$((start + 30)),$((start + 30))]]}")"
t_eq "one more for the headers" 503 "$code"
t_like "503 carries Retry-After" '^Retry-After: [1-9]' "$(grep -i '^Retry-After' "$T_WORK/h" | tr -d '\r')"
t_like "503 has a JSON error" '"error":"queue_unavailable"' "$(cat "$T_BODY")"
t_like "health says degraded" '"degraded"' "$(curl -s "http://127.0.0.1:$T_INGEST_OPS_PORT/healthz")"

t_redis_start
ok() { [[ "$(t_curl "$dev" "/sensor/$sensor" -H 'Content-Type: application/json' \
    --data-binary "{\"measurements\":[[$((start + 31)),$((start + 31))]]}")" == 200 ]]; }
t_ok "posting resumes within 10 s of Redis returning" t_wait_until 10 ok
printf '%s\n' $((start + 31)) >>"$accepted"
printf 'after: %s\n' "$(post_series "$dev" "$sensor" $((start + 40)) 20 "$accepted")"

t_ok "the writer drains the queue" t_wait_until 60 drained
expected="$(sort -n "$accepted" | uniq)"
stored="$(t_admin readings "$sensor" | tail -n +2 | cut -d, -f1)"
t_eq "every accepted reading is stored" "$(wc -l <"$accepted")" "$(printf '%s\n' "$stored" | grep -c .)"
t_eq "stored readings are exactly the accepted ones" "$expected" "$stored"

t_done
