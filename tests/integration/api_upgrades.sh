#!/usr/bin/env bash
#
# Firmware upgrades in meterhub-api, over real HTTPS (docs/api.md, "Firmware upgrades"):
# - GET /v1/firmware and /v1/firmware/{release}: anonymous, with and without releases, paged,
#   in log order; the hash chain and the manifests recomputed here from the answers;
# - GET /v1/devices/{id}/upgrades: consent (off by default), the open offer, the release
#   available (rollout, hardware, version, expiry; awaiting_approval), history and approvals;
# - PUT /v1/devices/{id}/upgrades and POST .../{release}/approve: every bad body, a read
#   token, another account's device, an unknown release, another hardware's release, each
#   refused with nothing changed; approval idempotent; each change audited once;
# - offers, downloads and outcomes made through upg_heartbeat/upg_download (what ingest calls)
#   in the owner's audit trail only;
# - the hardware and consent of devices, and "hardware" at registration;
# - the row-level security backstop with the API role bound to each account.
# Releases are rows inserted as the admin: well-formed (their manifest, ids, digests and log
# chain are computed as meterhub-release would), with a fake signature.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"

t_init api_upgrades
t_start_api
t_api_account alice bob
alice="$(t_api_token alice manage)"
alice_read="$(t_api_token alice read)"
bob="$(t_api_token bob manage)"
A="$(basename "$(t_device alice 1)")"  # alice's meter, 2.4.0, remote upgrades on
A2="$(basename "$(t_device alice 1)")" # alice's second meter, 2.4.0, consent auto later
A3="$(basename "$(t_device alice 1)")" # alice's third, whose version is not comparable
B="$(basename "$(t_device bob 1)")"
did() { t_psql "SELECT did FROM devices WHERE id = '$1'"; }
Adid="$(did "$A")" A2did="$(did "$A2")" A3did="$(did "$A3")"
alice_id="$(t_psql "SELECT id FROM accounts WHERE name = 'alice'")"
bob_id="$(t_psql "SELECT id FROM accounts WHERE name = 'bob'")"
# What ingest records of each meter's heartbeats.
t_psql "UPDATE devices SET firmware_version = '2.4.0', remote_upgrade = true, last_seen = now()
        WHERE id IN ('$A', '$A2', '$B')"
t_psql "UPDATE devices SET firmware_version = 'sim-1.0', remote_upgrade = true WHERE id = '$A3'"

field() { jq -r "$1" "$T_BODY"; }
json_put() { # json_put TOKEN PATH BODY: a PUT with a JSON body
    t_api PUT "$2" "$1" -H 'Content-Type: application/json' --data-binary "$3"
}
consent_of() { t_psql "SELECT upgrade_consent FROM devices WHERE id = '$1'"; }
audits() { t_psql "SELECT count(*) FROM audit_log WHERE kind = '$1'"; }
approvals() { t_psql "SELECT count(*) FROM upgrade_approvals"; }
# heartbeat DID VERSION [RELEASE OUTCOME [REASON]]: ingest's call for a heartbeat with remote
# upgrades on; prints "status release".
heartbeat() {
    local rel=NULL outcome=NULL reason=NULL
    [[ -n "${3:-}" ]] && rel="'$3'" outcome="'$4'"
    [[ -n "${5:-}" ]] && reason="'$5'"
    t_psql "SELECT status || ' ' || coalesce(release_id, '-')
            FROM upg_heartbeat($1, '$2', true, $rel, $outcome, $reason)"
}

# --- the public log, empty ---------------------------------------------------------------------
t_eq "GET /v1/firmware without a token" 200 "$(t_api GET /v1/firmware "")"
t_eq "  no releases, no head, no next page" '{"releases":[],"log_head":null,"next_after":null}' \
    "$(jq -c '{releases, log_head, next_after}' "$T_BODY")"
t_eq "  not cached" "Cache-Control: no-store" "$(grep -i '^Cache-Control:' "$T_HEADERS" | tr -d '\r')"
t_eq "a release of an empty log: not found" 404 \
    "$(t_api GET /v1/firmware/0123456789abcdef0123456789abcdef "")"

# --- devices: hardware and consent -------------------------------------------------------------
t_eq "alice reads her meter" 200 "$(t_api GET "/v1/devices/$A" "$alice_read")"
t_eq "  hardware flm02, consent off by default" "flm02 off" "$(field '"\(.hardware) \(.upgrade_consent)"')"
t_eq "  in the list too" "flm02 off" \
    "$(t_api GET /v1/devices "$alice_read" >/dev/null; field ".devices[] | select(.id == \"$A\") | \"\(.hardware) \(.upgrade_consent)\"")"
