#!/usr/bin/env bash
#
# Self-registration, POST /v1/accounts, over real HTTPS and PostgreSQL: refused while
# api.self_registration is off (the default); with it on, an account is made with a scrypt
# password it can log in with, a taken name gets 409, a weak password, a bad name or an unknown
# field 400, and one address cannot register without bound. The API role still cannot insert
# accounts by itself.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"

t_init api_register
t_start_api

# register NAME PASSWORD [EXTRA-JSON]: prints the status.
register() {
    t_api POST /v1/accounts "" -H 'Content-Type: application/json' \
        --data-binary "{\"username\":\"$1\",\"password\":\"$2\"${3:+,$3}}"
}
field() { jq -r "$1" "$T_BODY"; }
accounts() { t_psql "SELECT count(*) FROM accounts"; }

# --- off by default ------------------------------------------------------------------------------
t_eq "off by default: refused" 403 "$(register dave dave-long-password)"
t_eq "  saying so" registration_disabled "$(field .error)"
t_like "  and who makes accounts" 'operator' "$(field .message)"
t_eq "  no account made" 0 "$(accounts)"
t_eq "  only POST" 405 "$(t_api GET /v1/accounts "")"

# --- on ------------------------------------------------------------------------------------------
t_ok "meterhub-api restarts with self_registration = on" t_stop_api
T_API_LOGIN_FAILURES_PER_ADDRESS=6 T_API_EXTRA="self_registration = on" t_write_api_conf
t_start_api

t_eq "dave registers" 201 "$(register dave dave-long-password)"
t_eq "  answered with his id and name" \
    "$(t_psql "SELECT id FROM accounts WHERE name = 'dave'") dave" "$(field '"\(.id) \(.name)"')"
t_eq "  and nothing else" '["id","name"]' "$(jq -c 'keys' "$T_BODY")"
t_eq "  his password is stored as scrypt" t \
    "$(t_psql "SELECT password_hash LIKE '\$scrypt\$%' FROM accounts WHERE name = 'dave'")"
t_eq "  and never in clear" 0 \
    "$(t_psql "SELECT count(*) FROM accounts WHERE position('dave-long-password' IN password_hash) > 0")"
t_eq "he logs in" 201 "$(t_api POST /v1/tokens "" -H 'Content-Type: application/json' \
    --data-binary '{"username":"dave","password":"dave-long-password"}')"
dave="$(field .token)"
t_eq "  and is himself" dave "$(t_api GET /v1/me "$dave" >/dev/null; field .name)"
t_eq "  with nothing yet" "0 0" "$(field '"\(.devices) \(.sensors)"')"

t_eq "the same name again" 409 "$(register dave another-long-password)"
t_eq "  account_exists" account_exists "$(field .error)"
t_eq "  his password is unchanged" 201 "$(t_api POST /v1/tokens "" -H 'Content-Type: application/json' \
    --data-binary '{"username":"dave","password":"dave-long-password"}')"

n0="$(accounts)"
t_eq "a short password" 400 "$(register erin short)"
t_like "  named" '^password' "$(field .message)"
t_eq "a password with a control character" 400 "$(register erin 'long-enough\tpassword')"
t_eq "an unknown field" 400 "$(register erin erin-long-password '"admin":true')"
t_like "  named" 'admin' "$(field .message)"
t_eq "no password" 400 "$(t_api POST /v1/accounts "" -H 'Content-Type: application/json' \
    --data-binary '{"username":"erin"}')"
t_eq "a name with a space" 400 "$(register 'erin smith' erin-long-password)"
t_eq "a name beginning with a dot" 400 "$(register .erin erin-long-password)"
t_eq "a name of 65 characters" 400 "$(register "$(printf 'e%.0s' {1..65})" erin-long-password)"
t_eq "an SQL-looking name" 400 "$(register "erin'--" erin-long-password)"
t_eq "not JSON" 400 "$(t_api POST /v1/accounts "" -H 'Content-Type: application/json' --data-binary 'erin')"
t_eq "not application/json" 415 "$(t_api POST /v1/accounts "" --data-binary '{}')"
t_eq "none of them made an account" "$n0" "$(accounts)"
t_eq "a name of 64 characters is fine" 201 "$(register "$(printf 'e%.0s' {1..64})" erin-long-password)"

# Six attempts per address and window in this configuration: dave, dave again, the 64 e's so
# far (the 400s above were refused before the database and do not count).
t_eq "a fourth" 201 "$(register frank frank-long-password)"
t_eq "a fifth" 201 "$(register grace grace-long-password)"
t_eq "a sixth" 201 "$(register heidi heidi-long-password)"
t_eq "a seventh from the same address waits" 429 "$(register ivan ivan-long-password)"
t_like "  with Retry-After" '^Retry-After: [0-9]+' "$(grep -i '^Retry-After' "$T_HEADERS" | tr -d '\r')"
t_eq "  and no account" 0 "$(t_psql "SELECT count(*) FROM accounts WHERE name = 'ivan'")"
t_eq "no password in the log" 0 "$(grep -c -e 'long-password' "$T_WORK/log/api.log" || true)"

t_fails "the API role still cannot insert accounts" \
    t_psql_as api "INSERT INTO accounts (name) VALUES ('mallory')"
t_ok "meterhub-api stops cleanly" t_stop_api
t_done
