#!/usr/bin/env bash
#
# meterhub-release end to end on a real PostgreSQL: keygen, sign, publish (rows, the image
# store, the log's hash chain recomputed with printf | sha256sum), every refusal of publish
# (exit 1, a clear message, nothing stored), rollouts (percent buckets, lists, states, status
# counts), log verify, and PostgreSQL refusing to rewrite the log.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/release_helpers.sh"

t_init release_cli
t_release_env
ZEROS="$(printf '0%.0s' {1..64})"
cd "$T_WORK"

# ---------------------------------------------------------------------------------------------
# keygen

json="$(t_release keygen --out "$T_WORK/k1")"
kid="$(jq -r .key_id <<<"$json")"
fp="$(jq -r .fingerprint <<<"$json")"
t_like "keygen prints a key id" '^[0-9a-f]{16}$' "$kid"
t_eq "the key id is the fingerprint's first 16 hex digits" "${fp:0:16}" "$kid"
raw_fp="$(openssl pkey -pubin -in k1/release.pub -outform DER | tail -c 32 | sha256sum | cut -c1-64)"
t_eq "the fingerprint is the SHA-256 of the raw public key" "$raw_fp" "$fp"
t_eq "it names the public key file" "$T_WORK/k1/release.pub" "$(jq -r .public_key <<<"$json")"
t_eq "the key directory is 0700" 700 "$(stat -c %a k1)"
t_eq "the private key is 0600" 600 "$(stat -c %a k1/release.key)"
t_eq "the public key is 0644" 644 "$(stat -c %a k1/release.pub)"
t_eq "the private key is PKCS#8 PEM" "-----BEGIN PRIVATE KEY-----" "$(head -n 1 k1/release.key)"
t_like "an Ed25519 key" 'ED25519' "$(openssl pkey -in k1/release.key -noout -text 2>&1 | head -n 1)"
t_eq "the public key is SubjectPublicKeyInfo PEM" "-----BEGIN PUBLIC KEY-----" \
    "$(head -n 1 k1/release.pub)"
before="$(sha256sum k1/release.key k1/release.pub)"
rc=0
t_release keygen --out "$T_WORK/k1" >/dev/null 2>"$T_WORK/err" || rc=$?
t_eq "keygen never overwrites (exit 1)" 1 "$rc"
t_like "saying so" 'already exists; not overwritten' "$(cat "$T_WORK/err")"
t_eq "both files unchanged" "$before" "$(sha256sum k1/release.key k1/release.pub)"
mkdir -m 0700 k3 && cp k1/release.pub k3/release.pub
rc=0
t_release keygen --out "$T_WORK/k3" >/dev/null 2>&1 || rc=$?
t_eq "nor next to an existing public key" 1 "$rc"
t_eq "and makes no private key there" no "$([[ -e k3/release.key ]] && echo yes || echo no)"
rc=0
t_release keygen >/dev/null 2>&1 || rc=$?
t_eq "keygen without --out is a usage error" 2 "$rc"
kid2="$(t_release keygen --out "$T_WORK/k2" | jq -r .key_id)"

# The tests' default key is k1: publish trusts it alone.
T_RELEASE_KEY_DIR=$T_WORK/k1
T_RELEASE_KEYS=$T_WORK/k1/release.pub

# ---------------------------------------------------------------------------------------------
# sign

mkdir -p img
t_release_image img/fw1.bin 100000 >/dev/null
rel1="$(t_release_sign img/fw1.bin 1.0.0 flm02 --notes "first release")"
t_like "sign prints the release id" '^[0-9a-f]{32}$' "$rel1"
m=img/fw1.bin.manifest
t_eq "one manifest line" 1 "$(wc -l <"$m")"
t_eq "the release id is the manifest's SHA-256, first 32 hex" "$(sha256sum "$m" | cut -c1-32)" "$rel1"
t_eq "the manifest's keys in the documented order" \
    "format version hardware size sha256 notes issued expires key_id" \
    "$(jq -r 'keys_unsorted | join(" ")' "$m")"