t_eq "GET /v1/devices/A/upgrades" 200 "$(t_api GET "/v1/devices/$A/upgrades" "$alice_read")"
t_eq "  the device, its heartbeat, consent off, nothing offered or available" \
    "$A flm02 2.4.0 true off null null 0 0" \
    "$(field '"\(.device) \(.hardware) \(.firmware_version) \(.remote_upgrade) \(.consent) \(.offer) \(.available) \(.history | length) \(.approvals | length)"')"
t_like "  last_seen" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' "$(field .last_seen)"

# --- releases ----------------------------------------------------------------------------------
pub="$(printf 'meterhub test release key' | sha256sum | cut -c1-64)"
t_psql "INSERT INTO release_keys (key_id, public_key, fingerprint)
        SELECT substr(f, 1, 16), decode('$pub', 'hex'), f
        FROM (SELECT encode(sha256(decode('$pub', 'hex')), 'hex') AS f) x"
key_id="$(t_psql 'SELECT key_id FROM release_keys')"
fingerprint="$(t_psql 'SELECT fingerprint FROM release_keys')"

# publish VERSION HARDWARE DAYS: appends a release that expires in DAYS days (issued 10 days
# ago) to the log, as meterhub-release would; prints its id.
publish() {
    local version=$1 hw=$2 days=$3 now issued expires image manifest
    now="$(date +%s)"
    issued=$((now - 10 * 86400))
    expires=$((now + days * 86400))
    image="$(printf 'image %s %s' "$version" "$hw" | sha256sum | cut -c1-64)"
    manifest="{\"format\":\"meterhub-manifest/1\",\"version\":\"$version\",\"hardware\":\"$hw\",\"size\":1048576,\"sha256\":\"$image\",\"notes\":\"Release $version.\",\"issued\":$issued,\"expires\":$expires,\"key_id\":\"$key_id\"}"
    t_psql "DO \$\$
DECLARE
    m    bytea := convert_to('$manifest' || E'\\n', 'UTF8');
    msha text := encode(sha256(m), 'hex');
    sig  bytea := sha512(m);
    n    bigint := coalesce((SELECT max(l.seq) FROM release_log l), 0) + 1;
    pv   text := coalesce((SELECT l.entry_hash FROM release_log l ORDER BY l.seq DESC LIMIT 1),
                          repeat('0', 64));
    h    text;
BEGIN
    h := encode(sha256(convert_to('meterhub-release-log/1' || E'\\n' || n || E'\\n' || pv
                                  || E'\\n' || msha || E'\\n'
                                  || translate(encode(sig, 'base64'), E'\\n', '') || E'\\n',
                                  'UTF8')), 'hex');
    INSERT INTO releases (id, manifest, manifest_sha256, signature, key_id, version, version_key,
                          hardware, size, image_sha256, notes, issued_at, expires_at, log_seq,
                          log_prev, log_hash)
    VALUES (substr(msha, 1, 32), m, msha, sig, '$key_id', '$version', upg_version_key('$version'),
            '$hw', 1048576, '$image', 'Release $version.', to_timestamp($issued),
            to_timestamp($expires), n, pv, h);
    INSERT INTO release_log (seq, release_id, manifest_sha256, signature, prev_hash, entry_hash)
    VALUES (n, substr(msha, 1, 32), msha, sig, pv, h);
END \$\$"
    t_psql "SELECT id FROM releases WHERE version = '$version' AND hardware = '$hw'"
}
R1="$(publish 2.4.1 flm02 30)"  # seq 1
R2="$(publish 2.5.0 flm02 30)"  # seq 2: the newest that qualifies
R3="$(publish 3.0.0 flm03 30)"  # seq 3: another hardware
R4="$(publish 2.6.0 flm02 -1)"  # seq 4: newer, but expired
R5="$(publish 2.4.0 flm02 30)"  # seq 5: what the meters run already
t_eq "five releases published" 5 "$(t_psql 'SELECT count(*) FROM release_log')"

# --- the public log ----------------------------------------------------------------------------
t_eq "GET /v1/firmware, anonymous" 200 "$(t_api GET /v1/firmware "")"
cp "$T_BODY" "$T_WORK/firmware.json"
t_eq "  in log order" "1 2 3 4 5" "$(field '[.releases[].log.seq] | map(tostring) | join(" ")')"
t_eq "  the releases" "$R1 $R2 $R3 $R4 $R5" "$(field '[.releases[].release] | join(" ")')"
t_eq "  the head, no next page" "5 $(t_psql 'SELECT entry_hash FROM release_log WHERE seq = 5') null" \
    "$(field '"\(.log_head.seq) \(.log_head.hash) \(.next_after)"')"
