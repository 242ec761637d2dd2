#!/usr/bin/env bash
#
# The privacy rules of reads, over the real pipeline (ingest, writer, PostgreSQL) and real
# HTTPS: the full access matrix {owner, grantee, other account, anonymous, revoked token,
# expired token, read-only token writing} x {private, shared at hour, public at day with a
# 24-hour delay} x {raw, 15min, hour, day}, each cell checked against values computed here
# from the series the test posted. Then: the public delay, a revoked grant, the audit trail of
# foreign reads, and the row-level security backstop with the API role bound to each account.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

t_init api_privacy
T_MAX_READINGS=1000 T_RATE_PER_S=100000 T_RATE_BURST=100000 T_MAX_AGE_S=864000 t_start_ingest
t_start_writer
t_start_api

# Three W gauges of alice's (sensors 3, 7 and 11 of a device cycle through the kinds).
dev="$(t_device alice 12)"
P="$(t_sensor "$dev" 3)"  # private
S="$(t_sensor "$dev" 7)"  # shared with bob at hour
U="$(t_sensor "$dev" 11)" # public at day, 24 hours late
t_api_account alice bob carol
token() { t_api_token "$@"; }
alice="$(token alice manage)"
alice_read="$(token alice read)"
bob="$(token bob)"
carol="$(token carol)"
revoked="$(token bob)"
revoked_id="$(jq -r .id "$T_BODY")"
expired="$(token bob)"
expired_id="$(jq -r .id "$T_BODY")"
t_eq "a token is revoked" 204 "$(t_api DELETE "/v1/tokens/$revoked_id" "$(token bob manage)")"
t_psql "UPDATE api_tokens SET created_at = now() - interval '2 days',
        expires_at = now() - interval '1 day' WHERE id = $expired_id"

# --- the series ---------------------------------------------------------------------------------
# Every 5 minutes, 150 s into each 5-minute slot, over the three whole UTC days before today:
# reading k at d0 + 150 + 300 k has the value (37 k) mod 101. Today holds nothing.
d0=$(($(date +%s) / 86400 * 86400 - 3 * 86400))
series() { # series DAY: the Flukso body of that day's 288 readings
    awk -v d0="$d0" -v day="$1" 'BEGIN {
        printf "{\"measurements\":["
        for (i = 0; i < 288; i++) {
            k = day * 288 + i
            printf "%s[%d,%d]", (i ? "," : ""), d0 + 150 + 300 * k, (37 * k) % 101
        }
        printf "]}" }'
}
for sensor in "$P" "$S" "$U"; do
    for day in 0 1 2; do
        t_eq "day $day of $sensor is accepted" 200 "$(t_curl "$dev" "/sensor/$sensor" \
            -H 'Content-Type: application/json' --data-binary "$(series "$day")")"
    done
done
all_stored() { test "$(t_psql 'SELECT count(*) FROM readings')" = 2592; }
t_ok "the writer stores them" t_wait_until 60 all_stored

# expected RES FROM TO: "ts value" lines of the buckets in [FROM, TO), computed from the series
# alone: raw readings, or the mean of each bucket's readings.
expected() {
    awk -v d0="$d0" -v res="$1" -v from="$2" -v to="$3" 'BEGIN {
        len = res == "raw" ? 0 : res == "15min" ? 900 : res == "hour" ? 3600 : 86400
        for (k = 0; k < 864; k++) {
            ts = d0 + 150 + 300 * k
            if (ts < from || ts >= to) continue
            if (len == 0) { printf "%d %d\n", ts, (37 * k) % 101; continue }
            b = ts - (ts % len)
            if (!(b in n)) order[++nb] = b
            n[b]++; sum[b] += (37 * k) % 101
        }
        for (i = 1; i <= nb; i++) printf "%d %.12g\n", order[i], sum[order[i]] / n[order[i]]
    }'
}
# same_points FILE: "same" when the answer's points equal FILE's, values within 1e-9.
same_points() {
    jq -r '.points[] | "\(.[0]) \(.[1])"' "$T_BODY" >"$T_WORK/actual"
    if [[ "$(wc -l <"$1")" -ne "$(wc -l <"$T_WORK/actual")" ]]; then
        printf '%s points, expected %s\n' "$(wc -l <"$T_WORK/actual")" "$(wc -l <"$1")"
        return
    fi
    paste -d' ' "$1" "$T_WORK/actual" | awk '
        $1 != $3 || $4 == "null" || ($2 - $4 > 1e-9 || $4 - $2 > 1e-9) { bad = bad " " $1 ":" $2 "/" $4 }
        END { print bad == "" ? "same" : "differ at" substr(bad, 1, 200) }'
}

