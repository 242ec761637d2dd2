#!/usr/bin/env bash
#
# meterhub-api devices and sensors over real HTTPS, with ingest running: an owner lists and
# reads their own devices and sensors and nothing else (another account's answer is the same
# 404 as a device that does not exist), and revokes their own device, which ingest then
# refuses within seconds; another account cannot revoke it, nor can a read-only token.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

t_init api_devices
t_start_ingest
t_start_api

alice_dev="$(t_device alice 2)"
bob_dev="$(t_device bob 1)"
alice_id="$(device_id "$alice_dev")"
bob_id="$(device_id "$bob_dev")"
alice_s0="$(t_sensor "$alice_dev" 0)"
alice_s1="$(t_sensor "$alice_dev" 1)"
bob_s0="$(t_sensor "$bob_dev" 0)"
umask 077
printf 'alice-correct-horse\n' >"$T_WORK/alice.pw"
printf 'bob-battery-staple\n' >"$T_WORK/bob.pw"
t_ok "alice gets a password" t_admin account passwd alice --password-file "$T_WORK/alice.pw"
t_ok "bob gets a password" t_admin account passwd bob --password-file "$T_WORK/bob.pw"

token() {
    t_api POST /v1/tokens "" -H 'Content-Type: application/json' \
        --data-binary "{\"username\":\"$1\",\"password\":\"$2\",\"scope\":\"$3\"}" >/dev/null
    jq -r .token "$T_BODY"
}
field() { jq -r "$1" "$T_BODY"; }
alice_read="$(token alice alice-correct-horse read)"
alice_manage="$(token alice alice-correct-horse manage)"
bob_manage="$(token bob bob-battery-staple manage)"
t_like "tokens issued" '^mht_' "$alice_read $alice_manage $bob_manage"

# --- reads -------------------------------------------------------------------------------------
t_eq "alice lists her devices" 200 "$(t_api GET /v1/devices "$alice_read")"
t_eq "  one: hers" "$alice_id" "$(field '[.devices[].id] | join(",")')"
t_eq "  active" active "$(field '.devices[0].status')"
t_eq "  with her two sensors" "$alice_s0,$alice_s1" "$(field '.devices[0].sensors | join(",")')"
t_eq "alice reads her device" 200 "$(t_api GET "/v1/devices/$alice_id" "$alice_read")"
t_eq "  by id" "$alice_id" "$(field .id)"
t_eq "alice reads bob's device: not found" 404 "$(t_api GET "/v1/devices/$bob_id" "$alice_read")"
foreign="$(cat "$T_BODY")"
t_eq "a device that does not exist" 404 "$(t_api GET /v1/devices/0123456789abcdef0123456789abcdef "$alice_read")"
t_eq "  gets the very same answer" "$foreign" "$(cat "$T_BODY")"
t_eq "a malformed device id" 404 "$(t_api GET "/v1/devices/$alice_id'%20OR%201=1" "$alice_read")"
t_eq "alice lists her sensors" 200 "$(t_api GET /v1/sensors "$alice_read")"
t_eq "  two: hers" "$alice_s0,$alice_s1" "$(field '[.sensors[].id] | join(",")')"
t_eq "  a Wh counter first" "electricity counter Wh $alice_id" \
    "$(field '.sensors[0] | "\(.kind) \(.type) \(.unit) \(.device)"')"
t_eq "alice reads her sensor" 200 "$(t_api GET "/v1/sensors/$alice_s1" "$alice_read")"
t_eq "alice reads bob's sensor: not found" 404 "$(t_api GET "/v1/sensors/$bob_s0" "$alice_read")"
t_eq "no token" 401 "$(t_api GET /v1/devices "")"
t_eq "sensors cannot be deleted" 405 "$(t_api DELETE "/v1/sensors/$alice_s0" "$alice_manage")"

# --- revocation --------------------------------------------------------------------------------
post_ok() {
    [[ "$(t_curl "$1" "/sensor/$2" -H 'Content-Type: application/json' \
        --data-binary "{\"measurements\":[[$(date +%s),$3]]}")" == "$4" ]]
}
t_ok "alice's device posts" t_wait_until 10 post_ok "$alice_dev" "$alice_s0" 100 200
t_ok "bob's device posts" t_wait_until 10 post_ok "$bob_dev" "$bob_s0" 100 200
t_eq "a read token cannot revoke" 403 "$(t_api DELETE "/v1/devices/$alice_id" "$alice_read")"
t_eq "bob cannot revoke alice's device" 404 "$(t_api DELETE "/v1/devices/$alice_id" "$bob_manage")"
t_eq "alice cannot revoke bob's device" 404 "$(t_api DELETE "/v1/devices/$bob_id" "$alice_manage")"
t_eq "  still active" active "$(t_psql "SELECT status FROM devices WHERE id = '$bob_id'")"
t_eq "alice revokes her device" 204 "$(t_api DELETE "/v1/devices/$alice_id" "$alice_manage")"
t_eq "  it says so" revoked "$(t_api GET "/v1/devices/$alice_id" "$alice_read" >/dev/null; field .status)"
t_like "  since a moment ago" '^20[0-9-]{8}T' "$(field .revoked_at)"
t_ok "ingest refuses the revoked device within 5 s" t_wait_until 5 post_ok "$alice_dev" "$alice_s0" 101 403
t_like "  as revoked" '"error":"device_revoked"' "$(cat "$T_BODY")"
t_ok "bob's device is unaffected" post_ok "$bob_dev" "$bob_s0" 101 200
t_eq "revoking again is harmless" 204 "$(t_api DELETE "/v1/devices/$alice_id" "$alice_manage")"

# A query parameter no resource reads is refused, not ignored.
t_eq "GET /v1/devices?sort=name: refused" 400 "$(t_api GET "/v1/devices?sort=name" "$alice_read")"
t_like "  said so" "takes no query parameters" "$(jq -r .message "$T_BODY")"
t_eq "GET /v1/me?x: refused" 400 "$(t_api GET "/v1/me?x" "$alice_read")"

t_ok "meterhub-api stops cleanly" t_stop_api
t_done