t_eq "  every field of a release" \
    "2.5.0 flm02 1048576 $(printf 'image 2.5.0 flm02' | sha256sum | cut -c1-64) $key_id $fingerprint Release 2.5.0." \
    "$(field '.releases[1] | "\(.version) \(.hardware) \(.size) \(.image_sha256) \(.key_id) \(.key_fingerprint) \(.notes)"')"
t_eq "  the keys of a release, as the shared shape has them" \
    "expires hardware image_sha256 issued key_fingerprint key_id log manifest manifest_sha256 notes published_at release signature size version" \
    "$(field '.releases[0] | keys | join(" ")')"
t_eq "  issued and expires in Unix seconds" \
    "$(t_psql "SELECT extract(epoch FROM issued_at)::bigint || ' ' || extract(epoch FROM expires_at)::bigint FROM releases WHERE id = '$R2'")" \
    "$(field '.releases[1] | "\(.issued) \(.expires)"')"
t_like "  published_at in ISO 8601 UTC" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' "$(field '.releases[0].published_at')"
t_eq "  entry 1 follows 64 zeros" "$(printf '0%.0s' {1..64})" "$(field '.releases[0].log.prev')"
# Anyone can check the log with sha256sum and base64.
check_log() {
    local seq prev msha manifest sig hash want_prev
    want_prev="$(printf '0%.0s' {1..64})"
    while IFS=$'\t' read -r rel seq prev msha manifest sig hash; do
        [[ "$prev" == "$want_prev" ]] || { echo "entry $seq: prev is not the previous hash"; return 1; }
        [[ "$(base64 -d <<<"$manifest" | sha256sum | cut -c1-64)" == "$msha" ]] ||
            { echo "entry $seq: the manifest's digest"; return 1; }
        [[ "${msha:0:32}" == "$rel" ]] || { echo "entry $seq: the release id"; return 1; }
        [[ "$(base64 -d <<<"$sig" | wc -c)" == 64 ]] || { echo "entry $seq: a 64-byte signature"; return 1; }
        [[ "$(printf 'meterhub-release-log/1\n%s\n%s\n%s\n%s\n' "$seq" "$prev" "$msha" "$sig" |
            sha256sum | cut -c1-64)" == "$hash" ]] || { echo "entry $seq: the entry hash"; return 1; }
        want_prev=$hash
    done < <(jq -r '.releases[] | [.release, .log.seq, .log.prev, .manifest_sha256, .manifest,
                                   .signature, .log.hash] | @tsv' "$1")
}
t_ok "  the chain, the manifests' digests and the ids recompute" check_log "$T_WORK/firmware.json"
t_like "  the manifest is the signed bytes" "^\\{\"format\":\"meterhub-manifest/1\",\"version\":\"2.5.0\"" \
    "$(field '.releases[1].manifest' | base64 -d)"
t_eq "with a read token: the same answer" 200 "$(t_api GET /v1/firmware "$alice_read")"
t_eq "  byte for byte" "$(cat "$T_WORK/firmware.json")" "$(cat "$T_BODY")"
t_eq "with a token that is not valid: the same answer" 200 "$(t_api GET /v1/firmware mht_nonsense)"
t_eq "  byte for byte" "$(cat "$T_WORK/firmware.json")" "$(cat "$T_BODY")"
t_eq "one release" 200 "$(t_api GET "/v1/firmware/$R2" "")"
t_eq "  as the list shows it" "$(jq -cS '.releases[1]' "$T_WORK/firmware.json")" "$(jq -cS . "$T_BODY")"
t_eq "an unknown release" 404 "$(t_api GET /v1/firmware/0123456789abcdef0123456789abcdef "")"
t_eq "  not_found" not_found "$(field .error)"
t_eq "a malformed release id" 404 "$(t_api GET "/v1/firmware/${R2^^}" "")"
t_eq "a query on one release is refused" 400 "$(t_api GET "/v1/firmware/$R2?limit=1" "")"
t_eq "POST /v1/firmware" 405 "$(t_api POST /v1/firmware "$alice")"
t_eq "  Allow: GET" "Allow: GET" "$(grep -i '^Allow:' "$T_HEADERS" | tr -d '\r')"

# Paging.
page() { # page QUERY: "seqs | next_after | head seq"
    t_api GET "/v1/firmware?$1" "" >/dev/null
    field '"\([.releases[].log.seq] | map(tostring) | join(",")) | \(.next_after) | \(.log_head.seq)"'
}
t_eq "limit=2" "1,2 | 2 | 5" "$(page limit=2)"
t_eq "after=2&limit=2" "3,4 | 4 | 5" "$(page 'after=2&limit=2')"
t_eq "after=4&limit=2: reaches the head" "5 | null | 5" "$(page 'after=4&limit=2')"
t_eq "after=5: nothing after the head" " | null | 5" "$(page after=5)"
t_eq "after=99" " | null | 5" "$(page after=99)"
t_eq "after=0&limit=5: all, no next page" "1,2,3,4,5 | null | 5" "$(page 'after=0&limit=5')"
t_eq "limit=1000 is the most" "1,2,3,4,5 | null | 5" "$(page limit=1000)"
for q in limit=0 limit=1001 limit=-1 limit=x after=-1 after=1.5 'after=' 'limit=1&limit=2' \
    'after=1&after=2' 'other=1'; do
    t_eq "?$q is refused" "400 invalid_request" \
        "$(t_api GET "/v1/firmware?$q" "" | tr -d '\n') $(field .error)"
done

# --- what a device may be offered --------------------------------------------------------------
t_eq "no rollout yet" 200 "$(t_api GET "/v1/devices/$A/upgrades" "$alice_read")"
t_eq "  nothing available" null "$(field .available)"
for rel in "$R1" "$R2" "$R3" "$R4" "$R5"; do
    t_psql "INSERT INTO rollouts (release_id) VALUES ('$rel')"
done
t_eq "rolled out to every device" 200 "$(t_api GET "/v1/devices/$A/upgrades" "$alice_read")"
t_eq "  available: 2.5.0 (not the expired 2.6.0, nor flm03's 3.0.0)" "$R2 2.5.0" \
    "$(field '"\(.available.release) \(.available.version)"')"
t_eq "  neither approved nor awaiting approval under consent off" "false false" \
    "$(field '"\(.available.approved) \(.available.awaiting_approval)"')"
t_eq "  the exact manifest, signature and digest of the public log" \
    "$(jq -cS '.releases[1]' "$T_WORK/firmware.json")" "$(field '.available | del(.approved, .awaiting_approval)' | jq -cS .)"
t_eq "  still nothing offered" null "$(field .offer)"
t_eq "a meter whose version is not comparable: nothing available" 200 \
    "$(t_api GET "/v1/devices/$A3/upgrades" "$alice_read")"
t_eq "  null" "sim-1.0 null" "$(field '"\(.firmware_version) \(.available)"')"
t_eq "RLS: the candidate of alice's own meter, for alice" "$R2" \
    "$(t_psql_as_account alice "SELECT release_id FROM api_upgrade_candidate('$A')")"
t_eq "RLS: none for bob" "" "$(t_psql_as_account bob "SELECT release_id FROM api_upgrade_candidate('$A')")"
t_eq "RLS: none with no account bound" "" \
    "$(t_psql_as_account "" "SELECT release_id FROM api_upgrade_candidate('$A')")"

# --- consent -----------------------------------------------------------------------------------
before_audit="$(t_psql 'SELECT count(*) FROM audit_log')"
bad_consent() { # bad_consent DESC BODY CODE ERROR
    t_eq "$1: $3 $4" "$3 $4" \
        "$(t_api PUT "/v1/devices/$A/upgrades" "$alice" -H 'Content-Type: application/json' \
            --data-binary "$2" | tr -d '\n') $(field .error)"
}
bad_consent "an unknown field" '{"consent":"ask","when":"now"}' 400 invalid_request
t_like "  named" "when" "$(field .message)"
bad_consent "a bad value" '{"consent":"yes"}' 400 invalid_request
t_like "  the values named" "off, ask or auto" "$(field .message)"
bad_consent "a wrong type" '{"consent":true}' 400 invalid_request
bad_consent "null" '{"consent":null}' 400 invalid_request
bad_consent "no consent" '{}' 400 invalid_request
bad_consent "twice" '{"consent":"ask","consent":"auto"}' 400 malformed_json
bad_consent "not JSON" 'consent=ask' 400 malformed_json
bad_consent "not an object" '["ask"]' 400 malformed_json
t_eq "not JSON by its type: 415" 415 "$(t_api PUT "/v1/devices/$A/upgrades" "$alice" \
    -H 'Content-Type: text/plain' --data-binary '{"consent":"ask"}')"
t_eq "a read token: 403 insufficient_scope" "403 insufficient_scope" \
    "$(json_put "$alice_read" "/v1/devices/$A/upgrades" '{"consent":"ask"}' | tr -d '\n') $(field .error)"
t_eq "no token: 401" 401 "$(json_put "" "/v1/devices/$A/upgrades" '{"consent":"ask"}')"
t_eq "bob, on alice's meter: 404" 404 "$(json_put "$bob" "/v1/devices/$A/upgrades" '{"consent":"auto"}')"
foreign="$(cat "$T_BODY")"
t_eq "  the answer of a meter that does not exist" 404 \
    "$(json_put "$bob" /v1/devices/0123456789abcdef0123456789abcdef/upgrades '{"consent":"auto"}')"
t_eq "  byte for byte" "$foreign" "$(cat "$T_BODY")"
t_eq "  nothing changed: consent off, no audit entry" "off $before_audit" \
    "$(consent_of "$A") $(t_psql 'SELECT count(*) FROM audit_log')"
t_eq "bob reads alice's meter's upgrades: 404" 404 "$(t_api GET "/v1/devices/$A/upgrades" "$bob")"
t_eq "  the same answer" "$foreign" "$(cat "$T_BODY")"
t_eq "DELETE .../upgrades: 405" 405 "$(t_api DELETE "/v1/devices/$A/upgrades" "$alice")"
t_eq "  Allow: GET, PUT" "Allow: GET, PUT" "$(grep -i '^Allow:' "$T_HEADERS" | tr -d '\r')"

t_eq "alice: consent ask" 200 "$(json_put "$alice" "/v1/devices/$A/upgrades" '{"consent":"ask"}')"
t_eq "  the answer: ask, 2.5.0 awaiting approval" "ask $R2 false true" \
    "$(field '"\(.consent) \(.available.release) \(.available.approved) \(.available.awaiting_approval)"')"
t_eq "  stored" ask "$(consent_of "$A")"
t_eq "  audited once" 1 "$(audits upgrade_consent_changed)"
t_eq "ask again" 200 "$(json_put "$alice" "/v1/devices/$A/upgrades" '{"consent":"ask"}')"
t_eq "  no second entry" 1 "$(audits upgrade_consent_changed)"
for c in auto off ask; do
    t_eq "consent $c" "200 $c" \
        "$(json_put "$alice" "/v1/devices/$A/upgrades" "{\"consent\":\"$c\"}" | tr -d '\n') $(field .consent)"
done
t_eq "  each change audited" 4 "$(audits upgrade_consent_changed)"
t_eq "the device shows it" ask "$(t_api GET "/v1/devices/$A" "$alice_read" >/dev/null; field .upgrade_consent)"

# --- approvals ---------------------------------------------------------------------------------
t_eq "under ask, nothing is offered before approval" "none -" "$(heartbeat "$Adid" 2.4.0)"
approve() { # approve TOKEN DEVICE RELEASE: "status error"
    t_api POST "/v1/devices/$2/upgrades/$3/approve" "$1" | tr -d '\n'
    printf ' %s' "$(field '.error // ""')"
}
t_eq "a read token cannot approve" "403 insufficient_scope" "$(approve "$alice_read" "$A" "$R2")"
t_eq "bob cannot approve for alice's meter" "404 not_found" "$(approve "$bob" "$A" "$R2")"
t_eq "an unknown release" "404 unknown_release" "$(approve "$alice" "$A" 0123456789abcdef0123456789abcdef)"
t_eq "a malformed release id" "404 unknown_release" "$(approve "$alice" "$A" "${R2:0:31}x")"
t_eq "another hardware's release" "409 wrong_hardware" "$(approve "$alice" "$A" "$R3")"
t_like "  says which" "flm03.*flm02" "$(field .message)"
t_eq "an unknown meter" "404 not_found" "$(approve "$alice" 0123456789abcdef0123456789abcdef "$R2")"
t_eq "  nothing approved, nothing audited" "0 0" "$(approvals) $(audits firmware_approved)"
t_eq "GET on approve: 405" 405 "$(t_api GET "/v1/devices/$A/upgrades/$R2/approve" "$alice")"
t_eq "  Allow: POST" "Allow: POST" "$(grep -i '^Allow:' "$T_HEADERS" | tr -d '\r')"
t_eq "alice approves 2.5.0" "200 " "$(approve "$alice" "$A" "$R2")"
t_eq "  approved, no longer awaiting" "$R2 true false" \
    "$(field '"\(.available.release) \(.available.approved) \(.available.awaiting_approval)"')"
t_eq "  in approvals" "$R2 2.5.0" "$(field '.approvals[] | "\(.release) \(.version)"')"
t_eq "approving again" "200 " "$(approve "$alice" "$A" "$R2")"
t_eq "  one approval, audited once" "1 1" "$(approvals) $(audits firmware_approved)"
t_eq "approving under consent off is allowed (2.4.1 for A2)" "200 " "$(approve "$alice" "$A2" "$R1")"
t_eq "  A2 is offered nothing: consent off" "none -" "$(heartbeat "$A2did" 2.4.0)"

# --- offers, downloads and outcomes ------------------------------------------------------------
t_eq "approved under ask: the heartbeat offers 2.5.0" "offer $R2" "$(heartbeat "$Adid" 2.4.0)"
t_eq "the owner sees the offer" 200 "$(t_api GET "/v1/devices/$A/upgrades" "$alice_read")"
t_eq "  2.5.0, offered" "$R2 2.5.0 offered null" \
    "$(field '.offer | "\(.release) \(.version) \(.state) \(.downloaded_at)"')"
t_like "  offered_at" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' "$(field .offer.offered_at)"
t_eq "  what the meter is given: the manifest, signature and log entry of publish" \
    "$(t_psql "SELECT translate(encode(manifest, 'base64'), E'\\n', '') || ' ' ||
                      translate(encode(signature, 'base64'), E'\\n', '') || ' ' ||
                      log_seq || ' ' || log_prev || ' ' || log_hash FROM releases WHERE id = '$R2'")" \
    "$(field '.offer | "\(.manifest) \(.signature) \(.log.seq) \(.log.prev) \(.log.hash)"')"
t_eq "  the digest of the public log" "$(jq -r '.releases[1].image_sha256' "$T_WORK/firmware.json")" \
    "$(field .offer.image_sha256)"
t_eq "  in the history" "$R2 offered" "$(field '.history[] | "\(.release) \(.state)"')"
t_eq "download to the end" ok "$(t_psql "SELECT status FROM upg_download($Adid, '$R2', 0, NULL)")"
t_eq "  the offer shows downloaded" "downloaded true" \
    "$(t_api GET "/v1/devices/$A/upgrades" "$alice_read" >/dev/null
       field '"\(.offer.state) \(.offer.downloaded_at != null)"')"
