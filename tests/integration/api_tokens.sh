#!/usr/bin/env bash
#
# meterhub-api authentication over real HTTPS and PostgreSQL: passwords exchanged for bearer
# tokens (POST /v1/tokens), tokens listed and revoked, scopes enforced, expired and revoked
# tokens refused, failed logins limited, every bad input a clear 4xx changing nothing, and the
# row-level security backstop: the API's role, with one account bound, cannot see or change
# another account's rows.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"

t_init api_tokens
T_API_LOGIN_FAILURES_PER_ACCOUNT=3 t_start_api

umask 077
printf 'alice-correct-horse\n' >"$T_WORK/alice.pw"
printf 'bob-battery-staple\n' >"$T_WORK/bob.pw"
t_ok "account alice with a password" t_admin account add alice --password-file "$T_WORK/alice.pw"
t_ok "account bob with a password" t_admin account add bob --password-file "$T_WORK/bob.pw"
t_ok "account carol without a password" t_admin account add carol
alice_id="$(t_psql "SELECT id FROM accounts WHERE name = 'alice'")"
bob_id="$(t_psql "SELECT id FROM accounts WHERE name = 'bob'")"

# login USER PASSWORD [EXTRA-JSON]: POST /v1/tokens; prints the status.
login() {
    t_api POST /v1/tokens "" -H 'Content-Type: application/json' \
        --data-binary "{\"username\":\"$1\",\"password\":\"$2\"${3:+,$3}}"
}
field() { jq -r "$1" "$T_BODY"; }
tokens_in_db() { t_psql "SELECT count(*) FROM api_tokens"; }

# --- logins ----------------------------------------------------------------------------------
t_eq "alice logs in" 201 "$(login alice alice-correct-horse '"name":"laptop"')"
alice_read="$(field .token)"
t_like "a token is mht_ and 43 base64url characters" '^mht_[A-Za-z0-9_-]{43}$' "$alice_read"
t_eq "default scope is read" read "$(field .scope)"
t_eq "the name is kept" laptop "$(field .name)"
t_like "it expires (30 days by default)" '^20[0-9-]{8}T[0-9:]{8}Z$' "$(field .expires_at)"
t_like "answers are not cached" '^Cache-Control: no-store' "$(grep -i '^Cache-Control' "$T_HEADERS" | tr -d '\r')"
t_eq "alice logs in for a manage token" 201 \
    "$(login alice alice-correct-horse '"scope":"manage","expires_in":3600')"
alice_manage="$(field .token)"
alice_manage_id="$(field .id)"
t_eq "bob logs in" 201 "$(login bob bob-battery-staple '"scope":"manage"')"
bob_manage="$(field .token)"
bob_token_id="$(field .id)"
t_eq "three tokens stored" 3 "$(tokens_in_db)"
t_eq "only hashes are stored" 0 \
    "$(t_psql "SELECT count(*) FROM api_tokens WHERE position('mht_'::bytea IN token_hash) > 0")"

n0="$(tokens_in_db)"
t_eq "a wrong password is refused" 401 "$(login bob wrong-password-1)"
t_eq "with a clear code" invalid_credentials "$(field .error)"
wrong_body="$(cat "$T_BODY")"
t_eq "an unknown username gets the same answer" 401 "$(login nobody wrong-password-1)"
t_eq "word for word" "$wrong_body" "$(cat "$T_BODY")"
t_eq "an account without a password cannot log in" 401 "$(login carol anything-at-all)"

# --- bad inputs: each a 4xx, and no token made -----------------------------------------------
t_eq "malformed JSON" 400 "$(t_api POST /v1/tokens "" -H 'Content-Type: application/json' --data-binary '{"username":')"
t_eq "  says so" malformed_json "$(field .error)"
t_eq "not an object" 400 "$(t_api POST /v1/tokens "" -H 'Content-Type: application/json' --data-binary '["alice"]')"
t_eq "an unknown field is refused" 400 "$(login alice alice-correct-horse '"admin":true')"
t_like "  naming it" 'admin' "$(field .message)"
t_eq "a wrong type" 400 "$(t_api POST /v1/tokens "" -H 'Content-Type: application/json' --data-binary '{"username":1,"password":"x"}')"
t_eq "a duplicate key" 400 "$(t_api POST /v1/tokens "" -H 'Content-Type: application/json' --data-binary '{"username":"alice","username":"bob","password":"x"}')"
t_eq "an unknown scope" 400 "$(login alice alice-correct-horse '"scope":"root"')"
t_eq "expires_in too short" 400 "$(login alice alice-correct-horse '"expires_in":5')"
t_eq "expires_in too long" 400 "$(login alice alice-correct-horse '"expires_in":999999999')"
t_eq "expires_in not an integer" 400 "$(login alice alice-correct-horse '"expires_in":"1h"')"
t_eq "an SQL-looking username is just a wrong login" 401 "$(login "alice' OR '1'='1" x)"
t_eq "no Content-Type" 415 "$(t_api POST /v1/tokens "" --data-binary '{}')"
head -c 20000 /dev/zero | tr '\0' 'a' >"$T_WORK/huge"
t_eq "a body over max_body_bytes" 413 "$(t_api POST /v1/tokens "" -H 'Content-Type: application/json' --data-binary "@$T_WORK/huge")"
t_eq "no token was made by any of them" "$n0" "$(tokens_in_db)"

