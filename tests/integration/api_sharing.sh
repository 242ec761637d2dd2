#!/usr/bin/env bash
#
# Sharing settings of a sensor (GET/PUT /v1/sensors/{id}/sharing) and the owner's audit trail
# (GET /v1/audit), over real HTTPS and PostgreSQL: defaults, changes with their before/after in
# the trail, every bad input a 400 that changes nothing, other accounts and read-only tokens
# kept out, and the row-level security backstop.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

t_init api_sharing
t_start_api

alice_dev="$(t_device alice 1)"
sensor="$(t_sensor "$alice_dev" 0)"
t_api_account alice bob
t_admin account add carol >/dev/null
token() { t_api_token "$@"; }
alice="$(token alice manage)"
alice_read="$(token alice read)"
bob="$(token bob manage)"
field() { jq -r "$1" "$T_BODY"; }
put() { t_api PUT "/v1/sensors/$sensor/sharing" "$1" -H 'Content-Type: application/json' --data-binary "$2"; }
settings() { t_api GET "/v1/sensors/$sensor/sharing" "$alice" >/dev/null; jq -cS 'del(.sensor)' "$T_BODY"; }
audit_count() { t_psql "SELECT count(*) FROM audit_log"; }

t_eq "alice reads her sensor's sharing" 200 "$(t_api GET "/v1/sensors/$sensor/sharing" "$alice_read")"
t_eq "  private by default, a day's resolution and 24 h delay for public" \
    '{"grants":[],"public_delay_hours":24,"public_resolution":"day","visibility":"private"}' \
    "$(jq -cS 'del(.sensor)' "$T_BODY")"

t_eq "alice shares it with bob at hourly detail" 200 \
    "$(put "$alice" '{"visibility":"shared","grants":[{"account":"bob","resolution":"hour"},{"account":"carol","resolution":"day"}]}')"
t_eq "  the answer is the new settings" "shared bob:hour,carol:day" \
    "$(field '"\(.visibility) \([.grants[] | "\(.account):\(.resolution)"] | join(","))"')"
t_eq "  and they are stored" "shared|2" "$(t_psql "SELECT visibility, (SELECT count(*) FROM sensor_grants) FROM sensor_sharing")"
t_eq "alice's audit trail" 200 "$(t_api GET /v1/audit "$alice_read")"
t_eq "  has the change, by alice" "sharing_changed alice $sensor" "$(field '.entries[0] | "\(.kind) \(.actor) \(.sensor)"')"
t_eq "  before and after" "private shared" "$(field '.entries[0].detail | "\(.before.visibility) \(.after.visibility)"')"

t_eq "alice makes it public after 48 h, hourly" 200 \
    "$(put "$alice" '{"visibility":"public","public_resolution":"hour","public_delay_hours":48}')"
t_eq "  grants go" '{"grants":[],"public_delay_hours":48,"public_resolution":"hour","visibility":"public"}' "$(settings)"
t_eq "two entries in the trail" 2 "$(audit_count)"

before="$(settings)"
n0="$(audit_count)"
t_eq "an unknown field" 400 "$(put "$alice" '{"visibility":"private","everyone":true}')"
t_eq "an unknown visibility" 400 "$(put "$alice" '{"visibility":"friends"}')"
t_eq "a delay of 0 h" 400 "$(put "$alice" '{"visibility":"public","public_delay_hours":0}')"
t_eq "a delay that is not a number" 400 "$(put "$alice" '{"visibility":"public","public_delay_hours":"1d"}')"
t_eq "a public resolution finer than an hour" 400 "$(put "$alice" '{"visibility":"public","public_resolution":"raw"}')"
t_eq "grants on a private sensor" 400 "$(put "$alice" '{"visibility":"private","grants":[{"account":"bob","resolution":"day"}]}')"
t_eq "a grant to nobody" 400 "$(put "$alice" '{"visibility":"shared","grants":[{"account":"nobody","resolution":"day"}]}')"
t_eq "a grant to oneself" 400 "$(put "$alice" '{"visibility":"shared","grants":[{"account":"alice","resolution":"day"}]}')"
t_eq "the same grantee twice" 400 "$(put "$alice" '{"visibility":"shared","grants":[{"account":"bob","resolution":"day"},{"account":"bob","resolution":"hour"}]}')"
t_eq "an unknown grant resolution" 400 "$(put "$alice" '{"visibility":"shared","grants":[{"account":"bob","resolution":"second"}]}')"
t_eq "a grant with an extra field" 400 "$(put "$alice" '{"visibility":"shared","grants":[{"account":"bob","resolution":"day","until":1}]}')"
t_eq "malformed JSON" 400 "$(put "$alice" '{"visibility":')"
t_eq "a read-only token" 403 "$(put "$alice_read" '{"visibility":"private"}')"
t_eq "bob cannot change alice's sensor" 404 "$(put "$bob" '{"visibility":"public","public_delay_hours":1}')"
t_eq "bob cannot read its settings" 404 "$(t_api GET "/v1/sensors/$sensor/sharing" "$bob")"
t_eq "nothing changed by any of them" "$before" "$(settings)"
t_eq "  nor audited" "$n0" "$(audit_count)"
t_eq "bob's trail is his own: empty" 0 "$(t_api GET /v1/audit "$bob" >/dev/null; field '.entries | length')"

t_eq "RLS: bob bound sees none of alice's sharing" 0 "$(t_psql_as_account bob 'SELECT count(*) FROM sensor_sharing')"
t_eq "RLS: nor her trail" 0 "$(t_psql_as_account bob 'SELECT count(*) FROM audit_log')"
t_fails "the API role cannot erase the trail" t_psql_as_account alice 'DELETE FROM audit_log'
t_fails "nor rewrite it" t_psql_as_account alice "UPDATE audit_log SET kind = 'foreign_read'"
t_eq "the trail is intact" "$n0" "$(audit_count)"

t_done