t_eq "installed, reported" "none -" "$(heartbeat "$Adid" 2.5.0 "$R2" installed)"
t_psql "UPDATE devices SET firmware_version = '2.5.0' WHERE id = '$A'"
t_eq "after the install" 200 "$(t_api GET "/v1/devices/$A/upgrades" "$alice_read")"
t_eq "  no open offer, nothing newer available (2.6.0 expired)" "null null" "$(field '"\(.offer) \(.available)"')"
t_eq "  history: installed" "$R2 installed" "$(field '.history[] | "\(.release) \(.state)"')"
t_like "  reported_at" '^[0-9]{4}-' "$(field '.history[0].reported_at')"

t_eq "A2: consent auto" 200 "$(json_put "$alice" "/v1/devices/$A2/upgrades" '{"consent":"auto"}')"
t_eq "  2.5.0 available, nothing to approve" "$R2 false" \
    "$(field '"\(.available.release) \(.available.awaiting_approval)"')"
t_eq "  offered 2.5.0" "offer $R2" "$(heartbeat "$A2did" 2.4.0)"
t_eq "  the meter refuses it" "offer $R1" "$(heartbeat "$A2did" 2.4.0 "$R2" refused signature)"
t_eq "  the owner sees: 2.4.1 offered now, and available" 200 "$(t_api GET "/v1/devices/$A2/upgrades" "$alice_read")"
t_eq "  offer and available" "$R1 offered $R1" "$(field '"\(.offer.release) \(.offer.state) \(.available.release)"')"
t_eq "  history, newest first, with the reason" "$R1 offered null|$R2 refused signature" \
    "$(field '[.history[] | "\(.release) \(.state) \(.reason)"] | join("|")')"
