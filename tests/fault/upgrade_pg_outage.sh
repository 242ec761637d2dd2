#!/usr/bin/env bash
#
# PostgreSQL down while meters heartbeat and download (docs/upgrade.md): heartbeats are still
# accepted, with no offer (no answer means no); a report, which must not be lost, and a
# download both get 503 with Retry-After; once PostgreSQL is back, offers resume by themselves.
# Then PostgreSQL stalled rather than down: downloads get 503 after a bounded wait, never hang.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"

t_init upgrade_pg_outage
t_own_stack
STORE="$T_WORK/store"
mkdir -p "$STORE/sha256"
T_INGEST_EXTRA="firmware_store = $STORE
upgrade_timeout_ms = 1000"
t_start_ingest

dev="$(t_device acme 1)"
id="$(basename "$dev")"
head -c 5000 /dev/urandom >"$T_WORK/image"
digest="$(sha256sum "$T_WORK/image" | cut -d' ' -f1)"
mkdir -p "$STORE/sha256/${digest:0:2}"
cp "$T_WORK/image" "$STORE/sha256/${digest:0:2}/$digest"
rel="$(printf 'c%.0s' {1..32})"
t_psql "INSERT INTO release_keys VALUES (repeat('a', 16), decode(repeat('0a', 32), 'hex'),
            repeat('a', 64));
        INSERT INTO releases (id, manifest, manifest_sha256, signature, key_id, version,
            version_key, hardware, size, image_sha256, issued_at, expires_at, log_seq, log_prev,
            log_hash)
        VALUES ('$rel', 'm', repeat('b', 64), decode(repeat('5a', 64), 'hex'), repeat('a', 16),
            '2.0', upg_version_key('2.0'), 'flm02', 5000, '$digest', now(),
            now() + interval '1 day', 1, repeat('0', 64), repeat('e', 64));
        INSERT INTO rollouts (release_id) VALUES ('$rel');
        UPDATE devices SET upgrade_consent = 'auto' WHERE id = '$id'" >/dev/null

JSON=(-H 'Content-Type: application/json')
hb() {
    t_curl "$dev" "/device/$id" "${JSON[@]}" -D "$T_WORK/headers" \
        --data-binary "{\"firmware_version\":\"1.0\",\"remote_upgrade\":true${1:+,\"upgrade_report\":$1}}"
}
offered() { jq -r '.upgrade.release // "null"' "$T_BODY"; }
offer_back() { [[ "$(hb)" == 200 && "$(offered)" == "$rel" ]]; }

t_eq "before: offered" "200 $rel" "$(hb) $(offered)"
t_pg_stop
t_eq "PostgreSQL down: the heartbeat is still accepted" 200 "$(hb)"
t_eq "... without an offer" null "$(offered)"
t_eq "a report cannot be recorded: 503" 503 \
    "$(hb "{\"release\":\"$rel\",\"outcome\":\"failed\",\"reason\":\"flash\"}")"
t_like "503 upgrade_unavailable" '"error":"upgrade_unavailable"' "$(cat "$T_BODY")"
t_like "... with Retry-After" 'Retry-After: 2' "$(tr -d '\r' <"$T_WORK/headers")"
t_eq "a download cannot be checked: 503" 503 "$(t_curl "$dev" "/firmware/$rel")"
t_like "503 upgrade_unavailable" '"error":"upgrade_unavailable"' "$(cat "$T_BODY")"
t_ok "failures are counted" test "$(t_metric ingest meterhub_ingest_upgrade_pg_failures_total)" -ge 3
t_pg_start
t_ok "PostgreSQL back: offers resume by themselves" t_wait_until 20 offer_back
t_eq "the download works again" 200 "$(t_curl "$dev" "/firmware/$rel")"
t_eq "the image" "$digest" "$(sha256sum <"$T_BODY" | cut -d' ' -f1)"

# PostgreSQL up but stalled (the offers locked by another session): a download check waits for
# its batch no longer than upgrade_timeout_ms (1 s here), and its batch no longer than that
# again. Eight downloads at once each get 503 within a few seconds, none hangs; once the lock
# is gone, downloads work again.
psql -X -q -At "$T_PG_URI" -c "BEGIN; LOCK TABLE upgrade_offers IN ACCESS EXCLUSIVE MODE;
                                SELECT pg_sleep(6); COMMIT" >/dev/null 2>&1 &
lock_pid=$!
locked() {
    [[ "$(t_psql "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                  WHERE c.relname = 'upgrade_offers' AND l.mode = 'AccessExclusiveLock'
                    AND l.granted")" == 1 ]]
}
t_ok "stalled: the offers are locked" t_wait_until 5 locked
started=$(date +%s%N)
stall_pids=()
for i in $(seq 1 8); do
    dir="$T_WORK/stall/$i"
    mkdir -p "$dir"
    (T_WORK="$dir" T_BODY="$dir/body" t_curl "$dev" "/firmware/$rel" >"$dir/code") &
    stall_pids+=("$!")
done
wait "${stall_pids[@]}" || true
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
n503=0
for i in $(seq 1 8); do
    [[ "$(cat "$T_WORK/stall/$i/code")" == 503 ]] &&
        grep -q '"error":"upgrade_unavailable"' "$T_WORK/stall/$i/body" && n503=$((n503 + 1))
done
t_eq "stalled: each of 8 downloads got 503 upgrade_unavailable" 8 "$n503"
t_ok "stalled: all answered within 5 s ($elapsed_ms ms), none waited for the lock" \
    test "$elapsed_ms" -lt 5000
wait "$lock_pid" || true
download_ok() { [[ "$(t_curl "$dev" "/firmware/$rel")" == 200 ]]; }
t_ok "after the stall: the download works again" t_wait_until 10 download_ok
t_eq "the report lost to the outage was not recorded" 0 \
    "$(t_psql "SELECT count(*) FROM audit_log WHERE kind = 'firmware_failed'")"
t_eq "sent again, it is" 200 "$(hb "{\"release\":\"$rel\",\"outcome\":\"failed\",\"reason\":\"flash\"}")"
t_eq "recorded" "failed flash" "$(t_psql "SELECT state || ' ' || reason FROM upgrade_offers")"
t_done
