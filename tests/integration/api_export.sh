#!/usr/bin/env bash
#
# GET /v1/export over the real pipeline (ingest, writer, PostgreSQL) and real HTTPS: all of the
# caller's readings as NDJSON or CSV, exactly as stored and nobody else's; bad requests refused
# before anything streams; half a million readings streamed with the API's memory bounded; a
# reader that stalls holds the database thread back instead of filling memory; and a client
# that goes away, a database that fails mid-stream (the chunked body is cut, never ended), or
# a reader silent past idle_timeout_s, none of which wedges the server.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

t_init api_export
t_start_ingest
t_start_writer
t_start_api

alice_dev="$(t_device alice 4)"
bob_dev="$(t_device bob 1)"
counter="$(t_sensor "$alice_dev" 0)" # Wh counter
gauge="$(t_sensor "$alice_dev" 3)"   # W gauge
bobs="$(t_sensor "$bob_dev" 0)"
t_api_account alice bob carol
alice="$(t_api_token alice)"
bob="$(t_api_token bob)"
carol="$(t_api_token carol)"
field() { jq -r "$1" "$T_BODY"; }
header() { { grep -i "^$1:" "$T_HEADERS" || true; } | tr -d '\r'; }
exports() { t_metric api "meterhub_api_exports_total{outcome=\"$1\"}"; }
# exports_reach OUTCOME N: the count of exports that ended so is at least N.
exports_reach() { (($(exports "$1") >= $2)); }
api_pid="$(t_pid api)"
# Under AddressSanitizer freed memory waits in a quarantine, and RSS tells nothing about our
# buffers: the memory bounds are checked on the plain build only.
sanitized=0
if ldd "$MH_BIN/meterhub-api" 2>/dev/null | grep -q libasan; then sanitized=1; fi
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$api_pid/status"; }
# curl_export OUT [CURL ARGS...]: alice's export to the file OUT, without t_api's 10 s limit;
# prints "<status> <bytes>"; curl's exit status goes to $T_WORK/export.rc. OUT "-": the body to
# standard output, and nothing else.
curl_export() {
    local out=$1 rc=0
    shift
    local args=(-sS --max-time 120 --noproxy '*' --cacert "$T_PKI/ca.crt"
        -H "Authorization: Bearer $alice")
    [[ "$out" == - ]] || args+=(-o "$out" -w '%{http_code} %{size_download}')
    curl "${args[@]}" "$@" "https://127.0.0.1:$T_API_PORT/v1/export" 2>>"$T_WORK/curl.err" ||
        rc=$?
    printf '%s\n' "$rc" >"$T_WORK/export.rc"
}

# Twenty readings a minute apart for each sensor, from a day ago; the gauge's values are not
# round in binary.
start=$(($(date +%s) - 86400))
for s in "$counter:1000:10" "$gauge:230.1:0.7"; do
    IFS=: read -r sensor v0 dv <<<"$s"
    t_eq "alice's readings are accepted" 200 "$(t_curl "$alice_dev" "/sensor/$sensor" \
        -H 'Content-Type: application/json' --data-binary "$(json_series "$start" 60 20 "$v0" "$dv")")"
done
t_eq "bob's readings are accepted" 200 "$(t_curl "$bob_dev" "/sensor/$bobs" \
    -H 'Content-Type: application/json' --data-binary "$(json_series "$start" 60 20 5 1)")"
t_ok "the writer stores them" t_wait_until 30 drained

# stored ACCOUNT EXPR: EXPR of each of the account's readings, in export order.
stored() {
    t_psql "SELECT $2 FROM readings r JOIN sensors s ON s.sid = r.sensor
            JOIN accounts a ON a.id = s.account_id WHERE a.name = '$1' ORDER BY s.id, r.ts"
}
# same_file A B: identical files; else their sizes and where they first differ.
same_file() {
    cmp "$1" "$2" && return 0
    wc -c "$1" "$2"
    diff "$1" "$2" | head -n 8
    return 1
}
# whole_again: alice's export once more is complete (curl saw its end) and identical to the
# first big one.
whole_again() {
    local got rc
    got="$(curl_export "$T_WORK/again.ndjson")"
    rc="$(cat "$T_WORK/export.rc")"
    printf 'status and size: %s, curl exit status %s; expected 200 %s, 0\n' "$got" "$rc" "$bytes"
    [[ "$got" == "200 $bytes" && "$rc" == 0 ]] && same_file "$T_WORK/big.ndjson" "$T_WORK/again.ndjson"
}
# This test's API connections (other tests may share the PostgreSQL server).
our_api="application_name = 'meterhub-api' AND datname = current_database()"
ndjson_line='^\{"sensor":"[0-9a-f]{32}","ts":[0-9]+,"value":-?[0-9][0-9.e+-]*\}$'