t_eq "  and the approval of 2.4.1" "$R1" "$(field '[.approvals[].release] | join(" ")')"
t_eq "A2: consent off" 200 "$(json_put "$alice" "/v1/devices/$A2/upgrades" '{"consent":"off"}')"
t_eq "  the next heartbeat withdraws the offer" "none -" "$(heartbeat "$A2did" 2.4.0)"
t_eq "  no open offer; 2.4.1 still available" "null $R1 false" \
    "$(t_api GET "/v1/devices/$A2/upgrades" "$alice_read" >/dev/null
       field '"\(.offer) \(.available.release) \(.available.awaiting_approval)"')"

# --- the audit trail ---------------------------------------------------------------------------
S="$(t_psql "SELECT s.id FROM sensors s JOIN devices d ON d.did = s.device_did WHERE d.id = '$A'")"
t_eq "a sharing change too" 200 "$(json_put "$alice" "/v1/sensors/$S/sharing" '{"visibility":"public"}')"
t_eq "alice's trail" 200 "$(t_api GET /v1/audit "$alice_read")"
kinds() { # kinds DEVICE: the kinds of the device's entries, oldest first
    jq -r --arg d "$1" '[.entries | reverse | .[] | select(.device == $d) | .kind] | join(" ")' "$T_BODY"
}
t_eq "  A: consent, approval, offer, download, install" \
    "upgrade_consent_changed upgrade_consent_changed upgrade_consent_changed upgrade_consent_changed firmware_approved firmware_offered firmware_downloaded firmware_installed" \
    "$(kinds "$A")"
