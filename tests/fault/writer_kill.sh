#!/usr/bin/env bash
#
# A writer killed with SIGKILL in the middle of a batch (entries read, transaction open) loses
# nothing and duplicates nothing: the restarted writer (same consumer) re-reads its pending
# entries, and a writer with another name claims a dead consumer's entries after claim_idle_ms.
# A lock held on the readings table pins the writer mid-transaction, so the kill always lands
# mid-batch whatever the machine's speed. (A statement the dead writer had already sent may
# still commit once the lock is released; its entries stay pending and are stored again as
# no-ops, which is exactly the case the primary key is for.)
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

# queue_batches FIRST_TS_OFFSET VALUE_BASE: 3 devices x 2 sensors x 30 batches of 60 readings.
queue_batches() {
    local base_ts=$1 base_v=$2 posted=0 dev k sensor b code
    for dev in "${devs[@]}"; do
        for k in 0 1; do
            sensor="$(t_sensor "$dev" "$k")"
            for ((b = 0; b < 30; b++)); do
                code="$(t_curl "$dev" "/sensor/$sensor" -H 'Content-Type: application/json' \
                    --data-binary "$(json_series $((base_ts + b * 3600)) 60 60 \
                        $((base_v + b * 60)) 1)")"
                [[ "$code" == 200 ]] && posted=$((posted + 60))
            done
        done
    done
    printf '%s\n' "$posted"
}

lock_granted() {
    test "$(t_psql "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
        WHERE c.relname = 'readings' AND l.mode = 'AccessExclusiveLock' AND l.granted")" -ge 1
}

# hold_lock: an open transaction holding an exclusive lock on readings, until release_lock.
hold_lock() {
    t_psql "SELECT 1" >/dev/null
    psql -X -q -d "$MH_PG_URI" -c "BEGIN; LOCK TABLE readings IN ACCESS EXCLUSIVE MODE;
        SELECT pg_sleep(60);" >/dev/null 2>&1 &
    LOCK_PID=$!
    t_wait_until 10 lock_granted
}
release_lock() {
    t_psql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null
    wait "$LOCK_PID" 2>/dev/null || true
}
some_pending() {
    test "$(pending)" -gt 0
}
pending() {
    local total=0 s n
    for ((s = 0; s < ${T_SHARDS:-4}; s++)); do
        n="$(t_redis XPENDING "$T_PREFIX:{$s}:q" writers | head -1)"
        total=$((total + ${n:-0}))
    done
    printf '%s\n' "$total"
}

# The writer starts idle; with the table locked, the batches queued next are read (pending)
# but cannot commit.
t_write_writer_conf writer
t_start_writer writer
hold_lock
t_eq "180 batches accepted" 10800 "$(queue_batches $((now - 3 * 86400)) 0)"
t_ok "the writer has read entries it cannot commit yet" t_wait_until 10 some_pending
t_kill_writer writer
printf 'killed with %s entries pending, %s readings stored\n' "$(pending)" "$(total_stored)"
release_lock

t_start_writer writer
t_ok "the restarted writer drains the queue" t_wait_until 60 drained
t_eq "every reading stored" 10800 "$(total_stored)"
t_eq "rollups agree with the raw rows" 0 "$(rollup_mismatches readings_hourly hour)"
t_stop_writer writer

# A different consumer takes over a dead one's pending entries.
t_write_writer_conf doomed
t_start_writer doomed
hold_lock
t_eq "180 more batches accepted" 10800 "$(queue_batches $((now - 40 * 3600)) 100000)"
t_ok "the doomed writer has entries pending" t_wait_until 10 some_pending
t_kill_writer doomed
release_lock
t_write_writer_conf heir
t_start_writer heir
t_ok "another writer claims the dead one's entries and drains" t_wait_until 60 drained
t_eq "every reading stored once" 21600 "$(total_stored)"
t_eq "no entry left pending" 0 "$(pending)"
t_eq "daily rollups agree" 0 "$(rollup_mismatches readings_daily day)"

t_done
