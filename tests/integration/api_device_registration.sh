#!/usr/bin/env bash
#
# Registering devices through meterhub-api (POST /v1/devices) and changing devices and sensors
# (PATCH), over real HTTPS with ingest and the writer running: a device registered from a CSR,
# or with a key the service generates, posts readings that land; every refused registration
# inserts nothing; a location is stored rounded to 0.01 degree; secrets never come back in any
# answer and the API role cannot read them; another account's device or sensor is a 404; a
# sensor's new type reaches ingest; revoking a registered device stops it at ingest; without a
# device CA, registration answers 503.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

t_init api_device_registration
t_start_ingest
t_start_writer
t_start_api

t_api_account alice bob
token() { t_api_token "$@"; }
alice="$(token alice manage)"
alice_read="$(token alice read)"
bob="$(token bob manage)"
t_like "tokens issued" '^mht_.* mht_.* mht_' "$alice $alice_read $bob"

field() { jq -r "$1" "$T_BODY"; }
# Every answer body of the test also goes to bodies, to look for secrets in at the end.
keep() { cat "$T_BODY" >>"$T_WORK/bodies"; }
send() {
    local code
    code="$(t_api "$1" "$2" "$3" -H 'Content-Type: application/json' --data-binary "$4")"
    keep
    printf '%s\n' "$code"
}
register() { send POST /v1/devices "$1" "$2"; }
get() {
    local code
    code="$(t_api GET "$1" "$2")"
    keep
    printf '%s\n' "$code"
}
counts() { t_psql "SELECT (SELECT count(*) FROM devices) || ' ' || (SELECT count(*) FROM sensors)"; }
# save_creds DIR: the answer's certificate and CA as the files t_curl uses (DIR/device.key is
# the caller's).
save_creds() {
    mkdir -p "$1"
    jq -j .certificate "$T_BODY" >"$1/device.crt"
    jq -j .ca "$T_BODY" >"$1/ca.crt"
}
post_ok() {
    [[ "$(t_curl "$1" "/sensor/$2" -H 'Content-Type: application/json' \
        --data-binary "$3")" == "$4" ]]
}
landed() { (($(stored_count "$1") >= $2)); }
now=$(date +%s)

# --- a device from a CSR -----------------------------------------------------------------------
kitchen="$T_WORK/devices/kitchen"
mkdir -p "$kitchen"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$kitchen/device.key" \
    -subj "/CN=kitchen-meter/O=not the service" -out "$T_WORK/kitchen.csr" 2>/dev/null
body="$(jq -n --rawfile csr "$T_WORK/kitchen.csr" '{csr: $csr, name: "Kitchen", sensors: [
    {kind: "electricity", type: "counter", unit: "Wh", name: "mains"},
    {kind: "water", type: "gauge", unit: "L/min"}]}')"
t_eq "alice registers a device from a CSR" 201 "$(register "$alice" "$body")"
kitchen_id="$(field .id)"
t_like "  a fresh device id" '^[0-9a-f]{32}$' "$kitchen_id"
t_eq "  the device as GET shows it" "Kitchen active null [] 2" \
    "$(field '"\(.name) \(.status) \(.location) \(.secret_names | tojson) \(.sensors | length)"')"
t_eq "  no private key: the CSR's holder has it" false "$(field 'has("private_key")')"
save_creds "$kitchen"
t_ok "  the CA is the PKI's ca.crt" cmp "$kitchen/ca.crt" "$T_PKI/ca.crt"
t_eq "  the certificate names the device, not what the CSR asked" "$kitchen_id" \
    "$(openssl x509 -in "$kitchen/device.crt" -noout -subject -nameopt multiline | sed -n 's/^ *commonName *= *//p')"
t_ok "  it verifies against the device CA" \
    openssl verify -CAfile "$T_PKI/ca.crt" -untrusted "$T_PKI/device-ca.crt" "$kitchen/device.crt"
t_eq "  and carries the CSR's key" "$(openssl pkey -in "$kitchen/device.key" -pubout)" \
    "$(openssl x509 -in "$kitchen/device.crt" -noout -pubkey)"
t_eq "  the row's fingerprint is the SHA-256 of the certificate" \
    "$(openssl x509 -in "$kitchen/device.crt" -outform DER | sha256sum | cut -d' ' -f1)" \
    "$(t_psql "SELECT encode(cert_fingerprint, 'hex') FROM devices WHERE id = '$kitchen_id'")"
