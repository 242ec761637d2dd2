#!/usr/bin/env bash
#
# meterhub-admin account passwords: `account add --password-file/--generate-password` and
# `account passwd` store a scrypt hash that verifies (recomputed here with `openssl kdf`), the
# password never shows in the output, and bad files or passwords are refused before anything is
# stored.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"

t_init admin_passwords

# shellcheck disable=SC2016 # a regular expression, not an expansion
hash_re='^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$'

stored_hash() {
    t_psql "SELECT coalesce(password_hash, 'NULL') FROM accounts WHERE name = '$1'"
}

account_count() {
    t_psql "SELECT count(*) FROM accounts WHERE name = '$1'"
}

# Unpadded base64 to hex.
# shellcheck disable=SC2317 # called through hash_matches
b64_hex() {
    local s=$1
    while ((${#s} % 4)); do s+='='; done
    printf '%s' "$s" | base64 -d | od -An -v -tx1 | tr -d ' \n'
}

# hash_matches PASSWORD HASH: recomputes the scrypt key of PASSWORD with the hash's parameters
# and salt, independently of meterhub's code.
# shellcheck disable=SC2016,SC2317 # a regular expression; called through t_ok/t_fails
hash_matches() {
    local pw=$1 hash=$2 ln r p salt key got
    local re='^\$scrypt\$ln=([0-9]+),r=([0-9]+),p=([0-9]+)\$([^$]+)\$([^$]+)$'
    [[ "$hash" =~ $re ]] || return 1
    ln=${BASH_REMATCH[1]} r=${BASH_REMATCH[2]} p=${BASH_REMATCH[3]}
    salt="$(b64_hex "${BASH_REMATCH[4]}")"
    key="$(b64_hex "${BASH_REMATCH[5]}")"
    got="$(openssl kdf -keylen 32 -kdfopt "pass:$pw" -kdfopt "hexsalt:$salt" \
        -kdfopt "n:$((1 << ln))" -kdfopt "r:$r" -kdfopt "p:$p" \
        -kdfopt maxmem_bytes:67108864 SCRYPT | tr -d ':\n' | tr '[:upper:]' '[:lower:]')"
    [[ "$got" == "$key" ]]
}

# --- account add --password-file --------------------------------------------------------------
pw1='first-Secret-passw0rd'
printf '%s\n' "$pw1" >"$T_WORK/pw1"
chmod 0600 "$T_WORK/pw1"
rc=0
t_admin account add alice --password-file "$T_WORK/pw1" >"$T_WORK/out" 2>"$T_WORK/err" || rc=$?
t_eq "account add --password-file succeeds" 0 "$rc"
t_like "prints the account as JSON" '^\{"account": "alice", "id": [0-9]+\}$' "$(cat "$T_WORK/out")"
h1="$(stored_hash alice)"
t_like "stores a scrypt hash" "$hash_re" "$h1"
t_ok "the stored hash verifies the password (openssl kdf)" hash_matches "$pw1" "$h1"
t_fails "and not another password" hash_matches "first-Secret-passw0rD" "$h1"
t_fails "the password is not in stdout or stderr" grep -qF -- "$pw1" "$T_WORK/out" "$T_WORK/err"

# --- refused before anything is stored --------------------------------------------------------
printf '%s\n' 'group-readable-secret' >"$T_WORK/pw-open"
chmod 0644 "$T_WORK/pw-open"
rc=0
t_admin account add bob --password-file "$T_WORK/pw-open" >"$T_WORK/out" 2>"$T_WORK/err" || rc=$?
t_eq "a password file readable by others is refused" 1 "$rc"
t_like "with a clear error" 'must not be accessible by group or others' "$(cat "$T_WORK/err")"
t_eq "and no account is created" 0 "$(account_count bob)"
t_fails "the refused file's content is not shown" grep -qF group-readable-secret "$T_WORK/out" \
    "$T_WORK/err"

printf '%s\n' 'short' >"$T_WORK/pw-short"
chmod 0600 "$T_WORK/pw-short"
rc=0
t_admin account add bob --password-file "$T_WORK/pw-short" >"$T_WORK/out" 2>"$T_WORK/err" || rc=$?
t_eq "a too-short password is refused" 1 "$rc"
t_like "with a clear error" 'password too short' "$(cat "$T_WORK/err")"
t_eq "and no account is created" 0 "$(account_count bob)"

rc=0
t_admin account add bob --password-file "$T_WORK/missing" >/dev/null 2>"$T_WORK/err" || rc=$?
t_eq "a missing password file is refused" 1 "$rc"
t_eq "and no account is created" 0 "$(account_count bob)"

rc=0
t_admin account add bob --password-file "$T_WORK/pw1" --generate-password >/dev/null 2>&1 || rc=$?
t_eq "both password options are a usage error (2)" 2 "$rc"

# --- standard input, no password --------------------------------------------------------------
pw2='from standard input, with spaces'
rc=0
t_admin account add carol --password-file - <<<"$pw2" >"$T_WORK/out" 2>"$T_WORK/err" || rc=$?
t_eq "account add --password-file - reads standard input" 0 "$rc"
t_ok "and stores the password's hash" hash_matches "$pw2" "$(stored_hash carol)"

t_ok "account add without a password still works" t_admin account add dave
t_eq "and stores no hash" NULL "$(stored_hash dave)"

# --- --generate-password ----------------------------------------------------------------------
rc=0
t_admin account add erin --generate-password >"$T_WORK/out" 2>"$T_WORK/err" || rc=$?
t_eq "account add --generate-password succeeds" 0 "$rc"
t_eq "prints exactly one password line" 1 "$(grep -c '^password: ' "$T_WORK/out")"
t_like "after the JSON line" '^\{"account": "erin", "id": [0-9]+\}$' "$(sed -n 1p "$T_WORK/out")"
gen="$(sed -n 's/^password: //p' "$T_WORK/out")"
t_like "24 characters of base64url" '^[A-Za-z0-9_-]{24}$' "$gen"
t_fails "the generated password is not on stderr" grep -qF -- "$gen" "$T_WORK/err"
h_erin="$(stored_hash erin)"
t_like "stores a scrypt hash" "$hash_re" "$h_erin"
t_ok "that verifies the printed password" hash_matches "$gen" "$h_erin"

# --if-missing on an existing account leaves its password alone.
rc=0
t_admin account add alice --if-missing --password-file "$T_WORK/pw-short" >/dev/null 2>&1 || rc=$?
t_eq "--if-missing still checks the password" 1 "$rc"
rc=0
t_admin account add erin --if-missing --generate-password >"$T_WORK/out" 2>"$T_WORK/err" || rc=$?
t_eq "--if-missing on an existing account succeeds" 0 "$rc"
t_like "says the password is left unchanged" 'password is left unchanged' "$(cat "$T_WORK/err")"
t_eq "prints no password" 0 "$(grep -c '^password: ' "$T_WORK/out" || true)"
t_eq "the stored hash is unchanged" "$h_erin" "$(stored_hash erin)"
rc=0
t_admin account add erin --generate-password >"$T_WORK/out" 2>&1 || rc=$?
t_eq "without --if-missing an existing account is an error" 1 "$rc"
t_eq "and prints no password" 0 "$(grep -c '^password: ' "$T_WORK/out" || true)"
t_eq "the stored hash is still unchanged" "$h_erin" "$(stored_hash erin)"

# --- account passwd ---------------------------------------------------------------------------
pw3='the-second-password'
printf '%s\n' "$pw3" >"$T_WORK/pw3"
chmod 0600 "$T_WORK/pw3"
rc=0
t_admin account passwd alice --password-file "$T_WORK/pw3" >"$T_WORK/out" 2>"$T_WORK/err" || rc=$?
t_eq "account passwd succeeds" 0 "$rc"
h3="$(stored_hash alice)"
t_like "stores a new scrypt hash" "$hash_re" "$h3"
t_ok "that verifies the new password" hash_matches "$pw3" "$h3"
t_fails "and no longer the old one" hash_matches "$pw1" "$h3"
t_fails "the password is not in stdout or stderr" grep -qF -- "$pw3" "$T_WORK/out" "$T_WORK/err"

rc=0
t_admin account passwd dave --generate-password >"$T_WORK/out" 2>"$T_WORK/err" || rc=$?
t_eq "account passwd --generate-password sets a first password" 0 "$rc"
gen="$(sed -n 's/^password: //p' "$T_WORK/out")"
t_eq "prints exactly one password line" 1 "$(grep -c '^password: ' "$T_WORK/out")"
t_ok "that verifies against the stored hash" hash_matches "$gen" "$(stored_hash dave)"

rc=0
t_admin account passwd nobody --password-file "$T_WORK/pw3" >/dev/null 2>"$T_WORK/err" || rc=$?
t_eq "passwd of a missing account fails with 1" 1 "$rc"
t_like "with a clear error" 'account nobody does not exist' "$(cat "$T_WORK/err")"
t_eq "and creates nothing" 0 "$(account_count nobody)"

rc=0
t_admin account passwd alice >/dev/null 2>&1 || rc=$?
t_eq "passwd without a password option is a usage error (2)" 2 "$rc"
t_eq "the hash is unchanged" "$h3" "$(stored_hash alice)"

t_done
