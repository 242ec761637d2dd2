#!/usr/bin/env bash
#
# A compromised server cannot make a careful meter install anything the release key did not
# sign for it, nor anything older, expired, for other hardware, longer than signed, or missing
# from the public log. Each attack tampers, as the PostgreSQL owner or in the image store, with
# what ingest then offers and serves; a meter of meterhub-sim (flag on, its owner consenting)
# must refuse with the right reason, report it in its next heartbeat, and the refusal must be
# recorded (upgrade_offers 'refused' with the reason, firmware_refused in the audit trail),
# while the meter keeps running its own version. An honest release, published the same way,
# is installed (the control). See docs/upgrade.md "The careful meter".
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/release_helpers.sh"
source "$MH_SRC/tests/lib/sim_upgrade_helpers.sh"

t_init upgrade_attacks
t_upg_start
t_release_keygen >/dev/null
t_release_keygen "$T_WORK/rogue-key" >/dev/null

# meter NAME: a fleet of one meter for an attack, its owner consenting; prints its dir (the id
# in NAME.id).
meter() {
    local dir="$T_WORK/meters/$1"
    t_upg_fleet "$dir" 1
    jq -r .device "$dir/fleet.json" >"$T_WORK/$1.id"
    t_upg_consent "$(cat "$T_WORK/$1.id")" auto
    printf '%s\n' "$dir"
}

# rollout_to NAME RELEASE: a rollout of RELEASE to that meter alone.
rollout_to() {
    t_rollout_create --release "$2" --devices "$T_WORK/$1.id" >/dev/null
}

# attack NAME RELEASE REASON: the meter of NAME runs until it reported; then checks the
# refusal everywhere it must show.
attack() {
    local name=$1 rel=$2 reason=$3 id
    id="$(cat "$T_WORK/$name.id")"
    t_upg_sim "$T_WORK/meters/$name" "$name" --expect-consent "$T_WORK/$name.id" \
        --remote-upgrade 1
    local j="$T_WORK/$name.json"
    t_eq "$name: the meter reported (exit 0)" 0 "$T_UPG_RC"
    ((T_UPG_RC == 0)) || t_upg_show "$name"
    t_eq "$name: refused: $reason" 1 "$(jq ".upgrade.reasons.$reason // 0" "$j")"
    t_eq "$name: nothing installed" 0 "$(jq .upgrade.installed "$j")"
    t_eq "$name: the report was acknowledged" 1 "$(jq .upgrade.reports.acknowledged "$j")"
    t_eq "$name: upgrade_offers says refused $reason" "refused $reason" \
        "$(t_upg_offer_state "$id" "$rel")"
    t_eq "$name: the audit trail has it" 1 \
        "$(t_psql "SELECT count(*) FROM audit_log WHERE device_id = '$id'
                   AND kind = 'firmware_refused' AND detail->>'reason' = '$reason'")"
    t_ok "$name: the meter still runs 2.0.0" t_wait_until 10 runs "$id" 2.0.0
}

# runs DEVICE_ID VERSION: the device's last stored heartbeat says it runs VERSION.
# shellcheck disable=SC2317 # called through t_wait_until
runs() {
    [[ "$(t_psql "SELECT firmware_version FROM devices WHERE id = '$1'")" == "$2" ]]
}

# hex FILE: its bytes as hex, for decode(..., 'hex').
hex() {
    od -An -v -tx1 "$1" | tr -d ' \n'
}

# The control: an honest release is installed.
meter control >/dev/null
rel="$(t_release_new 3.0.0 flm02 100000)"
rollout_to control "$rel"
t_upg_sim "$T_WORK/meters/control" control --expect-consent "$T_WORK/control.id" --remote-upgrade 1
t_eq "control: exit 0" 0 "$T_UPG_RC"
((T_UPG_RC == 0)) || t_upg_show control
t_eq "control: installed" 1 "$(jq .upgrade.installed "$T_WORK/control.json")"
t_eq "control: upgrade_offers says installed" "installed -" \
    "$(t_upg_offer_state "$(cat "$T_WORK/control.id")" "$rel")"

