#!/usr/bin/env bash
#
# DELETE /v1/me over the real pipeline: a read token cannot erase; a manage token erases the
# account and afterwards no row of it remains in any table (accounts, tokens, devices, sensors,
# readings and their rollups, sharing, grants made and received, audit trail), while the other
# account keeps all of its own; the token stops working, the password no longer logs in, and
# ingest refuses the account's device. Readings the account's device had posted that were
# still queued in Redis when it was erased are dropped by the writer, not stored as orphans.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

t_init api_erase
t_start_ingest
t_start_writer
t_start_api

alice_dev="$(t_device alice 2)"
alice_dev2="$(t_device alice 1)"
bob_dev="$(t_device bob 1)"
a0="$(t_sensor "$alice_dev" 0)"
a1="$(t_sensor "$alice_dev" 1)"
a2="$(t_sensor "$alice_dev2" 0)"
b0="$(t_sensor "$bob_dev" 0)"
t_api_account alice bob
alice_read="$(t_api_token alice read)"
alice="$(t_api_token alice manage)"
bob="$(t_api_token bob manage)"
aid="$(t_psql "SELECT id FROM accounts WHERE name = 'alice'")"
bid="$(t_psql "SELECT id FROM accounts WHERE name = 'bob'")"
sids="$(t_psql "SELECT string_agg(sid::text, ',') FROM sensors WHERE account_id = $aid")"

post() {
    t_curl "$1" "/sensor/$2" -H 'Content-Type: application/json' \
        --data-binary "$(json_series "$3" 60 10 "$4" 1)"
}
start=$(($(date +%s) - 7200))
for s in "$alice_dev:$a0" "$alice_dev:$a1" "$alice_dev2:$a2" "$bob_dev:$b0"; do
    t_eq "ten readings of sensor ${s##*:} are accepted" 200 \
        "$(post "${s%%:*}" "${s##*:}" "$start" 100)"
done
t_ok "the writer stores them" t_wait_until 30 drained

# Each shares a sensor with the other: alice's grant to bob, bob's grant to alice (one she
# receives), and an audit entry in each trail.
share() {
    t_api PUT "/v1/sensors/$1/sharing" "$2" -H 'Content-Type: application/json' \
        --data-binary "{\"visibility\":\"shared\",\"grants\":[{\"account\":\"$3\",\"resolution\":\"hour\"}]}"
}
t_eq "alice shares a sensor with bob" 200 "$(share "$a0" "$alice" bob)"
t_eq "bob shares his with alice" 200 "$(share "$b0" "$bob" alice)"
# And each reads the other's: a foreign read in each owner's trail.
t_eq "bob reads alice's shared sensor" 200 \
    "$(t_api GET "/v1/sensors/$a0/readings?from=$start&to=$((start + 3600))&resolution=hour" "$bob")"
t_eq "alice reads bob's" 200 \
    "$(t_api GET "/v1/sensors/$b0/readings?from=$start&to=$((start + 3600))&resolution=hour" "$alice")"

# rows ACCOUNT-ID SENSOR-SIDS: "table=count" for every table that holds account data, keyed by
# the account (as owner, grantee or actor) or by its sensors.
rows() {
    local id=$1 s=${2:-0}
    t_psql "SELECT 'accounts=' || (SELECT count(*) FROM accounts WHERE id = $id)
        || ' api_tokens=' || (SELECT count(*) FROM api_tokens WHERE account_id = $id)
        || ' devices=' || (SELECT count(*) FROM devices WHERE account_id = $id)
        || ' sensors=' || (SELECT count(*) FROM sensors WHERE account_id = $id)
        || ' readings=' || (SELECT count(*) FROM readings WHERE sensor IN ($s))
        || ' readings_hourly=' || (SELECT count(*) FROM readings_hourly WHERE sensor IN ($s))
        || ' readings_daily=' || (SELECT count(*) FROM readings_daily WHERE sensor IN ($s))
        || ' sensor_sharing=' || (SELECT count(*) FROM sensor_sharing
                                  WHERE account_id = $id OR sensor_sid IN ($s))
        || ' grants_made=' || (SELECT count(*) FROM sensor_grants
                               WHERE account_id = $id OR sensor_sid IN ($s))
        || ' grants_received=' || (SELECT count(*) FROM sensor_grants WHERE grantee_id = $id)
        || ' audit_log=' || (SELECT count(*) FROM audit_log WHERE account_id = $id OR actor_id = $id)
        || ' foreign_reads=' || (SELECT count(*) FROM foreign_reads WHERE account_id = $id)"
}
bob_sids="$(t_psql "SELECT string_agg(sid::text, ',') FROM sensors WHERE account_id = $bid")"
t_eq "before: alice has rows in every one of them" "" \
    "$(rows "$aid" "$sids" | tr ' ' '\n' | grep '=0$' || true)"
# Without the readings' counts, which depend on where hours and days begin.
bob_rows() { rows "$bid" "$bob_sids" | sed -E 's/ readings=.* sensor_sharing/ sensor_sharing/'; }
t_eq "  bob too" \
    "accounts=1 api_tokens=1 devices=1 sensors=1 sensor_sharing=1 grants_made=1 grants_received=1 audit_log=1 foreign_reads=1" \
    "$(bob_rows)"
bob_readings="$(t_psql "SELECT md5(string_agg(concat_ws(' ', sensor, ts, value), ',' ORDER BY sensor, ts))
                        FROM readings WHERE sensor IN ($bob_sids)")"

t_eq "a read token cannot erase" 403 "$(t_api DELETE /v1/me "$alice_read")"
t_eq "  insufficient_scope" insufficient_scope "$(jq -r .error "$T_BODY")"
t_eq "  nothing changed" 1 "$(t_psql "SELECT count(*) FROM accounts WHERE id = $aid")"
t_eq "no token cannot either" 401 "$(t_api DELETE /v1/me "")"

# Readings posted while the writer is stopped wait in Redis. alice is erased meanwhile; when
# the writer comes back, it must not store them: nobody could ever read or erase them.
t_ok "the writer stops" t_stop_writer
t_eq "alice's device posts ten more readings" 200 "$(post "$alice_dev" "$a0" $((start + 6000)) 5000)"
t_eq "  and her other device too" 200 "$(post "$alice_dev2" "$a2" $((start + 6000)) 5000)"
t_eq "  so does bob's" 200 "$(post "$bob_dev" "$b0" $((start + 6000)) 5000)"
t_ok "  queued" test "$(backlog)" -gt 0

t_eq "alice erases her account" 204 "$(t_api DELETE /v1/me "$alice")"
t_eq "  no body" 0 "$(wc -c <"$T_BODY")"
t_start_writer
t_ok "the writer drains the queue" t_wait_until 30 drained
t_eq "after: no row of alice remains in any table" \
    "accounts=0 api_tokens=0 devices=0 sensors=0 readings=0 readings_hourly=0 readings_daily=0 sensor_sharing=0 grants_made=0 grants_received=0 audit_log=0 foreign_reads=0" \
    "$(rows "$aid" "$sids")"
t_eq "  nor in any column that names an account, in any table" 0 "$(t_psql "
    SELECT coalesce(sum(n), 0) FROM (
      SELECT (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I WHERE %I = $aid',
              table_name, column_name), false, true, '')))[1]::text::bigint AS n
      FROM information_schema.columns
      WHERE table_schema = 'public' AND column_name IN ('account_id', 'grantee_id', 'actor_id')
        AND table_name IN (SELECT tablename FROM pg_tables WHERE schemaname = 'public')) t")"
