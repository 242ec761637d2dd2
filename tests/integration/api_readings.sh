#!/usr/bin/env bash
#
# GET /v1/sensors/{id}/readings for the owner, over the real pipeline (ingest, writer,
# PostgreSQL): raw readings exactly as posted, pages with next_from, hourly and daily buckets
# from the rollups (a gauge's mean, a counter's last reading, null for an empty bucket), CSV;
# every bad query a 400; another account gets 404, and the row-level security backstop keeps
# the API role, bound to another account, from reading the rows.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

t_init api_readings
t_start_ingest
t_start_writer
t_start_api

alice_dev="$(t_device alice 4)"
bob_dev="$(t_device bob 1)"
counter="$(t_sensor "$alice_dev" 0)" # Wh counter
gauge="$(t_sensor "$alice_dev" 3)"   # W gauge
umask 077
printf 'alice-correct-horse\n' >"$T_WORK/alice.pw"
printf 'bob-battery-staple\n' >"$T_WORK/bob.pw"
t_admin account passwd alice --password-file "$T_WORK/alice.pw" >/dev/null
t_admin account passwd bob --password-file "$T_WORK/bob.pw" >/dev/null
token() {
    t_api POST /v1/tokens "" -H 'Content-Type: application/json' \
        --data-binary "{\"username\":\"$1\",\"password\":\"$2\"}" >/dev/null
    jq -r .token "$T_BODY"
}
alice="$(token alice alice-correct-horse)"
bob="$(token bob bob-battery-staple)"
field() { jq -r "$1" "$T_BODY"; }

# Ten readings each, every 30 minutes from 30 s past an hour two days ago: two per hour over
# five hours. Counter 1000 + 10 i, gauge 100 + i.
hour0=$((($(date +%s) - 2 * 86400) / 3600 * 3600))
start=$((hour0 + 30))
t_eq "the counter's readings are accepted" 200 "$(t_curl "$alice_dev" "/sensor/$counter" \
    -H 'Content-Type: application/json' --data-binary "$(json_series "$start" 1800 10 1000 10)")"
t_eq "the gauge's readings are accepted" 200 "$(t_curl "$alice_dev" "/sensor/$gauge" \
    -H 'Content-Type: application/json' --data-binary "$(json_series "$start" 1800 10 100 1)")"
t_ok "the writer stores them" t_wait_until 30 drained

q() { printf '/v1/sensors/%s/readings?%s' "$1" "$2"; }
points() { jq -r '.points[] | "\(.[0]),\(.[1])"' "$T_BODY" | paste -sd' '; }

# --- raw ---------------------------------------------------------------------------------------
expected="$(for ((i = 0; i < 10; i++)); do printf '%d,%d ' $((start + i * 1800)) $((1000 + 10 * i)); done)"
t_eq "raw readings" 200 "$(t_api GET "$(q "$counter" "from=$start&to=$((start + 18000))")" "$alice")"
t_eq "  exactly as posted" "${expected% }" "$(points)"
t_eq "  described" "raw counter Wh" "$(field '"\(.resolution) \(.type) \(.unit)"')"
t_eq "  no next page" null "$(field .next_from)"
t_eq "a page of 4" 200 "$(t_api GET "$(q "$counter" "from=$start&to=$((start + 18000))&limit=4")" "$alice")"
t_eq "  has 4 points" 4 "$(field '.points | length')"
t_eq "  and says where the next starts" $((start + 4 * 1800)) "$(field .next_from)"
t_eq "the next page" 200 "$(t_api GET "$(q "$counter" "from=$((start + 4 * 1800))&to=$((start + 18000))&limit=4")" "$alice")"
t_eq "  continues" "$((start + 4 * 1800)),1040" "$(jq -r '.points[0] | "\(.[0]),\(.[1])"' "$T_BODY")"
t_eq "to is exclusive" 2 "$(t_api GET "$(q "$counter" "from=$start&to=$((start + 3600))")" "$alice" >/dev/null; field '.points | length')"

# --- hour and day ------------------------------------------------------------------------------
expected_c="" expected_g=""
for ((h = 0; h < 6; h++)); do
    if ((h < 5)); then
        expected_c+="$((hour0 + h * 3600)),$((1000 + 10 * (2 * h + 1))) "
        expected_g+="$((hour0 + h * 3600)),$(awk -v h=$h 'BEGIN { print 100 + 2 * h + 0.5 }') "
    else
        expected_c+="$((hour0 + h * 3600)),null "
        expected_g+="$((hour0 + h * 3600)),null "
    fi
done
t_eq "hourly counter" 200 "$(t_api GET "$(q "$counter" "from=$hour0&to=$((hour0 + 6 * 3600))&resolution=hour")" "$alice")"
t_eq "  the last reading of each hour, null for the empty one" "${expected_c% }" "$(points)"
t_eq "hourly gauge" 200 "$(t_api GET "$(q "$gauge" "from=$hour0&to=$((hour0 + 6 * 3600))&resolution=hour")" "$alice")"
t_eq "  the mean of each hour" "${expected_g% }" "$(points)"
day0=$((hour0 / 86400 * 86400))
t_eq "daily counter" 200 "$(t_api GET "$(q "$counter" "from=$day0&to=$((day0 + 2 * 86400))&resolution=day")" "$alice")"
t_eq "  the last reading of the day(s) it has" 1090 \
    "$(jq -r '[.points[] | select(.[1] != null)] | last | .[1]' "$T_BODY")"
