#!/usr/bin/env bash
#
# A writer killed with SIGKILL in the middle of its batches loses nothing and duplicates
# nothing: the restarted writer (same consumer) re-reads its pending entries, and a writer with
# another name claims a dead consumer's entries after claim_idle_ms.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

T_WRITER_BATCH_SIZE=20
T_WRITER_CLAIM_IDLE_MS=1000
T_RATE_PER_S=100000
T_RATE_BURST=100000
t_init writer_kill
t_start_ingest

now=$(date +%s)
devs=()
for i in 1 2 3; do devs+=("$(t_device acme 2)"); done
# 3 devices x 2 sensors x 30 batches of 60 readings = 10,800 readings queued before any writer.
posted=0
for dev in "${devs[@]}"; do
    for k in 0 1; do
        sensor="$(t_sensor "$dev" "$k")"
        for ((b = 0; b < 30; b++)); do
            code="$(t_curl "$dev" "/sensor/$sensor" -H 'Content-Type: application/json' \
                --data-binary "$(json_series $((now - 2 * 86400 + b * 60 * 60)) 60 60 $((b * 60)) 1)")"
            [[ "$code" == 200 ]] && posted=$((posted + 60))
        done
    done
done
t_eq "all 180 batches accepted" 10800 "$posted"
t_eq "10,800 readings wait in the queue" 180 "$(backlog)"

t_write_writer_conf writer
t_start_writer writer
sleep 0.3
t_kill_writer writer
partial="$(total_stored)"
printf 'stored when killed: %s of 10800\n' "$partial"
t_ok "the kill happened mid-run" test "$partial" -lt 10800

t_start_writer writer
t_ok "the restarted writer drains the queue" t_wait_until 60 drained
t_eq "every reading stored" 10800 "$(total_stored)"
t_eq "none twice (primary key) and rollups agree" 0 "$(rollup_mismatches readings_hourly hour)"

# A different consumer takes over a dead one's pending entries.
t_stop_writer writer
for dev in "${devs[@]}"; do
    sensor="$(t_sensor "$dev" 0)"
    t_curl "$dev" "/sensor/$sensor" -H 'Content-Type: application/json' \
        --data-binary "$(json_series $((now - 600)) 1 60 100000 1)" >/dev/null
done
t_write_writer_conf doomed
t_start_writer doomed
sleep 0.2
t_kill_writer doomed
t_write_writer_conf heir
t_start_writer heir
t_ok "another writer claims the dead one's entries" t_wait_until 30 drained
t_eq "every reading stored once" 10980 "$(total_stored)"
t_eq "rollups agree" 0 "$(rollup_mismatches readings_daily day)"

t_done