t_eq "  her queued readings were dropped, not stored as orphans" 0 \
    "$(t_psql "SELECT count(*) FROM readings WHERE sensor NOT IN (SELECT sid FROM sensors)")"
t_eq "  nor dead-lettered" 0 \
    "$(for s in 0 1 2 3; do t_redis XLEN "$T_PREFIX:{$s}:dead"; done | paste -sd+ | bc)"
t_eq "  no rollup without its sensor either" 0 \
    "$(t_psql "SELECT (SELECT count(*) FROM readings_hourly WHERE sensor NOT IN (SELECT sid FROM sensors))
                    + (SELECT count(*) FROM readings_daily WHERE sensor NOT IN (SELECT sid FROM sensors))")"

t_eq "bob's rows are all there, less the grants between him and alice" \
    "accounts=1 api_tokens=1 devices=1 sensors=1 sensor_sharing=1 grants_made=0 grants_received=0 audit_log=1 foreign_reads=1" \
    "$(bob_rows)"
t_eq "  his old readings unchanged" "$bob_readings" \
    "$(t_psql "SELECT md5(string_agg(concat_ws(' ', sensor, ts, value), ',' ORDER BY sensor, ts))
               FROM readings WHERE sensor IN ($bob_sids) AND ts < to_timestamp($((start + 6000)))")"
t_eq "  and the ones queued meanwhile stored" 20 \
    "$(t_psql "SELECT count(*) FROM readings WHERE sensor IN ($bob_sids)")"
t_eq "  his sensor's sharing no longer names alice" '[]' \
    "$(t_api GET "/v1/sensors/$b0/sharing" "$bob" >/dev/null; jq -c .grants "$T_BODY")"
t_eq "  his API works" bob "$(t_api GET /v1/me "$bob" >/dev/null; jq -r .name "$T_BODY")"

t_eq "alice's manage token is refused" 401 "$(t_api GET /v1/me "$alice")"
t_eq "  and her read token" 401 "$(t_api GET /v1/me "$alice_read")"
t_eq "  erasing again: the same" 401 "$(t_api DELETE /v1/me "$alice")"
t_eq "her password no longer logs in" 401 "$(t_api POST /v1/tokens "" -H 'Content-Type: application/json' \
    --data-binary '{"username":"alice","password":"alice-long-password"}')"
# Her devices were revoked first (ingest may refuse them as revoked for a moment), then deleted.
ingest_has_devices() {
    grep -o 'directory: loaded [0-9]* devices' "$T_WORK/log/ingest.log" | tail -n 1 |
        grep -qx "directory: loaded $1 devices"
}
t_ok "ingest drops her devices from its directory" t_wait_until 10 ingest_has_devices 1
t_eq "ingest refuses her device" 403 "$(post "$alice_dev" "$a0" $((start + 6600)) 9000)"
t_eq "  as an unknown device" unknown_device "$(jq -r .error "$T_BODY")"
t_eq "  and her other device" 403 "$(post "$alice_dev2" "$a2" $((start + 6600)) 9000)"
t_eq "bob's device is still welcome" 200 "$(post "$bob_dev" "$b0" $((start + 6600)) 9000)"

# The function erases only the account bound to the transaction, and only for the API role.
t_fails "with no account bound, the erase function refuses" \
    t_psql_as api "SELECT api_erase_account()"
t_fails "  other roles may not call it" t_psql_as writer "SELECT api_erase_account()"
t_eq "  bob is still there" 1 "$(t_psql "SELECT count(*) FROM accounts WHERE id = $bid")"

t_ok "meterhub-api stops cleanly" t_stop_api
t_done