t_eq "  two days" 2 "$(field '.points | length')"

t_eq "a century of hours" 200 "$(t_api GET "$(q "$counter" "from=0&to=4102444800&resolution=hour")" "$alice")"
t_eq "  is paged at the default limit" "1000 3600000" "$(field '"\(.points | length) \(.next_from)"')"
t_like "  with the standard reason phrase" '^HTTP/1.1 200 OK' "$(head -n 1 "$T_HEADERS" | tr -d '\r')"

# --- minute, 15min, month, units and rates -----------------------------------------------------
t_eq "15-minute counter" 200 "$(t_api GET "$(q "$counter" "from=$hour0&to=$((hour0 + 3600))&resolution=15min")" "$alice")"
t_eq "  from the raw readings, null between them" "$hour0,1000 $((hour0 + 900)),null $((hour0 + 1800)),1010 $((hour0 + 2700)),null" "$(points)"
t_eq "minute gauge" 200 "$(t_api GET "$(q "$gauge" "from=$hour0&to=$((hour0 + 120))&resolution=minute")" "$alice")"
t_eq "  the mean of each minute" "$hour0,100 $((hour0 + 60)),null" "$(points)"
t_eq "monthly counter" 200 "$(t_api GET "$(q "$counter" "from=$day0&to=$((day0 + 86400))&resolution=month")" "$alice")"
t_eq "  the last reading of the month" 1090 "$(jq -r '[.points[] | select(.[1] != null)] | last | .[1]' "$T_BODY")"
t_eq "raw counter in W" 200 "$(t_api GET "$(q "$counter" "from=$start&to=$((start + 5400))&unit=W")" "$alice")"
# 10 Wh every 1800 s is 20 W; the first reading has none before it.
t_eq "  the rate between readings" "$start,null $((start + 1800)),20 $((start + 3600)),20" "$(points)"
t_eq "  said in W" W "$(field .unit)"
t_eq "the rate of a later page uses the reading before it" 200 \
    "$(t_api GET "$(q "$counter" "from=$((start + 1800))&to=$((start + 3600))&unit=W")" "$alice")"
t_eq "  20 W" "$((start + 1800)),20" "$(points)"
t_eq "hourly counter in W" 200 "$(t_api GET "$(q "$counter" "from=$hour0&to=$((hour0 + 3 * 3600))&resolution=hour&unit=W")" "$alice")"
t_eq "  from the last reading of each hour to the next's" "$hour0,null $((hour0 + 3600)),20 $((hour0 + 7200)),20" "$(points)"
t_eq "hourly counter in kWh/year" 200 "$(t_api GET "$(q "$counter" "from=$((hour0 + 3600))&to=$((hour0 + 7200))&resolution=hour&unit=kWh%2Fyear")" "$alice")"
t_eq "  20 W is 175.2 kWh a year" "$((hour0 + 3600)) 175.2" \
    "$(jq -r '.points[0] | "\(.[0]) \(.[1] * 1e9 | round / 1e9)"' "$T_BODY")"
t_eq "the index in kWh" 200 "$(t_api GET "$(q "$counter" "from=$start&to=$((start + 1))&unit=kWh")" "$alice")"
t_eq "  1000 Wh is 1 kWh" "$start,1" "$(points)"
t_eq "a gauge in kW" 200 "$(t_api GET "$(q "$gauge" "from=$start&to=$((start + 1))&unit=kW")" "$alice")"
t_eq "  100 W is 0.1 kW" "$start,0.1" "$(points)"
t_eq "a unit the sensor cannot give" 400 "$(t_api GET "$(q "$counter" "from=1&to=2&unit=L%2Fmin")" "$alice")"
t_like "  lists the ones it can" 'Wh, kWh, W, kWh/year' "$(field .message)"
t_eq "a unit that is no unit" 400 "$(t_api GET "$(q "$counter" "from=1&to=2&unit=%20")" "$alice")"

# --- Flukso-compatible reads -------------------------------------------------------------------
fl() { t_api GET "/sensor/$1" "" -H "X-Version: 1.0" "${@:2}"; }
t_eq "Flukso: hourly watts with X-Token" 200 \
    "$(fl "$counter?start=$hour0&end=$((hour0 + 7200))&resolution=hour&unit=watt" -H "X-Token: $alice")"
t_eq "  [[ts, value]] with nan for what has none" "[[$hour0,\"nan\"],[$((hour0 + 3600)),20]]" "$(jq -c . "$T_BODY")"
t_eq "  watt is the default for electricity" 200 \
    "$(fl "$counter?start=$hour0&end=$((hour0 + 7200))&resolution=hour&token=$alice")"