mains="$(field '.sensors[0]')"
tap="$(field '.sensors[1]')"
t_eq "  its sensors in the order asked" "electricity counter Wh mains $kitchen_id" \
    "$(get "/v1/sensors/$mains" "$alice_read" >/dev/null
        field '"\(.kind) \(.type) \(.unit) \(.name) \(.device)"')"
t_eq "  the second without a name" "water gauge L/min null" \
    "$(get "/v1/sensors/$tap" "$alice_read" >/dev/null
        field '"\(.kind) \(.type) \(.unit) \(.name)"')"
t_eq "  GET shows the same device" "Kitchen $mains,$tap" \
    "$(get "/v1/devices/$kitchen_id" "$alice_read" >/dev/null
        field '"\(.name) \(.sensors | join(","))"')"
t_ok "the device posts to ingest" t_wait_until 10 post_ok "$kitchen" "$mains" \
    "{\"measurements\":[[$now,1000],[$((now + 1)),1001]]}" 200
t_ok "  and its readings land" t_wait_until 15 landed "$mains" 2
t_ok "its gauge too" post_ok "$kitchen" "$tap" "{\"measurements\":[[$now,3.5]]}" 200

# --- a device with a generated key -------------------------------------------------------------
t_eq "alice registers a simulated device with a generated key" 201 \
    "$(register "$alice" '{"generate_key":true,"sensors":[{"kind":"gas","type":"counter","unit":"m3"}]}')"
sim_id="$(field .id)"
sim="$T_WORK/devices/sim"
save_creds "$sim"
jq -j .private_key "$T_BODY" >"$sim/device.key"
t_like "  the answer has the private key, this once" '^-----BEGIN PRIVATE KEY-----' "$(head -n 1 "$sim/device.key")"
t_eq "  matching the certificate" "$(openssl pkey -in "$sim/device.key" -pubout)" \
    "$(openssl x509 -in "$sim/device.crt" -noout -pubkey)"
t_eq "  unnamed" null "$(field .name)"
sim_gas="$(field '.sensors[0]')"
t_eq "  GET never shows a key or certificate" "false false" \
    "$(get "/v1/devices/$sim_id" "$alice" >/dev/null; field '"\(has("private_key")) \(has("certificate"))"')"
t_ok "the simulated device posts" t_wait_until 10 post_ok "$sim" "$sim_gas" \
    "{\"measurements\":[[$now,12.5]]}" 200
t_ok "  and its reading lands" t_wait_until 15 landed "$sim_gas" 1

# --- refusals insert nothing -------------------------------------------------------------------
n0="$(counts)"
t_eq "a CSR that is not one" 400 "$(register "$alice" '{"csr":"hello"}')"
t_like "  says so" 'not a PEM certificate request' "$(field .message)"
t_eq "a CSR with a broken body" 400 "$(register "$alice" \
    '{"csr":"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}')"
# The last byte of the DER is the last byte of the ECDSA signature's s.
openssl req -in "$T_WORK/kitchen.csr" -outform DER -out "$T_WORK/csr.der"
python3 -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-1] ^= 1; open(p, "wb").write(b)' \
    "$T_WORK/csr.der"
{
    printf -- '-----BEGIN CERTIFICATE REQUEST-----\n'
    base64 -w 64 "$T_WORK/csr.der"
    printf -- '-----END CERTIFICATE REQUEST-----\n'
} >"$T_WORK/tampered.csr"
t_eq "a CSR whose signature was tampered with" 400 \
    "$(register "$alice" "$(jq -n --rawfile csr "$T_WORK/tampered.csr" '{csr: $csr}')")"
t_like "  says so" 'signature does not verify' "$(field .message)"
openssl req -new -newkey rsa:1024 -nodes -keyout "$T_WORK/weak.key" -subj /CN=weak \
    -out "$T_WORK/weak.csr" 2>/dev/null
t_eq "a CSR with a weak key (RSA 1024)" 400 \
    "$(register "$alice" "$(jq -n --rawfile csr "$T_WORK/weak.csr" '{csr: $csr}')")"
t_like "  says so" 'key is not accepted' "$(field .message)"
t_eq "the same CSR twice is fine (a new device)" 201 "$(register "$alice" "$body")"
t_psql "DELETE FROM devices WHERE id = '$(field .id)'" >/dev/null
t_eq "an unknown field" 400 "$(register "$alice" '{"generate_key":true,"owner":"bob"}')"
t_like "  named" 'owner' "$(field .message)"
t_eq "both a CSR and generate_key" 400 \
    "$(register "$alice" "$(jq -n --rawfile csr "$T_WORK/kitchen.csr" '{csr: $csr, generate_key: true}')")"