t_eq "format" "meterhub-manifest/1" "$(jq -r .format "$m")"
t_eq "size is the image's" 100000 "$(jq -r .size "$m")"
t_eq "sha256 is the image's" "$(sha256sum img/fw1.bin | cut -c1-64)" "$(jq -r .sha256 "$m")"
t_eq "key_id is the signer's" "$kid" "$(jq -r .key_id "$m")"
t_eq "notes" "first release" "$(jq -r .notes "$m")"
t_eq "valid 90 days by default" $((90 * 86400)) "$(jq -r '.expires - .issued' "$m")"
t_like "issued now" '^(0|1|2|3|4|5|6|7|8|9|10)$' "$(($(date +%s) - $(jq -r .issued "$m")))"
base64 -d "$m.sig" >sig1.bin
t_eq "the signature is 64 bytes of base64 on one line" "64 1" \
    "$(stat -c %s sig1.bin) $(wc -l <"$m.sig")"
t_ok "OpenSSL verifies the signature over the manifest bytes" \
    openssl pkeyutl -verify -pubin -inkey k1/release.pub -rawin -in "$m" -sigfile sig1.bin
t_fails "and not with another key" \
    openssl pkeyutl -verify -pubin -inkey k2/release.pub -rawin -in "$m" -sigfile sig1.bin

before="$(sha256sum "$m" "$m.sig")"
rc=0
t_release_sign img/fw1.bin 1.0.1 >/dev/null 2>"$T_WORK/err" || rc=$?
t_eq "sign never overwrites (exit 1)" 1 "$rc"
t_like "saying so" 'already exists' "$(cat "$T_WORK/err")"
t_eq "the manifest and signature unchanged" "$before" "$(sha256sum "$m" "$m.sig")"

t_release_sign img/fw1.bin 1.0.1 flm02 --out "$T_WORK/img/other" --expires 0.5 >/dev/null
t_eq "--out names the files" "yes yes" \
    "$([[ -f img/other.manifest ]] && echo yes) $([[ -f img/other.manifest.sig ]] && echo yes)"
t_eq "--expires in fractions of days" 43200 "$(jq -r '.expires - .issued' img/other.manifest)"
printf 'line one\nline "two" \xc3\xa9\n' >notes.txt
t_release_sign img/fw1.bin 1.0.2 flm02 --out "$T_WORK/img/notes" --notes-file notes.txt >/dev/null
t_eq "--notes-file, without its final newline" "$(printf 'line one\nline "two" \xc3\xa9')" \
    "$(jq -r .notes img/notes.manifest)"

# sign refusals: exit status, and no file left behind.
sign_refused() {
    local desc=$1 want=$2 code=$3 rc=0
    shift 3
    rm -f "$T_WORK/img/bad.manifest" "$T_WORK/img/bad.manifest.sig"
    t_release sign --out "$T_WORK/img/bad" "$@" >/dev/null 2>"$T_WORK/err" || rc=$?
    t_eq "sign $desc: exit $code" "$code" "$rc"
    t_like "sign $desc: says why" "$want" "$(cat "$T_WORK/err")"
    t_eq "sign $desc: no file written" 0 "$(find img -name 'bad*' | wc -l)"
}
: >img/empty.bin
printf 'caf\xe9\n' >bad-notes.txt
key=(--key k1/release.key)
sign_refused "of a missing image" 'No such file' 1 "${key[@]}" --image img/nope --version 1 --hardware flm02
sign_refused "of an empty image" 'empty' 1 "${key[@]}" --image img/empty.bin --version 1 --hardware flm02
sign_refused "of a directory" 'not a regular file' 1 "${key[@]}" --image img --version 1 --hardware flm02
sign_refused "with a public key" 'not a PEM private key' 1 --key k1/release.pub --image img/fw1.bin \
    --version 1 --hardware flm02
sign_refused "with a device key (not Ed25519)" 'not an Ed25519 key' 1 --key "$T_PKI/ingest.key" \
    --image img/fw1.bin --version 1 --hardware flm02
sign_refused "with notes that are not UTF-8" 'UTF-8' 1 "${key[@]}" --image img/fw1.bin --version 1 \
    --hardware flm02 --notes-file bad-notes.txt
sign_refused "of a malformed version" 'version: expected' 2 "${key[@]}" --image img/fw1.bin \
    --version 1.2.3.4.5 --hardware flm02
sign_refused "of a malformed hardware" 'hardware: expected' 2 "${key[@]}" --image img/fw1.bin \
    --version 1 --hardware FLM02
sign_refused "with --expires 0" 'expires: expected' 2 "${key[@]}" --image img/fw1.bin --version 1 \
    --hardware flm02 --expires 0