# --- NDJSON --------------------------------------------------------------------------------------
t_eq "NDJSON by default" 200 "$(t_api GET /v1/export "$alice")"
t_eq "  typed" "Content-Type: application/x-ndjson" "$(header Content-Type)"
t_eq "  streamed in chunks" "Transfer-Encoding: chunked" "$(header Transfer-Encoding)"
t_eq "  not cached" "Cache-Control: no-store" "$(header Cache-Control)"
t_eq "  one line per reading" 40 "$(wc -l <"$T_BODY")"
t_eq "  each a compact object: sensor, ts, value" 0 "$(grep -cvE "$ndjson_line" "$T_BODY" || true)"
t_eq "  exactly the stored readings, by sensor then time" \
    "$(stored alice "json_build_object('sensor', s.id, 'ts', extract(epoch FROM r.ts)::bigint,
                                       'value', r.value)" | jq -c .)" \
    "$(jq -c . "$T_BODY")"
t_eq "  none of bob's" 0 "$(grep -c "$bobs" "$T_BODY" || true)"
t_eq "bob's export is his alone" "20 $bobs" \
    "$(t_api GET /v1/export "$bob" >/dev/null; printf '%s %s' "$(wc -l <"$T_BODY")" \
        "$(jq -r .sensor "$T_BODY" | sort -u)")"

# --- CSV -----------------------------------------------------------------------------------------
expected_csv="$(printf 'sensor,ts,value\n'; stored alice "s.id || ',' || extract(epoch FROM r.ts)::bigint || ',' || r.value")"
t_eq "CSV with Accept: text/csv" 200 "$(t_api GET /v1/export "$alice" -H 'Accept: text/csv')"
t_like "  typed" '^Content-Type: text/csv' "$(header Content-Type)"
t_eq "  exactly the stored readings, as PostgreSQL prints them" "$expected_csv" "$(cat "$T_BODY")"
t_eq "CSV with ?format=csv" 200 "$(t_api GET '/v1/export?format=csv' "$alice")"
t_eq "  the same" "$expected_csv" "$(cat "$T_BODY")"
t_eq "?format=ndjson wins over Accept" 200 "$(t_api GET '/v1/export?format=ndjson' "$alice" -H 'Accept: text/csv')"
t_like "  NDJSON" "$ndjson_line" "$(head -n 1 "$T_BODY")"
t_eq "an account without readings: an empty body" "200 0" \
    "$(printf '%s %s' "$(t_api GET /v1/export "$carol")" "$(wc -c <"$T_BODY")")"
t_eq "  or the CSV header alone" "sensor,ts,value" \
    "$(t_api GET '/v1/export?format=csv' "$carol" >/dev/null; cat "$T_BODY")"

# --- refusals: ordinary JSON answers, nothing streamed -------------------------------------------
t_eq "no token" 401 "$(t_api GET /v1/export "")"
t_eq "  a JSON error" "Content-Type: application/json" "$(header Content-Type)"
t_eq "  not chunked" "" "$(header Transfer-Encoding)"
t_eq "a token nobody issued" 401 "$(t_api GET /v1/export "mht_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")"
t_eq "an unknown parameter" 400 "$(t_api GET '/v1/export?sensor=x' "$alice")"
t_like "  named" "sensor" "$(field .message)"
t_eq "an unknown format" 400 "$(t_api GET '/v1/export?format=xml' "$alice")"
t_eq "format twice" 400 "$(t_api GET '/v1/export?format=csv&format=csv' "$alice")"
t_eq "a malformed query" 400 "$(t_api GET '/v1/export?format=%zz' "$alice")"
t_eq "a wrong method" 405 "$(t_api POST /v1/export "$alice")"

# --- half a million readings ---------------------------------------------------------------------
sid="$(t_psql "SELECT sid FROM sensors WHERE id = '$counter'")"
big0=$(($(date +%s) - 100 * 86400))
t_psql "INSERT INTO readings (sensor, ts, value)
        SELECT $sid, to_timestamp($big0 + 10 * i), 0.25 * i FROM generate_series(1, 500000) i" >/dev/null
t_psql "ANALYZE readings" >/dev/null
hwm0="$(status_kb VmHWM)"
total="$(t_psql "SELECT count(*) FROM readings r JOIN sensors s ON s.sid = r.sensor
                 JOIN accounts a ON a.id = s.account_id WHERE a.name = 'alice'")"
t0=$(date +%s%N)
t_eq "500,000 more readings, as NDJSON" "200" "$(curl_export "$T_WORK/big.ndjson" | cut -d' ' -f1)"
t1=$(date +%s%N)
t_eq "  the chunked body ended properly" 0 "$(cat "$T_WORK/export.rc")"
bytes="$(wc -c <"$T_WORK/big.ndjson")"
t_eq "  every reading" "$total" "$(wc -l <"$T_WORK/big.ndjson")"
t_eq "  every line a compact object" 0 "$(grep -cvE "$ndjson_line" "$T_WORK/big.ndjson" || true)"
t_eq "  the first and last of the big sensor" \
    "{\"sensor\":\"$counter\",\"ts\":$((big0 + 10)),\"value\":0.25} {\"sensor\":\"$counter\",\"ts\":$((big0 + 5000000)),\"value\":125000.0}" \
    "$(grep -F "$counter" "$T_WORK/big.ndjson" | sed -n '1p;500000p' | paste -sd' ')"