# 1. The stored image overwritten (same size): the digest differs.
meter image >/dev/null
rel="$(t_release_new 3.0.1 flm02 100000)"
stored="$(t_release_stored "$(jq -r .image_sha256 "$T_RELEASE_OUT")")"
chmod u+w "$stored" 2>/dev/null || true
head -c 100000 /dev/urandom >"$stored"
rollout_to image "$rel"
attack image "$rel" sha256

# 2. The manifest edited in PostgreSQL after publishing (its version raised): the signature
# fails.
meter manifest >/dev/null
rel="$(t_release_new 3.0.2 flm02)"
t_psql "UPDATE releases SET manifest = convert_to(replace(convert_from(manifest, 'UTF8'),
        '\"version\":\"3.0.2\"', '\"version\":\"9.0.2\"'), 'UTF8') WHERE id = '$rel'" >/dev/null
t_eq "manifest: tampered in PostgreSQL" 1 \
    "$(t_psql "SELECT count(*) FROM releases WHERE id = '$rel'
               AND position('\"9.0.2\"' IN convert_from(manifest, 'UTF8')) > 0")"
rollout_to manifest "$rel"
attack manifest "$rel" signature

# 3. A release signed by a key the meters do not pin, put straight into PostgreSQL (publish
# would refuse it) and even into the public log.
meter rogue >/dev/null
img="$(t_release_image "$T_WORK/releases/rogue" 4096)"
t_release sign --key "$T_WORK/rogue-key/release.key" --image "$img" --version 3.0.3 \
    --hardware flm02 >"$T_RELEASE_OUT"
openssl pkey -pubin -in "$T_WORK/rogue-key/release.pub" -outform DER | tail -c 32 >"$T_WORK/rogue.raw"
raw="$(hex "$T_WORK/rogue.raw")"
fp="$(sha256sum "$T_WORK/rogue.raw" | cut -c1-64)"
digest="$(sha256sum "$img" | cut -c1-64)"
mkdir -p "$(dirname "$(t_release_stored "$digest")")"
cp "$img" "$(t_release_stored "$digest")"
msha="$(sha256sum "$img.manifest" | cut -c1-64)"
rel=${msha:0:32}
sig="$(cat "$img.manifest.sig")"
read -r seq prev <<<"$(t_psql "SELECT coalesce(max(seq), 0) + 1, coalesce((SELECT entry_hash FROM
    release_log ORDER BY seq DESC LIMIT 1), repeat('0', 64)) FROM release_log" | tr '|' ' ')"
hash="$(t_release_log_hash "$seq" "$prev" "$msha" "$sig")"
t_psql "INSERT INTO release_keys (key_id, public_key, fingerprint)
        VALUES ('${fp:0:16}', decode('$raw', 'hex'), '$fp');
        INSERT INTO releases (id, manifest, manifest_sha256, signature, key_id, version,
            version_key, hardware, size, image_sha256, issued_at, expires_at, log_seq, log_prev,
            log_hash)
        VALUES ('$rel', decode('$(hex "$img.manifest")', 'hex'), '$msha', decode('$sig', 'base64'),
            '${fp:0:16}', '3.0.3', upg_version_key('3.0.3'), 'flm02', 4096, '$digest',
            now() - interval '1 hour', now() + interval '30 days', $seq, '$prev', '$hash');
        INSERT INTO release_log (seq, release_id, manifest_sha256, signature, prev_hash, entry_hash)
        VALUES ($seq, '$rel', '$msha', decode('$sig', 'base64'), '$prev', '$hash')" >/dev/null
rollout_to rogue "$rel"
attack rogue "$rel" signature

# 4. A validly signed older version made to look newer (its version key raised).
meter rollback >/dev/null
rel="$(t_release_new 1.5.0 flm02)"
t_psql "UPDATE releases SET version_key = '{9,0,0,0}' WHERE id = '$rel'" >/dev/null
rollout_to rollback "$rel"
attack rollback "$rel" rollback

# 5. An expired manifest (a freeze): signed to expire within 9 s, published, then offered
# after it expired by a server that ignores expiry (its expiry date moved in PostgreSQL).
meter expired >/dev/null
rel="$(t_release_new 3.0.5 flm02 4096 --expires 0.0001)"
expires="$(t_psql "SELECT extract(epoch FROM expires_at)::bigint FROM releases WHERE id = '$rel'")"
# shellcheck disable=SC2317 # called through t_wait_until
past() { (($(date +%s) >= expires)); }
t_wait_until 15 past
t_psql "UPDATE releases SET expires_at = now() + interval '30 days' WHERE id = '$rel'" >/dev/null
rollout_to expired "$rel"
attack expired "$rel" expired