t_eq "neither" 400 "$(register "$alice" '{"name":"nothing"}')"
t_eq "generate_key false alone" 400 "$(register "$alice" '{"generate_key":false}')"
t_eq "generate_key as a string" 400 "$(register "$alice" '{"generate_key":"yes"}')"
t_eq "a CSR as a number" 400 "$(register "$alice" '{"csr":42}')"
t_eq "sensors not a list" 400 "$(register "$alice" '{"generate_key":true,"sensors":{}}')"
t_eq "a sensor of steam" 400 \
    "$(register "$alice" '{"generate_key":true,"sensors":[{"kind":"steam","type":"counter","unit":"Wh"}]}')"
t_like "  named" 'sensors\[0\]\.kind' "$(field .message)"
t_eq "a sensor in kWh" 400 \
    "$(register "$alice" '{"generate_key":true,"sensors":[{"kind":"electricity","type":"counter","unit":"kWh"}]}')"
t_eq "a sensor without a type" 400 \
    "$(register "$alice" '{"generate_key":true,"sensors":[{"kind":"electricity","unit":"Wh"}]}')"
t_eq "a sensor with an unknown field" 400 \
    "$(register "$alice" '{"generate_key":true,"sensors":[{"kind":"gas","type":"counter","unit":"L","serial":1}]}')"
many="$(jq -nc '{generate_key: true, sensors: [range(65) | {kind: "gas", type: "counter", unit: "L"}]}')"
t_eq "65 sensors" 400 "$(register "$alice" "$many")"
t_eq "a name of 65 characters" 400 \
    "$(register "$alice" "{\"generate_key\":true,\"name\":\"$(printf 'x%.0s' {1..65})\"}")"
t_eq "a name with a control character" 400 "$(register "$alice" '{"generate_key":true,"name":"a\u0007b"}')"
t_eq "malformed JSON" 400 "$(register "$alice" '{"generate_key":')"
t_eq "a read-only token" 403 "$(register "$alice_read" '{"generate_key":true}')"
t_eq "no token" 401 "$(register "" '{"generate_key":true}')"
t_eq "nothing was inserted by any of them" "$n0" "$(counts)"
t_eq "a 64-sensor device is fine" 201 \
    "$(register "$alice" "$(jq -nc '{generate_key: true, name: "Big",
        sensors: [range(64) | {kind: "water", type: "counter", unit: "L"}]}')")"
t_eq "  with 64 sensors" 64 "$(field '.sensors | length')"
t_psql "DELETE FROM devices WHERE id = '$(field .id)'" >/dev/null

# --- PATCH a device ----------------------------------------------------------------------------
patch() { send PATCH "/v1/devices/$1" "$2" "$3"; }
location_row() { t_psql "SELECT coalesce(location_lat || ' ' || location_lon, 'none') FROM devices WHERE id = '$1'"; }
t_eq "alice places her device" 200 "$(patch "$kitchen_id" "$alice" '{"location":{"lat":50.846711,"lon":4.352487}}')"
t_eq "  rounded to 0.01 degree" '{"lat":50.85,"lon":4.35}' "$(jq -c .location "$T_BODY")"
t_like "  and printed so" '"location":\{"lat":50.85,"lon":4.35\}' "$(cat "$T_BODY")"
t_eq "  the row holds the rounded value, not the exact one" "50.85 4.35" "$(location_row "$kitchen_id")"
t_eq "the south and east" 200 "$(patch "$kitchen_id" "$alice" '{"location":{"lat":-33.86785,"lon":151.20732}}')"
t_eq "  rounded" "-33.87 151.21" "$(location_row "$kitchen_id")"
t_eq "whole degrees" 200 "$(patch "$kitchen_id" "$alice" '{"location":{"lat":0,"lon":-180}}')"
t_eq "  stored" "0.00 -180.00" "$(location_row "$kitchen_id")"
t_eq "a latitude of 91" 400 "$(patch "$kitchen_id" "$alice" '{"location":{"lat":91,"lon":4}}')"
t_eq "a longitude of -180.5" 400 "$(patch "$kitchen_id" "$alice" '{"location":{"lat":50,"lon":-180.5}}')"
t_eq "a location without lon" 400 "$(patch "$kitchen_id" "$alice" '{"location":{"lat":50}}')"
t_eq "a latitude as a string" 400 "$(patch "$kitchen_id" "$alice" '{"location":{"lat":"50","lon":4}}')"
t_eq "a location with an altitude" 400 "$(patch "$kitchen_id" "$alice" '{"location":{"lat":50,"lon":4,"alt":80}}')"
t_eq "  none of them changed it" "0.00 -180.00" "$(location_row "$kitchen_id")"
t_eq "alice clears the location" 200 "$(patch "$kitchen_id" "$alice" '{"location":null}')"
t_eq "  gone" "null none" "$(field .location) $(location_row "$kitchen_id")"
t_eq "alice renames her device" 200 "$(patch "$kitchen_id" "$alice" '{"name":"Kitchen meter"}')"
t_eq "  renamed" "Kitchen meter" "$(field .name)"
t_eq "a name that is a number" 400 "$(patch "$kitchen_id" "$alice" '{"name":5}')"
t_eq "an unknown field" 400 "$(patch "$kitchen_id" "$alice" '{"name":"x","colour":"red"}')"
t_eq "an empty change" 400 "$(patch "$kitchen_id" "$alice" '{}')"
t_eq "a read-only token" 403 "$(patch "$kitchen_id" "$alice_read" '{"name":"x"}')"
t_eq "no token" 401 "$(patch "$kitchen_id" "" '{"name":"x"}')"