t_eq "the same as CSV" "200" "$(curl_export "$T_WORK/big.csv" -H 'Accept: text/csv' | cut -d' ' -f1)"
t_eq "  the chunked body ended properly" 0 "$(cat "$T_WORK/export.rc")"
{ printf 'sensor,ts,value\n'; stored alice "s.id || ',' || extract(epoch FROM r.ts)::bigint || ',' || r.value"; } >"$T_WORK/expected.csv"
t_ok "  byte for byte what PostgreSQL stores" same_file "$T_WORK/expected.csv" "$T_WORK/big.csv"
rm -f "$T_WORK/big.csv" "$T_WORK/expected.csv"
hwm="$(status_kb VmHWM)"
if ((sanitized)); then
    _t_log "AddressSanitizer build: memory bounds not checked"
else
    t_ok "the API's peak RSS stays under 100 MB" test "$hwm" -lt 102400
fi
ms=$(((t1 - t0) / 1000000))
printf '# export: %s readings, %s bytes in %s ms (%s readings/s, %s MB/s); API peak RSS %s kB (%s kB before)\n' \
    "$total" "$bytes" "$ms" "$((total * 1000 / (ms + 1)))" \
    "$(awk -v b="$bytes" -v ms="$ms" 'BEGIN { printf "%.1f", b / 1e6 / (ms / 1000) }')" "$hwm" "$hwm0"

# --- a reader that stalls ------------------------------------------------------------------------
# curl writes into a pipe nobody reads for 4 s: it stops reading the socket, the socket and our
# queue fill, and the database thread must wait instead of buffering 40 MB.
rss0="$(status_kb VmRSS)"
(curl_export - | { sleep 4; wc -l >"$T_WORK/stalled.lines"; }) &
stalled=$!
sleep 2.5
rss1="$(status_kb VmRSS)"
if ((!sanitized)); then
    t_ok "a stalled reader: the API grows by less than 8 MB ($((rss1 - rss0)) kB)" \
        test $((rss1 - rss0)) -lt 8192
fi
t_eq "  the database thread waits inside its transaction" "idle in transaction" \
    "$(t_psql "SELECT state FROM pg_stat_activity WHERE $our_api AND query LIKE 'FETCH%'")"
t_eq "  one export at a time with 2 database threads: another is told to retry" 503 \
    "$(t_api GET /v1/export "$alice")"
t_like "  later" '^Retry-After: [0-9]+' "$(header Retry-After)"
t_eq "  other requests are served meanwhile" 200 "$(t_api GET /v1/me "$alice")"
wait "$stalled"
t_eq "  and once read, the export is whole" "$total" "$(cat "$T_WORK/stalled.lines")"

# --- a client that goes away ---------------------------------------------------------------------
gone0="$(exports client_gone)"
curl_export - | head -c 3000000 >/dev/null
t_ok "a client that hangs up mid-export is noticed" \
    t_wait_until 10 exports_reach client_gone $((gone0 + 1))
t_eq "  the next request is served" 200 "$(t_api GET /v1/me "$alice")"
t_ok "  and so is the next export, whole" whole_again

# --- the database fails mid-stream ---------------------------------------------------------------
failed0="$(exports failed)"
: >"$T_WORK/partial"
curl_export "$T_WORK/partial" --limit-rate 4M >/dev/null &
reader=$!
t_ok "a slow export is under way" t_wait_until 10 test -s "$T_WORK/partial"
t_psql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE $our_api AND query LIKE 'FETCH%'" >/dev/null
wait "$reader"
t_eq "  its database connection dies: the body is cut, not ended (curl: 18, partial)" 18 \
    "$(cat "$T_WORK/export.rc")"
t_ok "  it was short" test "$(wc -c <"$T_WORK/partial")" -lt "$bytes"
t_eq "  counted as failed" $((failed0 + 1)) "$(exports failed)"
t_ok "  the next export is whole" whole_again

# --- a reader silent past idle_timeout_s ---------------------------------------------------------
t_ok "meterhub-api restarts with idle_timeout_s = 2" t_stop_api
T_API_EXTRA="idle_timeout_s = 2" t_write_api_conf
t_start_api
api_pid="$(t_pid api)"
(curl_export - | { sleep 8; cat >/dev/null; }) &
stalled=$!
t_ok "a reader that takes nothing for 2 s is cut off" t_wait_until 8 exports_reach client_gone 1
t_eq "  its database thread is free again" 200 "$(curl_export /dev/null | cut -d' ' -f1)"
wait "$stalled" || true
t_ok "  the transaction is over" test "$(t_psql "SELECT count(*) FROM pg_stat_activity
    WHERE $our_api AND state = 'idle in transaction'")" = 0
t_ok "no export wedged a thread: meterhub-api stops cleanly" t_stop_api

t_done