# 6. Mix-and-match: a release signed for other hardware, relabelled in PostgreSQL.
meter hardware >/dev/null
rel="$(t_release_new 3.0.6 flm03)"
t_psql "UPDATE releases SET hardware = 'flm02' WHERE id = '$rel'" >/dev/null
rollout_to hardware "$rel"
attack hardware "$rel" hardware

# 7. Endless data: bytes appended to the stored image, and the size in PostgreSQL raised to
# match, so that ingest serves them: the meter stops at the manifest's size.
meter endless >/dev/null
rel="$(t_release_new 3.0.7 flm02 100000)"
stored="$(t_release_stored "$(jq -r .image_sha256 "$T_RELEASE_OUT")")"
chmod u+w "$stored" 2>/dev/null || true
head -c 50000 /dev/urandom >>"$stored"
t_psql "UPDATE releases SET size = 150000 WHERE id = '$rel'" >/dev/null
rollout_to endless "$rel"
attack endless "$rel" size
t_eq "endless: no more than the manifest's size was taken" true \
    "$(jq '.upgrade.downloads.bytes <= 100000' "$T_WORK/endless.json")"

# 7b. Bytes appended but the size left alone: ingest itself will not serve an image that is
# not its published size (503 image_unavailable, Retry-After); the meter, honouring it, gives
# up after its attempts and reports the download failed. Nothing is installed either way.
meter appended >/dev/null
rel="$(t_release_new 3.0.9 flm02 100000)"
stored="$(t_release_stored "$(jq -r .image_sha256 "$T_RELEASE_OUT")")"
chmod u+w "$stored" 2>/dev/null || true
head -c 50000 /dev/urandom >>"$stored"
rollout_to appended "$rel"
t_upg_sim "$T_WORK/meters/appended" appended --expect-consent "$T_WORK/appended.id" \
    --remote-upgrade 1
t_eq "appended: the meter reported (exit 0)" 0 "$T_UPG_RC"
((T_UPG_RC == 0)) || t_upg_show appended
t_eq "appended: failed: download" 1 "$(jq '.upgrade.reasons.download // 0' "$T_WORK/appended.json")"
t_eq "appended: nothing served" 0 "$(jq .upgrade.downloads.served "$T_WORK/appended.json")"
t_eq "appended: upgrade_offers says failed download" "failed download" \
    "$(t_upg_offer_state "$(cat "$T_WORK/appended.id")" "$rel")"

# 8. A release whose log fields appear nowhere in the public log: signed with the pinned key,
# its row inserted with a log entry that release_log never got.
meter unlogged >/dev/null
img="$(t_release_image "$T_WORK/releases/unlogged" 4096)"
t_release_sign "$img" 3.0.8 flm02 >/dev/null
digest="$(sha256sum "$img" | cut -c1-64)"
mkdir -p "$(dirname "$(t_release_stored "$digest")")"
cp "$img" "$(t_release_stored "$digest")"
msha="$(sha256sum "$img.manifest" | cut -c1-64)"
rel=${msha:0:32}
sig="$(cat "$img.manifest.sig")"
kid="$(jq -r .key_id "$img.manifest")"
read -r seq prev <<<"$(t_psql "SELECT max(seq) + 1, (SELECT entry_hash FROM release_log ORDER BY
    seq DESC LIMIT 1) FROM release_log" | tr '|' ' ')"
hash="$(t_release_log_hash "$seq" "$prev" "$msha" "$sig")"
t_psql "INSERT INTO releases (id, manifest, manifest_sha256, signature, key_id, version,
            version_key, hardware, size, image_sha256, issued_at, expires_at, log_seq, log_prev,
            log_hash)
        VALUES ('$rel', decode('$(hex "$img.manifest")', 'hex'), '$msha', decode('$sig', 'base64'),
            '$kid', '3.0.8', upg_version_key('3.0.8'), 'flm02', 4096, '$digest',
            now() - interval '1 hour', now() + interval '30 days', $seq, '$prev', '$hash')" \
    >/dev/null
rollout_to unlogged "$rel"
attack unlogged "$rel" not_in_log

t_done