t_eq "  the same, with token=" "[[$hour0,\"nan\"],[$((hour0 + 3600)),20]]" "$(jq -c . "$T_BODY")"
t_eq "  as CSV" 200 "$(fl "$counter?start=$hour0&end=$((hour0 + 7200))&resolution=hour" -H "X-Token: $alice" -H 'Accept: text/csv')"
t_eq "  ts,value lines" "$hour0,nan $((hour0 + 3600)),20" "$(paste -sd' ' "$T_BODY")"
t_eq "  an interval without a resolution" 200 "$(fl "$gauge?interval=day" -H "X-Token: $alice")"
t_eq "  gives 15-minute points" 97 "$(jq length "$T_BODY")"
t_eq "  another version" 400 "$(t_api GET "/sensor/$counter?interval=day" "" -H "X-Token: $alice" -H 'X-Version: 2.0')"
t_eq "  an unknown interval" 400 "$(fl "$counter?interval=week" -H "X-Token: $alice")"
t_eq "  interval and start" 400 "$(fl "$counter?interval=day&start=1" -H "X-Token: $alice")"
t_eq "  neither" 400 "$(fl "$counter?resolution=hour" -H "X-Token: $alice")"
t_eq "  a unit Flukso does not have" 400 "$(fl "$counter?interval=day&unit=W" -H "X-Token: $alice")"
t_eq "  a unit this sensor cannot give" 400 "$(fl "$counter?interval=day&unit=lpermin" -H "X-Token: $alice")"
t_eq "  an unknown parameter" 400 "$(fl "$counter?interval=day&foo=1" -H "X-Token: $alice")"
t_eq "  too many points" 400 "$(fl "$counter?start=0&end=4102444800&resolution=minute" -H "X-Token: $alice")"
t_eq "    named" too_many_points "$(field .error)"
t_eq "  bob: not found" 404 "$(fl "$counter?interval=day" -H "X-Token: $bob")"
t_eq "  no token: not found" 404 "$(fl "$counter?interval=day")"
t_eq "  a wrong token" 401 "$(fl "$counter?interval=day" -H "X-Token: mht_0000000000000000000000000000000000000000000")"

# --- CSV ---------------------------------------------------------------------------------------
t_eq "CSV on request" 200 "$(t_api GET "$(q "$counter" "from=$start&to=$((start + 3600))")" "$alice" -H 'Accept: text/csv')"
t_eq "  header and rows" "ts,value $start,1000 $((start + 1800)),1010" "$(paste -sd' ' "$T_BODY")"
t_like "  typed" '^Content-Type: text/csv' "$(grep -i '^Content-Type' "$T_HEADERS" | tr -d '\r')"

# --- refusals ----------------------------------------------------------------------------------
bad() { t_api GET "$(q "$counter" "$1")" "$alice"; }
t_eq "no to" 400 "$(bad "from=$start")"
t_eq "to before from" 400 "$(bad "from=$start&to=$((start - 1))")"
t_eq "from not a number" 400 "$(bad "from=yesterday&to=$start")"
t_eq "an unknown parameter" 400 "$(bad "from=1&to=2&sort=desc")"
t_like "  named" 'sort' "$(field .message)"
t_eq "a repeated parameter" 400 "$(bad "from=1&from=2&to=3")"
t_eq "an unsupported resolution" 400 "$(bad "from=1&to=2&resolution=second")"
t_eq "limit 0" 400 "$(bad "from=1&to=2&limit=0")"
t_eq "limit too large" 400 "$(bad "from=1&to=2&limit=1000000")"
t_eq "SQL in a parameter" 400 "$(bad "from=1;DROP%20TABLE%20readings&to=2")"
# Without a token only public sensors are found (api_privacy.sh); this one is private.
t_eq "no token: not found" 404 "$(t_api GET "$(q "$counter" "from=1&to=2")" "")"
t_eq "bob reads alice's sensor: not found" 404 "$(t_api GET "$(q "$counter" "from=$start&to=$((start + 18000))")" "$bob")"
t_eq "a sensor that does not exist: the same" 404 "$(t_api GET "$(q 0123456789abcdef0123456789abcdef "from=1&to=2")" "$bob")"
t_eq "the readings are still all there" 20 "$(t_psql 'SELECT count(*) FROM readings')"

# --- row-level security backstop ---------------------------------------------------------------
sid="$(t_psql "SELECT sid FROM sensors WHERE id = '$counter'")"
t_eq "RLS: alice bound reads her readings" 10 "$(t_psql_as_account alice "SELECT count(*) FROM readings WHERE sensor = $sid")"
t_eq "RLS: bob bound reads none of them" 0 "$(t_psql_as_account bob "SELECT count(*) FROM readings WHERE sensor = $sid")"
t_eq "RLS: nor their rollups" 0 "$(t_psql_as_account bob "SELECT count(*) FROM readings_hourly WHERE sensor = $sid")"
t_fails "RLS: the API role cannot write readings" t_psql_as_account alice \
    "INSERT INTO readings (sensor, ts, value) VALUES ($sid, now(), 1)"

t_done