# Secrets: write-only.
psk='S3cret-W1fi-Passphrase-8491'
mqtt='tok-ZX81-not-for-anyone'
t_eq "alice gives her device secrets" 200 \
    "$(patch "$kitchen_id" "$alice" "{\"secrets\":{\"wifi_psk\":\"$psk\",\"mqtt_token\":\"$mqtt\"}}")"
t_eq "  the answer shows their names only" '["mqtt_token","wifi_psk"]' "$(jq -c .secret_names "$T_BODY")"
t_eq "  stored (as the schema owner sees)" "$psk $mqtt" \
    "$(t_psql "SELECT (secrets->>'wifi_psk') || ' ' || (secrets->>'mqtt_token') FROM devices WHERE id = '$kitchen_id'")"
t_eq "  with the names beside them" "{mqtt_token,wifi_psk}" \
    "$(t_psql "SELECT secret_names FROM devices WHERE id = '$kitchen_id'")"
t_eq "  the name is kept" "Kitchen meter" "$(field .name)"
t_eq "17 secrets" 400 "$(patch "$kitchen_id" "$alice" \
    "$(jq -nc '{secrets: ([range(17) | {key: "s\(.)", value: "v"}] | from_entries)}')")"
t_eq "an empty secret" 400 "$(patch "$kitchen_id" "$alice" '{"secrets":{"wifi_psk":""}}')"
t_eq "a secret that is not a string" 400 "$(patch "$kitchen_id" "$alice" '{"secrets":{"pin":1234}}')"
t_eq "a secret with a bad name" 400 "$(patch "$kitchen_id" "$alice" "{\"secrets\":{\"wifi key\":\"$psk\"}}")"
t_eq "secrets that are a list" 400 "$(patch "$kitchen_id" "$alice" "{\"secrets\":[\"$psk\"]}")"
t_eq "  still the two secrets" "{mqtt_token,wifi_psk}" \
    "$(t_psql "SELECT secret_names FROM devices WHERE id = '$kitchen_id'")"

# The API role, bound to alice as meterhub-api binds it, cannot read them back in any way.
t_fails "the API role cannot SELECT the secrets column" t_psql_as api "SELECT secrets FROM devices"
t_fails "  not even for alice's own device" t_psql_as_account alice "SELECT secrets FROM devices WHERE id = '$kitchen_id'"
t_fails "  nor with SELECT *" t_psql_as_account alice "SELECT * FROM devices"
t_fails "  nor through RETURNING" t_psql_as_account alice "UPDATE devices SET name = 'x' WHERE id = '$kitchen_id' RETURNING secrets"
t_fails "  nor by testing values" t_psql_as_account alice "SELECT count(*) FROM devices WHERE secrets->>'wifi_psk' LIKE 'S%'"
t_eq "  while their names are readable" "{mqtt_token,wifi_psk}" \
    "$(t_psql_as_account alice "SELECT secret_names FROM devices WHERE id = '$kitchen_id'")"