# ---------------------------------------------------------------------------------------------
# publish: three releases, chained

counts() {
    t_psql "SELECT (SELECT count(*) FROM releases) || ' ' || (SELECT count(*) FROM release_log)
                   || ' ' || (SELECT count(*) FROM release_keys)"
}
# What publish may change: the three tables and every file of the store.
snapshot() {
    printf '%s|%s\n' "$(counts)" \
        "$(find "$T_FIRMWARE_STORE" -type f 2>/dev/null | sort | xargs -r sha256sum | sha256sum)"
}
t_eq "nothing published yet" "0 0 0" "$(counts)"

t_release_publish "$m" img/fw1.bin >/dev/null
out="$(cat "$T_RELEASE_OUT")"
t_eq "publish prints the release" "$rel1" "$(jq -r .release <<<"$out")"
t_eq "its version, hardware, size and digest" "1.0.0 flm02 100000 $(jq -r .sha256 "$m")" \
    "$(jq -r '"\(.version) \(.hardware) \(.size) \(.image_sha256)"' <<<"$out")"
t_eq "as log entry 1" 1 "$(jq -r .log_seq <<<"$out")"
t_eq "one release, one log entry, one key" "1 1 1" "$(counts)"
stored="$(t_release_stored "$(jq -r .sha256 "$m")")"
t_eq "the image is in the store under its digest" "$stored" "$(jq -r .stored <<<"$out")"
t_eq "with the image's bytes" "$(sha256sum img/fw1.bin | cut -c1-64)" \
    "$(sha256sum "$stored" | cut -c1-64)"
t_eq "readable by the serving daemons (0644)" 644 "$(stat -c %a "$stored")"
t_eq "no temporary file left in the store" 1 "$(find "$T_FIRMWARE_STORE" -type f | wc -l)"
t_eq "the release row holds the manifest bytes and signature" \
    "$(od -An -tx1 "$m" | tr -d ' \n') $(od -An -tx1 sig1.bin | tr -d ' \n')" \
    "$(t_psql "SELECT encode(manifest, 'hex') || ' ' || encode(signature, 'hex') FROM releases")"
t_eq "and the fields parsed from it" \
    "1.0.0 {1,0,0,0} flm02 100000 $(jq -r .sha256 "$m") first release $kid" \
    "$(t_psql "SELECT version || ' ' || version_key::text || ' ' || hardware || ' ' || size || ' '
               || image_sha256 || ' ' || notes || ' ' || key_id FROM releases")"
t_eq "issued and expires as timestamps" "$(jq -r '"\(.issued) \(.expires)"' "$m")" \
    "$(t_psql "SELECT extract(epoch FROM issued_at)::bigint || ' '
               || extract(epoch FROM expires_at)::bigint FROM releases")"