# --- using tokens ----------------------------------------------------------------------------
t_eq "GET /v1/me with a read token" 200 "$(t_api GET /v1/me "$alice_read")"
t_eq "  is alice" alice "$(field .name)"
t_eq "  with her id" "$alice_id" "$(field .id)"
t_eq "bob's token is bob" bob "$(t_api GET /v1/me "$bob_manage" >/dev/null; field .name)"
t_eq "no token" 401 "$(t_api GET /v1/me "")"
t_like "  asks for a bearer token" '^WWW-Authenticate: Bearer' "$(grep -i '^WWW-Authenticate' "$T_HEADERS" | tr -d '\r')"
t_eq "a garbage token" 401 "$(t_api GET /v1/me "not-a-token")"
t_eq "a well-formed token nobody issued" 401 "$(t_api GET /v1/me "mht_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")"
t_eq "Basic auth is refused" 401 "$(t_api GET /v1/me "" -u alice:alice-correct-horse)"

t_eq "alice lists her tokens" 200 "$(t_api GET /v1/tokens "$alice_read")"
t_eq "  two, hers" 2 "$(field '.tokens | length')"
t_eq "  never the token itself" 0 "$(grep -c 'mht_' "$T_BODY" || true)"
t_eq "a read token cannot revoke" 403 "$(t_api DELETE "/v1/tokens/$alice_manage_id" "$alice_read")"
t_eq "  insufficient_scope" insufficient_scope "$(field .error)"
t_eq "alice cannot revoke bob's token: not found" 404 "$(t_api DELETE "/v1/tokens/$bob_token_id" "$alice_manage")"
t_eq "  and it still works" 200 "$(t_api GET /v1/me "$bob_manage")"
t_eq "a malformed id" 404 "$(t_api DELETE "/v1/tokens/1;DROP" "$alice_manage")"
t_eq "a wrong method" 405 "$(t_api PUT /v1/me "$alice_read")"
t_eq "an unknown path" 404 "$(t_api GET /v1/nothing "$alice_read")"

t_eq "bob revokes his own token" 204 "$(t_api DELETE "/v1/tokens/$bob_token_id" "$bob_manage")"
t_eq "the revoked token stops working on the next request" 401 "$(t_api GET /v1/me "$bob_manage")"
t_eq "revoking twice: not found" 404 "$(t_api DELETE "/v1/tokens/$bob_token_id" "$alice_manage")"

t_psql "UPDATE api_tokens SET created_at = now() - interval '2 hours',
        expires_at = now() - interval '1 hour' WHERE id = $alice_manage_id" >/dev/null
t_eq "an expired token is refused" 401 "$(t_api GET /v1/me "$alice_manage")"
t_eq "the other token of alice still works" 200 "$(t_api GET /v1/me "$alice_read")"

# --- failed-login limit (3 per account in the test config) -----------------------------------
for i in 1 2 3; do login alice "wrong-password-$i" >/dev/null; done
t_eq "after 3 failures even the right password waits" 429 "$(login alice alice-correct-horse)"
t_like "  with Retry-After" '^Retry-After: [0-9]+' "$(grep -i '^Retry-After' "$T_HEADERS" | tr -d '\r')"
t_eq "another account is not affected" 201 "$(login bob bob-battery-staple)"
t_like "failed logins are counted" '^[1-9]' "$(t_metric api 'meterhub_api_logins_total{outcome="failed"}')"
t_eq "no password or token in the log" 0 \
    "$(grep -c -e 'correct-horse' -e 'battery-staple' -e 'mht_' "$T_WORK/log/api.log" || true)"

# --- row-level security backstop --------------------------------------------------------------
t_eq "RLS: alice bound sees only her account" "alice" "$(t_psql_as_account alice 'SELECT name FROM accounts')"
t_eq "RLS: alice bound sees none of bob's tokens" 0 \
    "$(t_psql_as_account alice "SELECT count(*) FROM api_tokens WHERE account_id = $bob_id")"
t_eq "RLS: alice bound cannot revoke bob's tokens" 0 \
    "$(t_psql_as_account alice "WITH u AS (UPDATE api_tokens SET revoked_at = now() WHERE account_id = $bob_id RETURNING 1) SELECT count(*) FROM u")"
t_fails "RLS: alice bound cannot create a token for bob" t_psql_as_account alice \
    "INSERT INTO api_tokens (account_id, name, scope, token_hash) VALUES ($bob_id, 'x', 'manage', decode(repeat('ab', 32), 'hex'))"
t_eq "RLS: nothing bound, nothing seen" 0 "$(t_psql_as api 'SELECT count(*) FROM accounts')"
t_fails "the API role cannot read password hashes" t_psql_as api 'SELECT password_hash FROM accounts'
t_fails "the API role cannot create accounts" t_psql_as api "INSERT INTO accounts (name) VALUES ('mallory')"
t_fails "the API role cannot switch RLS off" t_psql_as api 'SET row_security = off; SELECT count(*) FROM api_tokens'
t_eq "the API role does not bypass RLS" "f" "$(t_psql "SELECT rolbypassrls FROM pg_roles WHERE rolname = 'meterhub_api'")"

t_ok "meterhub-api stops cleanly" t_stop_api
t_done