t_eq "  and every other column of devices" 1 \
    "$(t_psql_as_account alice "SELECT count(*) FROM devices WHERE name IS NOT NULL AND status = 'active'
        AND id = '$kitchen_id'")"
t_eq "  the name survived those attempts" "Kitchen meter" \
    "$(t_psql "SELECT name FROM devices WHERE id = '$kitchen_id'")"

t_eq "secrets replace the whole set" 200 "$(patch "$kitchen_id" "$alice" "{\"secrets\":{\"wifi_psk\":\"$psk-2\"}}")"
t_eq "  one name left" '["wifi_psk"]' "$(jq -c .secret_names "$T_BODY")"
t_eq "  one value left" "$psk-2 null" \
    "$(t_psql "SELECT (secrets->>'wifi_psk') || ' ' || coalesce(secrets->>'mqtt_token', 'null') FROM devices WHERE id = '$kitchen_id'")"

# --- other accounts ----------------------------------------------------------------------------
t_eq "bob registers his own device" 201 "$(register "$bob" '{"generate_key":true,"name":"Bob'"'"'s","sensors":[{"kind":"gas","type":"counter","unit":"L"}]}')"
bob_id="$(field .id)"
bob_gas="$(field '.sensors[0]')"
t_eq "  alice does not see it" 404 "$(get "/v1/devices/$bob_id" "$alice")"
t_eq "bob cannot change alice's device" 404 "$(patch "$kitchen_id" "$bob" '{"name":"mine now"}')"
foreign="$(cat "$T_BODY")"
t_eq "a device that does not exist" 404 "$(patch 0123456789abcdef0123456789abcdef "$bob" '{"name":"mine now"}')"
t_eq "  gets the very same answer" "$foreign" "$(cat "$T_BODY")"
t_eq "bob cannot set alice's secrets" 404 "$(patch "$kitchen_id" "$bob" '{"secrets":{"wifi_psk":"bobs"}}')"
t_eq "alice cannot change bob's device" 404 "$(patch "$bob_id" "$alice" '{"location":{"lat":1,"lon":1}}')"
t_eq "  nothing of theirs changed" "Kitchen meter|$psk-2|Bob's|none" \
    "$(t_psql "SELECT (SELECT name || '|' || (secrets->>'wifi_psk') FROM devices WHERE id = '$kitchen_id')
        || '|' || (SELECT name || '|' || coalesce(location_lat::text, 'none') FROM devices WHERE id = '$bob_id')")"
t_eq "bob cannot change alice's sensor" 404 "$(send PATCH "/v1/sensors/$mains" "$bob" '{"name":"mine"}')"
t_eq "alice cannot change bob's sensor" 404 "$(send PATCH "/v1/sensors/$bob_gas" "$alice" '{"type":"gauge"}')"
t_eq "  both unchanged" "mains counter|null counter" \
    "$(t_psql "SELECT (SELECT coalesce(name, 'null') || ' ' || type FROM sensors WHERE id = '$mains')
        || '|' || (SELECT coalesce(name, 'null') || ' ' || type FROM sensors WHERE id = '$bob_gas')")"
bob_account="$(t_psql "SELECT id FROM accounts WHERE name = 'bob'")"
alice_account="$(t_psql "SELECT id FROM accounts WHERE name = 'alice'")"
kitchen_did="$(t_psql "SELECT did FROM devices WHERE id = '$kitchen_id'")"
t_fails "RLS: bob cannot hang a sensor of his on alice's device" t_psql_as_account bob \
    "INSERT INTO sensors (id, device_did, account_id, kind, type, unit)
     VALUES ('00000000000000000000000000000001', $kitchen_did, $bob_account, 'gas', 'counter', 'L')"
t_fails "RLS: nor register a device for alice" t_psql_as_account bob \
    "INSERT INTO devices (id, account_id, cert_fingerprint)
     VALUES ('00000000000000000000000000000002', $alice_account, sha256('x'))"