t_eq "the key row" "$kid $fp $(openssl pkey -pubin -in k1/release.pub -outform DER | tail -c 32 |
    od -An -tx1 | tr -d ' \n')" \
    "$(t_psql "SELECT key_id || ' ' || fingerprint || ' ' || encode(public_key, 'hex')
               FROM release_keys")"

# Two more, then the chain recomputed in bash from the documented formula.
t_release_image img/fw2.bin 5000 >/dev/null
rel2="$(t_release_sign img/fw2.bin 1.1 flm02)"
t_release_publish img/fw2.bin.manifest img/fw2.bin >/dev/null
t_release_image img/fw3.bin 1 >/dev/null
rel3="$(t_release_sign img/fw3.bin 2.0.0.1 flm03)"
t_release_publish img/fw3.bin.manifest img/fw3.bin >/dev/null
t_eq "publish entry 3" 3 "$(jq -r .log_seq "$T_RELEASE_OUT")"
t_eq "three releases, three entries, one key" "3 3 1" "$(counts)"

prev=$ZEROS
seq=0
for pair in "$rel1:img/fw1.bin" "$rel2:img/fw2.bin" "$rel3:img/fw3.bin"; do
    rel=${pair%%:*}
    file=${pair#*:}
    seq=$((seq + 1))
    msha="$(sha256sum "$file.manifest" | cut -c1-64)"
    want="$(t_release_log_hash "$seq" "$prev" "$msha" "$(cat "$file.manifest.sig")")"
    t_eq "log entry $seq: seq, release, manifest digest, signature, prev, hash" \
        "$seq $rel $msha $(base64 -d "$file.manifest.sig" | od -An -tx1 | tr -d ' \n') $prev $want" \
        "$(t_psql "SELECT seq || ' ' || release_id || ' ' || manifest_sha256 || ' '
                   || encode(signature, 'hex') || ' ' || prev_hash || ' ' || entry_hash
                   FROM release_log WHERE seq = $seq")"
    t_eq "release $seq records the same entry" "$seq $prev $want" \
        "$(t_psql "SELECT log_seq || ' ' || log_prev || ' ' || log_hash FROM releases
                   WHERE id = '$rel'")"
    prev=$want
done
t_eq "publish printed the last entry's hash" "$prev" "$(jq -r .log_hash "$T_RELEASE_OUT")"

# ---------------------------------------------------------------------------------------------
# publish refusals: exit 1, a clear message, nothing in the database or the store

refused() {
    local desc=$1 want=$2 rc=0 before
    shift 2
    before="$(snapshot)"
    t_release "$@" >"$T_WORK/out" 2>"$T_WORK/err" || rc=$?
    t_eq "$desc: exit 1" 1 "$rc"
    t_like "$desc: says why" "$want" "$(cat "$T_WORK/err")"
    t_eq "$desc: nothing stored" "$before" "$(snapshot)"
    t_eq "$desc: no output" "" "$(cat "$T_WORK/out")"
}

t_release_image img/fw4.bin 3000 >/dev/null
t_release_sign img/fw4.bin 3.0 flm02 >/dev/null
m4=img/fw4.bin.manifest

cp "$m4" img/unsigned.manifest
refused "an unsigned manifest" 'no usable signature' publish img/unsigned.manifest img/fw4.bin
refused "another manifest's signature" 'does not verify with trusted key' \
    publish "$m4" img/fw4.bin --signature img/fw2.bin.manifest.sig
printf 'not base64\n' >img/garbage.sig
refused "a signature file that is not one" 'not the base64 of a 64-byte' \
    publish "$m4" img/fw4.bin --signature img/garbage.sig

t_release_sign img/fw4.bin 3.0 flm02 --key k2/release.key --out "$T_WORK/img/k2" >/dev/null
refused "a manifest signed by an untrusted key" "key $kid2 is not trusted" \
    publish img/k2.manifest img/fw4.bin
refused "... even with the trusted keys given as a directory" "key $kid2 is not trusted" \
    publish img/k2.manifest img/fw4.bin --trusted-keys "$T_WORK/k1"

cp img/fw4.bin img/tampered.bin
printf '\x01' | dd of=img/tampered.bin bs=1 seek=1234 conv=notrunc status=none
refused "a tampered image" 'SHA-256 .* the manifest says' publish "$m4" img/tampered.bin
cp img/fw4.bin img/longer.bin
printf 'x' >>img/longer.bin
refused "an image longer than the manifest says" "larger than the manifest's size" \
    publish "$m4" img/longer.bin
head -c 2999 img/fw4.bin >img/shorter.bin
refused "an image shorter than the manifest says" '2999 bytes, the manifest says 3000' \
    publish "$m4" img/shorter.bin
refused "a missing image" 'No such file' publish "$m4" img/nope.bin

sed 's/"version":"3.0"/"version":"3.1"/' "$m4" >img/edited.manifest
cp "$m4.sig" img/edited.manifest.sig
refused "a manifest edited after signing" 'does not verify with trusted key' \
    publish img/edited.manifest img/fw4.bin
printf '%s ' "$(cat "$m4")" >img/blank.manifest
cp "$m4.sig" img/blank.manifest.sig
refused "a manifest with a blank added" 'canonical' publish img/blank.manifest img/fw4.bin
printf '{"format":"meterhub-manifest/1"\n' >img/broken.manifest
cp "$m4.sig" img/broken.manifest.sig
refused "a malformed manifest" 'not valid JSON' publish img/broken.manifest img/fw4.bin
jq -c '.size = 0' "$m4" >img/zero.manifest
cp "$m4.sig" img/zero.manifest.sig
refused "a manifest of size 0" 'size: expected 1 to' publish img/zero.manifest img/fw4.bin

refused "publishing a release twice" "release $rel1 .* is already published" \
    publish "$m" img/fw1.bin
t_release_image img/fw1b.bin 2000 >/dev/null
t_release_sign img/fw1b.bin 1.0 flm02 >/dev/null
refused "another release of a published version (1.0 = 1.0.0)" \
    "version 1.0 for flm02 is already published \\(release $rel1, version 1.0.0\\)" \
    publish img/fw1b.bin.manifest img/fw1b.bin

t_release_sign img/fw4.bin 3.0.9 flm02 --expires 0.00001 --out "$T_WORK/img/expired" >/dev/null
sleep 2
refused "an expired manifest" 'expired' publish img/expired.manifest img/fw4.bin

rc=0
MH_FIRMWARE_STORE='' "$MH_BIN/meterhub-release" publish "$m4" img/fw4.bin --pg "$T_PG_URI" \
    --trusted-keys "$T_RELEASE_KEYS" >/dev/null 2>&1 || rc=$?
t_eq "publish without a store is a usage error" 2 "$rc"
rc=0
MH_RELEASE_KEYS='' "$MH_BIN/meterhub-release" publish "$m4" img/fw4.bin --pg "$T_PG_URI" \
    --store "$T_FIRMWARE_STORE" >/dev/null 2>&1 || rc=$?
t_eq "publish without trusted keys is a usage error" 2 "$rc"

# The same version for other hardware is another release; the store keeps one copy per image.
t_release_sign img/fw1.bin 1.0.0 flm03 --out "$T_WORK/img/fw1-flm03" >/dev/null
t_release_publish img/fw1-flm03.manifest img/fw1.bin >/dev/null
t_eq "the same version for other hardware is published" 4 "$(jq -r .log_seq "$T_RELEASE_OUT")"
t_eq "the same image is stored once" 3 "$(find "$T_FIRMWARE_STORE" -type f | wc -l)"
t_release_publish "$m4" img/fw4.bin --trusted-keys "$T_WORK/k1" >/dev/null
t_eq "a trusted-keys directory works too" 5 "$(jq -r .log_seq "$T_RELEASE_OUT")"

# ---------------------------------------------------------------------------------------------
# log verify, and a log that cannot be rewritten

t_eq "log verify: the chain and every release check out" \
    "{\"entries\": 5, \"head\": \"$(jq -r .log_hash "$T_RELEASE_OUT")\", \"errors\": 0, \"verified\": true}" \
    "$(t_release log verify)"
t_fails "PostgreSQL refuses an UPDATE of the log" \
    t_psql "UPDATE release_log SET prev_hash = '$ZEROS' WHERE seq = 2"
t_like "as append-only" 'append-only' "$(cat "$T_WORK/assert.out")"
t_fails "and a DELETE" t_psql "DELETE FROM release_log WHERE seq = 5"
t_like "as append-only" 'append-only' "$(cat "$T_WORK/assert.out")"
t_fails "and a TRUNCATE" t_psql "TRUNCATE release_log CASCADE"
t_eq "the log is whole" 5 "$(t_psql 'SELECT count(*) FROM release_log')"

t_psql "UPDATE releases SET version_key = '{9,0,0,0}' WHERE id = '$rel2'"
rc=0
t_release log verify >"$T_WORK/out" 2>"$T_WORK/err" || rc=$?
t_eq "log verify fails on a release row that lies about its version" 1 "$rc"
t_like "naming the entry" 'log entry 2: .*differ from its manifest' "$(cat "$T_WORK/err")"
t_like "and counting it" '"errors": 1, "verified": false' "$(cat "$T_WORK/out")"
t_psql "UPDATE releases SET version_key = '{1,1,0,0}', log_hash = '$ZEROS' WHERE id = '$rel2'"
rc=0
t_release log verify >/dev/null 2>"$T_WORK/err" || rc=$?
t_eq "or about its log entry" 1 "$rc"
t_like "naming it" 'log entry 2: .*log_hash differ' "$(cat "$T_WORK/err")"
t_psql "UPDATE releases SET log_hash = (SELECT entry_hash FROM release_log WHERE seq = 2)
        WHERE id = '$rel2'"
t_ok "and passes again once repaired" t_release log verify

# ---------------------------------------------------------------------------------------------
# rollouts

t_admin device add --account fleet --sensors 0 --count 60 --out "$T_WORK/fleet" >fleet.json
t_admin device add --account other --sensors 0 --count 3 --hardware flm03 --out "$T_WORK/other" \
    >other.json
jq -r .device fleet.json >fleet.ids

# The bucket of docs/upgrade.md, in bash: the first 4 bytes of SHA-256(id), big-endian,
# modulo 10000. PostgreSQL's upg_bucket must agree for every device.
mismatch=0
while read -r id; do
    b=$((16#$(printf '%s' "$id" | sha256sum | cut -c1-8) % 10000))
    [[ "$(t_psql "SELECT upg_bucket('$id')")" == "$b" ]] || mismatch=$((mismatch + 1))
done <fleet.ids
t_eq "upg_bucket is the documented formula" 0 "$mismatch"

in_bucket() { # percent in basis points: the active flm02 devices below it
    t_psql "SELECT count(*) FROM devices WHERE hardware = 'flm02' AND status = 'active'
            AND upg_bucket(id) < $1"
}
json="$(t_rollout create --release "$rel1" --percent 10)"
ro1="$(jq -r .id <<<"$json")"
t_eq "create prints the rollout" "$rel1 10 active" \
    "$(jq -r '"\(.release) \(.percent) \(.state)"' <<<"$json")"
t_eq "targeting the devices whose bucket is below 10 %" "$(in_bucket 1000)" \
    "$(jq -r .devices <<<"$json")"
t_eq "stored in basis points" "1000 false active" \
    "$(t_psql "SELECT percent_bp || ' ' || has_list || ' ' || state FROM rollouts WHERE id = $ro1")"
first_set="$(t_psql "SELECT string_agg(id, ',' ORDER BY id) FROM devices WHERE hardware = 'flm02'
                     AND upg_bucket(id) < 1000")"

json="$(t_rollout set "$ro1" --percent 50)"
t_eq "set raises the percent" "50 $(in_bucket 5000)" "$(jq -r '"\(.percent) \(.devices)"' <<<"$json")"
t_eq "every device of the 10 % is still in the 50 %" 0 \
    "$(t_psql "SELECT count(*) FROM unnest(string_to_array('$first_set', ',')) AS f(id)
               WHERE upg_bucket(f.id) >= 5000")"
t_ok "and the 50 % holds at least as many" test "$(in_bucket 5000)" -ge "$(in_bucket 1000)"
json="$(t_rollout set "$ro1" --percent 12.34)"
t_eq "two decimals" "12.34 1234" \
    "$(jq -r .percent <<<"$json") $(t_psql "SELECT percent_bp FROM rollouts WHERE id = $ro1")"

t_eq "pause" paused "$(t_rollout pause "$ro1" | jq -r .state)"
t_eq "pause again: still paused" paused "$(t_rollout pause "$ro1" | jq -r .state)"
json="$(t_rollout resume "$ro1" --percent 100)"
t_eq "resume, with a new percent" "active 100 60" \
    "$(jq -r '"\(.state) \(.percent) \(.devices)"' <<<"$json")"
t_eq "abort" aborted "$(t_rollout abort "$ro1" | jq -r .state)"
t_eq "abort again is harmless" aborted "$(t_rollout abort "$ro1" | jq -r .state)"
for verb in "resume $ro1" "pause $ro1" "set $ro1 --percent 5"; do
    rc=0
    # shellcheck disable=SC2086 # the words of $verb
    t_rollout $verb >/dev/null 2>"$T_WORK/err" || rc=$?
    t_eq "rollout ${verb%% *} of an aborted rollout is refused" 1 "$rc"
    t_like "... aborting is final" 'aborted, and aborting is final' "$(cat "$T_WORK/err")"
done
t_eq "the aborted rollout stays aborted at 100 %" "aborted 10000" \
    "$(t_psql "SELECT state || ' ' || percent_bp FROM rollouts WHERE id = $ro1")"
rc=0
t_rollout pause 999999 >/dev/null 2>"$T_WORK/err" || rc=$?
t_eq "an unknown rollout is refused" 1 "$rc"
t_like "... by id" 'rollout 999999: no such rollout' "$(cat "$T_WORK/err")"

nrollouts() { t_psql 'SELECT count(*) FROM rollouts'; }
rollout_refused() {
    local desc=$1 want=$2 rc=0 before
    shift 2
    before="$(nrollouts) $(t_psql 'SELECT count(*) FROM rollout_devices')"
    t_rollout create "$@" >"$T_WORK/out" 2>"$T_WORK/err" || rc=$?
    t_eq "$desc: refused" 1 "$rc"
    t_like "$desc: says why" "$want" "$(cat "$T_WORK/err")"
    t_eq "$desc: nothing created" "$before" \
        "$(nrollouts) $(t_psql 'SELECT count(*) FROM rollout_devices')"
}
rollout_refused "the wrong --hardware" "release $rel1 is for hardware flm02, not flm03" \
    --release "$rel1" --hardware flm03
rollout_refused "an unknown release" 'no such release' --release 0123456789abcdef0123456789abcdef

{
    printf '# canaries\n\n'
    sed -n 1,3p fleet.ids
    printf '  %s  \n' "$(sed -n 3p fleet.ids)"
    jq -r .device other.json | head -n 1
} >list.txt
json="$(t_rollout create --release "$rel1" --hardware flm02 --devices list.txt)"
ro2="$(jq -r .id <<<"$json")"
t_eq "a listed rollout targets only the listed devices of its hardware" 3 "$(jq -r .devices <<<"$json")"
t_eq "the list is stored (duplicates once)" "true 4" \
    "$(t_psql "SELECT has_list || ' ' || (SELECT count(*) FROM rollout_devices WHERE rollout_id = $ro2)
               FROM rollouts WHERE id = $ro2")"
{
    sed -n 1,2p fleet.ids
    printf 'not-a-device\n'
} >bad-list.txt
rollout_refused "a list with a malformed id" 'line 3: not a device id' --release "$rel1" \
    --devices bad-list.txt
{
    sed -n 1,2p fleet.ids
    printf '00000000000000000000000000000000\n'
} >unknown-list.txt
rollout_refused "a list with an unknown device" \
    'do not exist: 00000000000000000000000000000000' --release "$rel1" --devices unknown-list.txt
printf '# nobody\n' >empty-list.txt
rollout_refused "an empty list" 'no device ids' --release "$rel1" --devices empty-list.txt
rollout_refused "a missing list" 'No such file' --release "$rel1" --devices nope.txt

# status: the offer counts come from upgrade_offers (rows made here as the ingest would).
ro3="$(t_rollout_create --release "$rel2" --percent 100)"
acct="$(t_psql "SELECT id FROM accounts WHERE name = 'fleet'")"
i=0
for state in offered withdrawn downloaded installed failed refused installed; do
    i=$((i + 1))
    dl=NULL
    [[ "$state" == downloaded || "$state" == installed ]] && dl='now()'
    t_psql "INSERT INTO upgrade_offers (did, release_id, account_id, rollout_id, state, downloaded_at)
            SELECT did, '$rel2', $acct, $ro3, '$state', $dl FROM devices
            WHERE id = '$(sed -n "${i}p" fleet.ids)'"
done
t_psql "UPDATE devices SET status = 'revoked' WHERE id = '$(sed -n 60p fleet.ids)'"
json="$(t_rollout status "$ro3")"
t_eq "status: one line for one rollout" 1 "$(wc -l <<<"$json")"
t_eq "status: id, release, version, hardware, percent, state" \
    "$ro3 $rel2 1.1 flm02 100 active" \
    "$(jq -r '"\(.id) \(.release) \(.version) \(.hardware) \(.percent) \(.state)"' <<<"$json")"
t_eq "status: targeted (active devices only), offered, downloaded, installed, failed, refused" \
    "59 7 3 2 1 1" \
    "$(jq -r '"\(.targeted) \(.offered) \(.downloaded) \(.installed) \(.failed) \(.refused)"' <<<"$json")"
t_eq "status without an id: every rollout, in order" "$ro1 $ro2 $ro3" \
    "$(t_rollout status | jq -r .id | paste -sd' ')"
t_eq "an aborted rollout in the list" aborted \
    "$(t_rollout status | jq -r "select(.id == $ro1) | .state")"
rc=0
t_rollout status 424242 >/dev/null 2>&1 || rc=$?
t_eq "status of an unknown rollout fails" 1 "$rc"
rc=0
t_rollout create --release "$rel1" --percent 101 >/dev/null 2>&1 || rc=$?
t_eq "a percent above 100 is a usage error" 2 "$rc"
rc=0
env -u MH_PG_URI "$MH_BIN/meterhub-release" rollout status >/dev/null 2>&1 || rc=$?
t_eq "no database given is a usage error" 2 "$rc"

t_done