t_eq "  A2: approval, consent, offer, refusal, offer, consent, withdrawal" \
    "firmware_approved upgrade_consent_changed firmware_offered firmware_refused firmware_offered upgrade_consent_changed firmware_withdrawn" \
    "$(kinds "$A2")"
t_eq "  a consent change: before and after, by alice" "off ask alice" \
    "$(field "[.entries[] | select(.device == \"$A\" and .kind == \"upgrade_consent_changed\")] | last
        | \"\(.detail.before) \(.detail.after) \(.actor)\"")"
t_eq "  the approval: release, version, digest, consent" \
    "$R2 2.5.0 $(jq -r '.releases[1].image_sha256' "$T_WORK/firmware.json") ask alice" \
    "$(field "[.entries[] | select(.kind == \"firmware_approved\" and .device == \"$A\")][0]
        | \"\(.detail.release) \(.detail.version) \(.detail.image_sha256) \(.detail.consent) \(.actor)\"")"
t_eq "  the refusal, with its reason, by no account" "$R2 signature null" \
    "$(field '.entries[] | select(.kind == "firmware_refused") | "\(.detail.release) \(.detail.reason) \(.actor)"')"
t_eq "  device entries name no sensor" 0 "$(field '[.entries[] | select(.device != null and has("sensor"))] | length')"
t_eq "  the sharing entry is as it was: a sensor, no device" "$S false" \
    "$(field '.entries[] | select(.kind == "sharing_changed") | "\(.sensor) \(has("device"))"')"
t_eq "bob's trail holds none of it" 200 "$(t_api GET /v1/audit "$bob")"
t_eq "  empty" 0 "$(field '.entries | length')"

# --- registration with hardware ----------------------------------------------------------------
devices_before="$(t_psql 'SELECT count(*) FROM devices')"
register() { # register BODY: "status error"
    t_api POST /v1/devices "$alice" -H 'Content-Type: application/json' --data-binary "$1" | tr -d '\n'
    printf ' %s' "$(field '.error // ""')"
}
for hw in '"FLM02"' '""' '".flm"' '"flm 02"' '"a234567890123456789012345678901234"' 5 null \
    '["flm02"]'; do
    t_eq "hardware $hw is refused" "400 invalid_request" \
        "$(register "{\"generate_key\":true,\"hardware\":$hw}")"
done
t_like "  with the rule" "hardware: 1 to 32" "$(field .message)"
t_eq "  nothing registered" "$devices_before" "$(t_psql 'SELECT count(*) FROM devices')"
t_eq "a flm03 meter" "201 " "$(register '{"generate_key":true,"hardware":"flm03","name":"Garage"}')"
F="$(field .id)"
t_eq "  hardware flm03, consent off" "flm03 off" "$(field '"\(.hardware) \(.upgrade_consent)"')"
t_eq "  stored" flm03 "$(t_psql "SELECT hardware FROM devices WHERE id = '$F'")"
t_eq "a meter without hardware: flm02" "201 flm02" \
    "$(register '{"generate_key":true}' | tr -d ' ') $(field .hardware)"
t_eq "flm03's release may be approved for the flm03 meter" "200 " "$(approve "$alice" "$F" "$R3")"
t_eq "  not flm02's" "409 wrong_hardware" "$(approve "$alice" "$F" "$R2")"

# --- row-level security backstop ---------------------------------------------------------------
# The API role with an account bound (or none), as raw SQL: the policies alone decide.
denied() { # denied ACCOUNT SQL: refused by a privilege or a row-level security policy
    local out
    if out="$(t_psql_as_account "$1" "$2" 2>&1)"; then
        printf 'succeeded: %s\n' "$out"
        return 1
    fi
    grep -E 'permission denied|row-level security' <<<"$out" || {
        printf '%s\n' "$out"
        return 1
    }
}
t_eq "RLS: bob sees none of alice's offers or approvals" "0 0" "$(t_psql_as_account bob \
    "SELECT (SELECT count(*) FROM upgrade_offers) || ' ' || (SELECT count(*) FROM upgrade_approvals)")"
t_eq "RLS: nor does anyone without an account" "0 0" "$(t_psql_as_account "" \
    "SELECT (SELECT count(*) FROM upgrade_offers) || ' ' || (SELECT count(*) FROM upgrade_approvals)")"
t_eq "RLS: alice sees hers" "3 3" "$(t_psql_as_account alice \
    "SELECT (SELECT count(*) FROM upgrade_offers) || ' ' || (SELECT count(*) FROM upgrade_approvals)")"
t_eq "RLS: bob's UPDATE of alice's consent touches nothing" "" \
    "$(t_psql_as_account bob "UPDATE devices SET upgrade_consent = 'auto' WHERE id = '$A' RETURNING 1")"
t_eq "  A is still ask" ask "$(consent_of "$A")"
approvals_before="$(approvals)"
t_ok "RLS: bob cannot approve for alice's meter" denied bob \
    "INSERT INTO upgrade_approvals (did, release_id, account_id) VALUES ($A2did, '$R2', $bob_id)"
t_ok "  nor in alice's name" denied bob \
    "INSERT INTO upgrade_approvals (did, release_id, account_id) VALUES ($A2did, '$R2', $alice_id)"
t_ok "  nor on his meter in alice's name" denied bob \
    "INSERT INTO upgrade_approvals (did, release_id, account_id)
     VALUES ($(did "$B"), '$R2', $alice_id)"
t_ok "RLS: alice cannot take back an approval (history)" denied alice \
    "DELETE FROM upgrade_approvals WHERE did = $Adid"
t_ok "  nor change one" denied alice \
    "UPDATE upgrade_approvals SET release_id = '$R1' WHERE did = $Adid"
t_eq "  approvals unchanged" "$approvals_before" "$(approvals)"
t_ok "RLS: the API cannot make offers" denied alice \
    "INSERT INTO upgrade_offers (did, release_id, account_id, rollout_id, state)
     VALUES ($A3did, '$R2', $alice_id, 1, 'offered')"
t_ok "  nor change them" denied alice "UPDATE upgrade_offers SET state = 'withdrawn'"
t_ok "RLS: alice cannot forge ingest's audit entries in her own trail" denied alice \
    "INSERT INTO audit_log (account_id, kind, device_id, detail)
     VALUES ($alice_id, 'firmware_installed', '$A', '{}')"
t_ok "RLS: nor audit a consent change of bob's meter" denied alice \
    "INSERT INTO audit_log (account_id, actor_id, kind, device_id, detail)
     VALUES ($alice_id, $alice_id, 'upgrade_consent_changed', '$B', '{}')"
t_ok "RLS: nor write into bob's trail" denied alice \
    "INSERT INTO audit_log (account_id, actor_id, kind, device_id, detail)
     VALUES ($bob_id, $alice_id, 'upgrade_consent_changed', '$B', '{}')"
t_eq "RLS: bob's trail is still empty" 0 \
    "$(t_psql "SELECT count(*) FROM audit_log WHERE account_id = $bob_id")"
t_ok "the API role cannot ask upg_candidates" denied alice \
    "SELECT * FROM upg_candidates($Adid, '{2,4,0,0}')"
t_ok "  nor upg_heartbeat" denied alice \
    "SELECT * FROM upg_heartbeat($Adid, '2.4.0', true, NULL, NULL, NULL)"
t_ok "  nor read rollouts" denied alice "SELECT count(*) FROM rollouts"
t_eq "anyone reads the releases, their keys and the log" "5 1 5" "$(t_psql_as_account "" \
    "SELECT (SELECT count(*) FROM releases) || ' ' || (SELECT count(*) FROM release_keys) || ' ' ||
            (SELECT count(*) FROM release_log)")"
t_ok "  but the API cannot add a key" denied alice \
    "INSERT INTO release_keys (key_id, public_key, fingerprint) VALUES ('x', '\\x00', 'x')"
t_ok "  nor change a release" denied alice "UPDATE releases SET notes = 'x'"
t_ok "  nor publish" denied alice "DELETE FROM release_log"
t_ok "the API role cannot change a meter's hardware" denied alice \
    "UPDATE devices SET hardware = 'flm03' WHERE id = '$A'"

t_fails "no token in meterhub-api's log" grep -qF -e "$alice" -e "$alice_read" -e "$bob" \
    "$T_WORK/log/api.log"
t_ok "meterhub-api stops cleanly" t_stop_api

t_done