# --- PATCH a sensor ----------------------------------------------------------------------------
spatch() { send PATCH "/v1/sensors/$1" "$2" "$3"; }
t_eq "alice names her tap sensor" 200 "$(spatch "$tap" "$alice" '{"name":"Garden tap"}')"
t_eq "  named" "Garden tap water gauge L/min" "$(field '"\(.name) \(.kind) \(.type) \(.unit)"')"
t_eq "  GET shows it" "Garden tap" "$(get "/v1/sensors/$tap" "$alice_read" >/dev/null; field .name)"
t_eq "and clears the name" 200 "$(spatch "$tap" "$alice" '{"name":null}')"
t_eq "  cleared" null "$(field .name)"
t_eq "a kind of steam" 400 "$(spatch "$tap" "$alice" '{"kind":"steam"}')"
t_eq "a type of rate" 400 "$(spatch "$tap" "$alice" '{"type":"rate"}')"
t_eq "a unit of kWh" 400 "$(spatch "$tap" "$alice" '{"unit":"kWh"}')"
t_eq "an unknown field" 400 "$(spatch "$tap" "$alice" '{"device":"'"$bob_id"'"}')"
t_eq "an empty change" 400 "$(spatch "$tap" "$alice" '{}')"
t_eq "a read-only token" 403 "$(spatch "$tap" "$alice_read" '{"name":"x"}')"
t_eq "  none changed it" "water gauge L/min" "$(t_psql "SELECT kind || ' ' || type || ' ' || unit FROM sensors WHERE id = '$tap'")"

# A new type reaches ingest: a decreasing batch is refused for a counter, accepted for a gauge.
dec="{\"measurements\":[[$((now + 10)),2000],[$((now + 11)),1900]]}"
t_eq "ingest refuses a decreasing counter" 400 "$(t_curl "$kitchen" "/sensor/$mains" \
    -H 'Content-Type: application/json' --data-binary "$dec")"
t_eq "alice makes the mains sensor a power gauge" 200 "$(spatch "$mains" "$alice" '{"type":"gauge","unit":"W"}')"
t_eq "  changed" "electricity gauge W mains" "$(field '"\(.kind) \(.type) \(.unit) \(.name)"')"
t_ok "ingest takes it as a gauge within 5 s" t_wait_until 5 post_ok "$kitchen" "$mains" "$dec" 200
t_eq "and back to a counter" 200 "$(spatch "$mains" "$alice" '{"type":"counter","unit":"Wh"}')"
dec2="{\"measurements\":[[$((now + 20)),3000],[$((now + 21)),2900]]}"
t_ok "  ingest refuses decreasing values again within 5 s" t_wait_until 5 post_ok "$kitchen" "$mains" "$dec2" 400

# --- no secret in any answer, nor in the log ---------------------------------------------------
for path in /v1/devices "/v1/devices/$kitchen_id" /v1/sensors "/v1/sensors/$mains" /v1/me; do
    get "$path" "$alice" >/dev/null
done
t_like "the answers were collected" 'wifi_psk' "$(cat "$T_WORK/bodies")"
t_eq "no answer ever carried a secret" 0 "$(grep -c -e "$psk" -e "$mqtt" "$T_WORK/bodies" || true)"
t_eq "nor did the API log" 0 "$(grep -c -e "$psk" -e "$mqtt" "${T_LOGS[api]}" || true)"

# --- revocation --------------------------------------------------------------------------------
t_eq "alice revokes the simulated device" 204 "$(t_api DELETE "/v1/devices/$sim_id" "$alice")"
t_ok "ingest refuses it within 5 s" t_wait_until 5 post_ok "$sim" "$sim_gas" \
    "{\"measurements\":[[$((now + 30)),13]]}" 403
t_like "  as revoked" '"error":"device_revoked"' "$(cat "$T_BODY")"
t_ok "the kitchen device is unaffected" post_ok "$kitchen" "$tap" "{\"measurements\":[[$((now + 30)),1.5]]}" 200

# --- without a device CA -----------------------------------------------------------------------
t_ok "meterhub-api stops" t_stop_api
rc=0
"$MH_BIN/meterhub-api" -c "${T_CONFS[api]}" -s api.pki_dir="$T_WORK/nowhere" --check \
    >"$T_WORK/check.out" 2>&1 || rc=$?
t_eq "a pki_dir without a device CA is a configuration error" 2 "$rc"
t_like "  naming the key" 'api.pki_dir' "$(cat "$T_WORK/check.out")"
t_start_api -s api.pki_dir=
n0="$(counts)"
t_eq "without pki_dir, registration answers 503" 503 "$(register "$alice" '{"generate_key":true}')"
t_eq "  saying why" "registration_unavailable" "$(field .error)"
t_like "  and what to set" 'api.pki_dir' "$(field .message)"
t_eq "  nothing inserted" "$n0" "$(counts)"
t_eq "  the rest works" 200 "$(get "/v1/devices/$kitchen_id" "$alice")"

t_ok "meterhub-api stops cleanly" t_stop_api
t_done
