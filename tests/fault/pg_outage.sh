#!/usr/bin/env bash
#
# PostgreSQL stopped for a while: ingest keeps accepting into Redis (its device directory is
# cached), the backlog grows, and once PostgreSQL is back the writer drains it: nothing lost.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

t_init pg_outage
t_own_stack
t_start_ingest
t_start_writer

dev="$(t_device acme 2)"
sensor="$(t_sensor "$dev" 0)"
accepted="$T_WORK/accepted"
: >"$accepted"
start=$(($(date +%s) - 3000))

printf 'before: %s\n' "$(post_series "$dev" "$sensor" "$start" 10 "$accepted")"
t_ok "first readings stored" t_wait_until 20 drained
t_pg_stop
during="$(post_series "$dev" "$sensor" $((start + 10)) 30 "$accepted")"
printf 'during: %s\n' "$during"
t_like "ingest keeps accepting while PostgreSQL is down" '^ *30 200 $' "$during"
sleep 2
t_ok "the backlog waits in Redis" test "$(backlog)" -gt 0
t_like "writer health says degraded" '503' \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$T_WRITER_OPS_PORT/healthz")"
t_pg_start
t_ok "the writer drains the backlog once PostgreSQL is back" t_wait_until 60 drained
expected="$(sort -n "$accepted")"
stored="$(t_admin readings "$sensor" | tail -n +2 | cut -d, -f1)"
t_eq "all 40 accepted readings stored" 40 "$(printf '%s\n' "$stored" | grep -c .)"
t_eq "exactly the accepted ones" "$expected" "$stored"

t_done
