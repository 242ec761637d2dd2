#!/usr/bin/env bash
#
# A device over its rate limit gets 429 with Retry-After; other devices are unaffected, and the
# device gets through again once its bucket refills.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

T_RATE_PER_S=1
T_RATE_BURST=3
t_init ingest_ratelimit
t_start_ingest

greedy="$(t_device acme 4)"
calm="$(t_device acme 4)"
now=$(date +%s)
JSON=(-H 'Content-Type: application/json')

codes=""
for i in 1 2 3 4 5; do
    codes+="$(t_curl "$greedy" "/sensor/$(t_sensor "$greedy" 3)" "${JSON[@]}" -D "$T_WORK/headers" \
        --data-binary "{\"measurements\":[[$((now - i)),$i]]}") "
done
t_eq "the burst of 3 passes, then 429" "200 200 200 429 429 " "$codes"
t_like "429 carries Retry-After" '^Retry-After: [1-9]' "$(grep -i '^Retry-After' "$T_WORK/headers" | tr -d '\r')"
t_like "429 has a JSON error" '"error":"rate_limited"' "$(cat "$T_BODY")"
t_eq "another device is unaffected" 200 \
    "$(t_curl "$calm" "/sensor/$(t_sensor "$calm" 3)" "${JSON[@]}" \
        --data-binary "{\"measurements\":[[$now,1]]}")"
sleep 1.2
t_eq "after a second the greedy device gets one more through" 200 \
    "$(t_curl "$greedy" "/sensor/$(t_sensor "$greedy" 3)" "${JSON[@]}" \
        --data-binary "{\"measurements\":[[$now,1]]}")"
t_eq "429s are counted" 2 "$(t_metric ingest 'meterhub_ingest_requests_total{status="429"}')"

t_done