# --- sharing ------------------------------------------------------------------------------------
t_eq "S is shared with bob at hour" 200 "$(t_api PUT "/v1/sensors/$S/sharing" "$alice" \
    -H 'Content-Type: application/json' \
    --data-binary '{"visibility":"shared","grants":[{"account":"bob","resolution":"hour"}]}')"
t_eq "U is public at day, 24 hours late" 200 "$(t_api PUT "/v1/sensors/$U/sharing" "$alice" \
    -H 'Content-Type: application/json' \
    --data-binary '{"visibility":"public","public_resolution":"day","public_delay_hours":24}')"

# --- the matrix ---------------------------------------------------------------------------------
# What each cell must answer: 200 with the data, 403 (resolution finer than allowed), 404 (as
# for a sensor that does not exist) or 401 (the token is not valid).
rule() { # rule CALLER VISIBILITY RESOLUTION
    case "$1" in
    revoked | expired) echo 401 ;;
    owner) echo 200 ;;
    grantee | other | anonymous)
        case "$2/$1" in
        private/*) echo 404 ;;
        shared/grantee) [[ "$3" == hour || "$3" == day ]] && echo 200 || echo 403 ;;
        shared/*) echo 404 ;;
        public/*) [[ "$3" == day ]] && echo 200 || echo 403 ;;
        esac
        ;;
    esac
}
declare -A tok=([owner]="$alice" [grantee]="$bob" [other]="$carol" [anonymous]=""
    [revoked]="$revoked" [expired]="$expired")
declare -A sensor_of=([private]="$P" [shared]="$S" [public]="$U")
from=$d0 to=$((d0 + 2 * 86400))
for caller in owner grantee other anonymous revoked expired; do
    for vis in private shared public; do
        for res in raw 15min hour day; do
            want="$(rule "$caller" "$vis" "$res")"
            cell="$caller x $vis x $res"
            got="$(t_api GET "/v1/sensors/${sensor_of[$vis]}/readings?from=$from&to=$to&resolution=$res" \
                "${tok[$caller]}")"
            t_eq "$cell: $want" "$want" "$got"
            case "$got" in
            200)
                expected "$res" "$from" "$to" >"$T_WORK/expected"
                t_eq "$cell: the values" same "$(same_points "$T_WORK/expected")"
                ;;
            403) t_eq "$cell: named" resolution_not_allowed "$(jq -r .error "$T_BODY")" ;;
            404) t_eq "$cell: as if it did not exist" "no such sensor" "$(jq -r .message "$T_BODY")" ;;
            esac
        done
    done
done
# The read-only token writing: refused for every sensor, whatever was asked, and nothing changes.
sharing_rows="SELECT count(*) || ' ' || string_agg(visibility || '/' || public_delay_hours, ' ' ORDER BY sensor_sid) FROM sensor_sharing"
before="$(t_psql "$sharing_rows")"
for vis in private shared public; do
    for res in raw 15min hour day; do
        t_eq "read-only x $vis x $res: sharing cannot be changed" 403 \
            "$(t_api PUT "/v1/sensors/${sensor_of[$vis]}/sharing" "$alice_read" \
                -H 'Content-Type: application/json' \
                --data-binary "{\"visibility\":\"shared\",\"grants\":[{\"account\":\"carol\",\"resolution\":\"$res\"}]}")"
    done
done
t_eq "  nothing changed" "$before" "$(t_psql "$sharing_rows")"
t_eq "  and a read-only token cannot revoke a device either" 403 \
    "$(t_api DELETE "/v1/devices/$(device_id "$dev")" "$alice_read")"

# --- the public delay ---------------------------------------------------------------------------
# From d0 to well after now: the owner gets every day, today's empty one null; anyone else only
# the days that ended 24 hours before the request, and nothing after them, not even a null.
t_eq "the owner reads all the days" 200 \
    "$(t_api GET "/v1/sensors/$U/readings?from=$d0&to=$((d0 + 5 * 86400))&resolution=day" "$alice")"
t_eq "  five, the last two empty" "5 2" "$(jq -r '"\(.points | length) \([.points[] | select(.[1] == null)] | length)"' "$T_BODY")"
t_before=$(date +%s)
t_eq "the public reads the same range" 200 \
    "$(t_api GET "/v1/sensors/$U/readings?from=$d0&to=$((d0 + 5 * 86400))&resolution=day" "")"
t_after=$(date +%s)
t_eq "  and gets the two days that ended a day ago" "$d0 $((d0 + 86400))" \
    "$(jq -r '[.points[][0]] | map(tostring) | join(" ")' "$T_BODY")"
t_eq "  every point's day ended at least 24 hours before the request" 0 \
    "$(jq --argjson t "$t_after" '[.points[] | select(.[0] + 86400 > $t - 86400)] | length' "$T_BODY")"
t_eq "  and none that had is missing" 0 "$(jq --argjson t "$t_before" --argjson d0 "$d0" \
    '[range($d0; $t - 2 * 86400 + 1; 86400)] - [.points[][0]] | length' "$T_BODY")"
t_eq "  said to be public" public "$(jq -r .access "$T_BODY")"
t_eq "with a delay of 72 hours" 200 "$(t_api PUT "/v1/sensors/$U/sharing" "$alice" \
    -H 'Content-Type: application/json' \
    --data-binary '{"visibility":"public","public_resolution":"day","public_delay_hours":72}')"
t_eq "  the next public read" 200 \
    "$(t_api GET "/v1/sensors/$U/readings?from=$d0&to=$((d0 + 5 * 86400))&resolution=day" "")"
t_eq "  has no day that ended less than 72 hours ago" 0 \
    "$(jq --argjson t "$(date +%s)" '[.points[] | select(.[0] + 86400 > $t - 72 * 3600)] | length' "$T_BODY")"
t_eq "month buckets are no finer than day: allowed" 200 \
    "$(t_api GET "/v1/sensors/$U/readings?from=$d0&to=$((d0 + 5 * 86400))&resolution=month" "")"
t_eq "  but hold only whole months older than the delay" 0 \
    "$(jq --argjson t "$(date +%s)" '[.points[] | select(.[0] > $t - 72 * 3600 - 28 * 86400)] | length' "$T_BODY")"
t_eq "without a resolution, the finest allowed is used" 200 \
    "$(t_api GET "/v1/sensors/$U/readings?from=$d0&to=$((d0 + 86400))" "")"
t_eq "  day" day "$(jq -r .resolution "$T_BODY")"

# --- grants take effect on the next request -----------------------------------------------------
t_eq "bob reads S at hour" 200 "$(t_api GET "/v1/sensors/$S/readings?from=$from&to=$to&resolution=hour" "$bob")"
t_eq "the grant is revoked" 200 "$(t_api PUT "/v1/sensors/$S/sharing" "$alice" \
    -H 'Content-Type: application/json' --data-binary '{"visibility":"shared","grants":[]}')"
t_eq "  the very next read is not found" 404 \
    "$(t_api GET "/v1/sensors/$S/readings?from=$from&to=$to&resolution=hour" "$bob")"
t_eq "a grant at raw" 200 "$(t_api PUT "/v1/sensors/$S/sharing" "$alice" \
    -H 'Content-Type: application/json' \
    --data-binary '{"visibility":"shared","grants":[{"account":"bob","resolution":"raw"}]}')"
t_eq "  reads raw at once" 200 "$(t_api GET "/v1/sensors/$S/readings?from=$from&to=$((from + 3600))" "$bob")"
expected raw "$from" "$((from + 3600))" >"$T_WORK/expected"
t_eq "  the readings" same "$(same_points "$T_WORK/expected")"
t_eq "S made private" 200 "$(t_api PUT "/v1/sensors/$S/sharing" "$alice" \
    -H 'Content-Type: application/json' --data-binary '{"visibility":"private"}')"
t_eq "  bob: not found" 404 "$(t_api GET "/v1/sensors/$S/readings?from=$from&to=$to&resolution=day" "$bob")"

# --- the owner's audit trail ---------------------------------------------------------------------
t_eq "alice reads her audit trail" 200 "$(t_api GET /v1/audit "$alice")"
reads() { # reads SENSOR ACTOR READER: "reads points" of the foreign-read entries
    jq -r --arg s "$1" --arg a "$2" --arg r "$3" '[.entries[] | select(.kind == "foreign_read"
        and .sensor == $s and (.actor // "") == $a and .detail.reader == $r)]
        | "\(map(.detail.reads) | add // 0) \(map(.detail.points) | add // 0)"' "$T_BODY"
}
# bob: hour and day of the matrix (48 + 2 points), hour again (48), raw (12), then nothing.
t_eq "  bob's reads of S, counted" "4 110" "$(reads "$S" bob account)"
t_eq "  bob's read of U, counted" "1 2" "$(reads "$U" bob account)"
t_eq "  carol's read of U, counted" "1 2" "$(reads "$U" carol account)"
# Anonymous reads of U: the matrix's day, the same range, then with 72 hours of delay the range,
# months and the default resolution; how many points the last three hold depends on the date.
t_like "  anonymous reads of U, counted" '^5 ([4-9]|1[0-9])$' "$(reads "$U" "" public)"
t_eq "  nobody else read P" 0 "$(jq --arg s "$P" '[.entries[] | select(.kind == "foreign_read" and .sensor == $s)] | length' "$T_BODY")"
t_eq "  alice's own reads are not foreign" 0 \
    "$(jq '[.entries[] | select(.kind == "foreign_read" and .actor == "alice")] | length' "$T_BODY")"
t_eq "  sharing changes, with before and after" "private shared" \
    "$(jq -r --arg s "$S" '[.entries[] | select(.kind == "sharing_changed" and .sensor == $s)] | last
        | "\(.detail.before.visibility) \(.detail.after.visibility)"' "$T_BODY")"
t_eq "bob's trail holds none of it" 0 \
    "$(t_api GET /v1/audit "$bob" >/dev/null; jq '.entries | length' "$T_BODY")"

# --- row-level security backstop -----------------------------------------------------------------
# The API role with an account bound (or none), as raw SQL: the policies alone decide.
sid() { t_psql "SELECT sid FROM sensors WHERE id = '$1'"; }
Psid="$(sid "$P")" Ssid="$(sid "$S")" Usid="$(sid "$U")"
t_eq "S shared with bob at hour again" 200 "$(t_api PUT "/v1/sensors/$S/sharing" "$alice" \
    -H 'Content-Type: application/json' \
    --data-binary '{"visibility":"shared","grants":[{"account":"bob","resolution":"hour"}]}')"
t_eq "RLS: carol reads none of P's or S's readings" "0 0 0" "$(t_psql_as_account carol \
    "SELECT (SELECT count(*) FROM readings WHERE sensor IN ($Psid, $Ssid)) || ' ' ||
            (SELECT count(*) FROM readings_hourly WHERE sensor IN ($Psid, $Ssid)) || ' ' ||
            (SELECT count(*) FROM readings_daily WHERE sensor IN ($Psid, $Ssid))")"
t_eq "RLS: bob reads S's hours and days, not its raw readings, nothing of P" "0 72 3 0" "$(t_psql_as_account bob \
    "SELECT (SELECT count(*) FROM readings WHERE sensor = $Ssid) || ' ' ||
            (SELECT count(*) FROM readings_hourly WHERE sensor = $Ssid) || ' ' ||
            (SELECT count(*) FROM readings_daily WHERE sensor = $Ssid) || ' ' ||
            (SELECT count(*) FROM readings_hourly WHERE sensor = $Psid)")"
t_eq "RLS: anonymous reads U's old days only" "0 0 0" "$(t_psql_as_account "" \
    "SELECT (SELECT count(*) FROM readings WHERE sensor = $Usid) || ' ' ||
            (SELECT count(*) FROM readings_hourly WHERE sensor = $Usid) || ' ' ||
            (SELECT count(*) FROM readings_daily WHERE sensor = $Usid
             AND bucket + interval '1 day' > now() - interval '72 hours')")"
t_eq "RLS: anonymous sees no sensor, account, grant or trail" "0 0 0 0 0" "$(t_psql_as_account "" \
    "SELECT (SELECT count(*) FROM sensors) || ' ' || (SELECT count(*) FROM accounts) || ' ' ||
            (SELECT count(*) FROM sensor_grants) || ' ' || (SELECT count(*) FROM audit_log)
            || ' ' || (SELECT count(*) FROM foreign_reads)")"
t_eq "RLS: bob cannot see alice's grants, sharing or trail" "0 0 0 0" "$(t_psql_as_account bob \
    "SELECT (SELECT count(*) FROM sensor_grants) || ' ' || (SELECT count(*) FROM sensor_sharing)
            || ' ' || (SELECT count(*) FROM audit_log) || ' ' || (SELECT count(*) FROM foreign_reads)")"
t_eq "RLS: bob's UPDATE of alice's sharing touches nothing" "" "$(t_psql_as_account bob \
    "UPDATE sensor_sharing SET visibility = 'public' WHERE sensor_sid IN ($Ssid, $Usid) RETURNING 1")"
t_eq "  S is still shared" shared "$(t_psql "SELECT visibility FROM sensor_sharing WHERE sensor_sid = $Ssid")"
t_fails "RLS: bob cannot grant himself alice's sensor" t_psql_as_account bob \
    "INSERT INTO sensor_grants (sensor_sid, account_id, grantee_id, resolution)
     VALUES ($Psid, $(t_psql "SELECT id FROM accounts WHERE name = 'alice'"), $(t_psql "SELECT id FROM accounts WHERE name = 'bob'"), 'raw')"
t_eq "  no grant was added" 1 "$(t_psql 'SELECT count(*) FROM sensor_grants')"
t_fails "RLS: bob cannot forge an audit entry for alice" t_psql_as_account bob \
    "INSERT INTO audit_log (account_id, actor_id, kind, sensor_id, detail)
     VALUES ($(t_psql "SELECT id FROM accounts WHERE name = 'alice'"), NULL, 'foreign_read', '$P', '{}')"
t_fails "RLS: nor write foreign reads" t_psql_as_account bob "DELETE FROM foreign_reads"
t_eq "  alice's trail is intact" "$(t_psql "SELECT count(*) FROM audit_log")" \
    "$(t_psql "SELECT count(*) FROM audit_log a JOIN accounts c ON c.id = a.account_id WHERE c.name = 'alice'")"

t_done
