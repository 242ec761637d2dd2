#!/usr/bin/env bash
#
# Firmware offers and downloads on the device wire (docs/upgrade.md), against ingest with a
# real PostgreSQL: the offer matrix of issue 5 (meter flag x consent x rollout x version x
# expiry), the offer's content, downloads with Range, every refusal of a download, reports,
# and pause / abort (with meterhub-release) and consent withdrawal taking effect on the next
# request.
#
# Ingest checks no signature (the meter does), so the releases here are rows and files made
# directly as the operator: well-formed, but not signed.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/release_helpers.sh"

t_init ingest_upgrade
STORE="$T_WORK/store"
mkdir -p "$STORE"
T_INGEST_EXTRA="firmware_store = $STORE"
t_start_ingest

JSON=(-H 'Content-Type: application/json')
t_psql "INSERT INTO release_keys VALUES (repeat('a', 16), decode(repeat('0a', 32), 'hex'),
        repeat('a', 64))" >/dev/null
NSEQ=0
PREV="$(printf '0%.0s' {1..64})"

# fake_release VERSION HARDWARE EXPIRES(SQL) [SIZE]: a release row, its log entry and its
# image in the store; sets REL (the release id) and IMAGE (its path in the store). Not in a
# subshell: it keeps the log's chain in NSEQ and PREV.
fake_release() {
    local version=$1 hw=$2 expires=$3 size=${4:-100000} img digest manifest mdigest id hash
    img="$T_WORK/img.$RANDOM"
    head -c "$size" /dev/urandom >"$img"
    digest="$(sha256sum "$img" | cut -d' ' -f1)"
    mkdir -p "$STORE/sha256/${digest:0:2}"
    cp "$img" "$STORE/sha256/${digest:0:2}/$digest"
    IMAGE="$STORE/sha256/${digest:0:2}/$digest"
    manifest="{\"version\":\"$version\",\"hardware\":\"$hw\",\"n\":$RANDOM$RANDOM}"
    mdigest="$(printf '%s\n' "$manifest" | sha256sum | cut -d' ' -f1)"
    id=${mdigest:0:32}
    NSEQ=$((NSEQ + 1))
    hash="$(printf '%s %s' "$PREV" "$id" | sha256sum | cut -d' ' -f1)"
    t_psql "INSERT INTO releases (id, manifest, manifest_sha256, signature, key_id, version,
                version_key, hardware, size, image_sha256, issued_at, expires_at, log_seq,
                log_prev, log_hash)
            VALUES ('$id', convert_to('$manifest' || E'\\n', 'UTF8'), '$mdigest',
                decode(repeat('5a', 64), 'hex'), repeat('a', 16), '$version',
                upg_version_key('$version'), '$hw', $size, '$digest', now() - interval '1 day',
                $expires, $NSEQ, '$PREV', '$hash');
            INSERT INTO release_log (seq, release_id, manifest_sha256, signature, prev_hash,
                entry_hash)
            VALUES ($NSEQ, '$id', '$mdigest', decode(repeat('5a', 64), 'hex'), '$PREV', '$hash')" \
        >/dev/null
    PREV=$hash
    REL=$id
}

# rollout RELEASE [PERCENT_BP]: an active rollout of RELEASE over a device list (empty); prints
# its id. in_rollout ROLLOUT DEVICE_DIR adds a device to the list.
rollout() {
    t_psql "INSERT INTO rollouts (release_id, percent_bp, has_list) VALUES ('$1', ${2:-10000},
            true) RETURNING id"
}
in_rollout() {
    t_psql "INSERT INTO rollout_devices SELECT $1, did FROM devices WHERE id = '$(basename "$2")'"
}
did_of() { t_psql "SELECT did FROM devices WHERE id = '$(basename "$1")'"; }
set_device() { t_psql "UPDATE devices SET $2 WHERE id = '$(basename "$1")'" >/dev/null; }

# hb DEVICE_DIR VERSION FLAG [REPORT-JSON]: a heartbeat; prints the status, body in $T_BODY.
hb() {
    local body="{\"firmware_version\":\"$2\",\"remote_upgrade\":$3${4:+,\"upgrade_report\":$4}}"
    t_curl "$1" "/device/$(basename "$1")" "${JSON[@]}" --data-binary "$body"
}
# offer DEVICE_DIR VERSION FLAG: a heartbeat; prints the release offered, or "null".
offer() {
    hb "$@" >/dev/null
    offered_release
}
# offered_release: the release id offered in the last answer, or "null".
offered_release() {
    jq -r 'if .upgrade == null then "null" else .upgrade.release end' "$T_BODY"
}
audit_count() {
    t_psql "SELECT count(*) FROM audit_log WHERE device_id = '$(basename "$1")' AND kind = '$2'"
}

fake_release 2.0 hwv "now() + interval '30 days'"
valid=$REL
valid_image=$IMAGE
fake_release 2.0 hwx "now() - interval '1 minute'"
expired=$REL
ro_valid="$(rollout "$valid")"
ro_expired="$(rollout "$expired")"

# ---- the offer matrix ------------------------------------------------------------------------
# Per device: consent x in rollout or not x valid or expired manifest (its hardware picks the
# release); per heartbeat: the meter's flag x its version (older, same, newer than 2.0).
declare -A devs
for consent in off ask ask-approved auto; do
    for member in in out; do
        for manifest in valid expired; do
            d="$(T_DEVICE_NOWAIT=1 t_device "matrix" 1)"
            devs[$consent/$member/$manifest]=$d
            rel=$valid ro=$ro_valid hw=hwv
            [[ $manifest == expired ]] && rel=$expired ro=$ro_expired hw=hwx
            set_device "$d" "hardware = '$hw', upgrade_consent = '${consent%-approved}'"
            [[ $consent == ask-approved ]] && t_psql "INSERT INTO upgrade_approvals
                SELECT did, '$rel', account_id FROM devices WHERE id = '$(basename "$d")'" >/dev/null
            [[ $member == in ]] && in_rollout "$ro" "$d" >/dev/null
        done
    done
done
t_sync_directory

cells=0 wrong=0 offers=0
for key in "${!devs[@]}"; do
    IFS=/ read -r consent member manifest <<<"$key"
    d=${devs[$key]}
    for flag in false true; do
        for version in 1.0 2.0 3.0; do
            code="$(hb "$d" "$version" "$flag")"
            got="$(offered_release)"
            want=null
            if [[ $flag == true && ($consent == auto || $consent == ask-approved) &&
                $member == in && $version == 1.0 && $manifest == valid ]]; then
                want=$valid
            fi
            cells=$((cells + 1))
            [[ $want != null ]] && offers=$((offers + 1))
            if [[ $code != 200 || $got != "$want" ]]; then
                wrong=$((wrong + 1))
                printf 'cell flag=%s consent=%s rollout=%s version=%s manifest=%s: %s %s, want %s\n' \
                    "$flag" "$consent" "$member" "$version" "$manifest" "$code" "$got" "$want"
            fi
        done
    done
done
t_eq "offer matrix: 96 cells" 96 "$cells"
t_eq "offer matrix: offered exactly when the rule says (2 cells of $cells)" "0 2" "$wrong $offers"
t_eq "matrix: every offer audited once per device, withdrawals too" "2 2" \
    "$(t_psql "SELECT count(*) FILTER (WHERE kind = 'firmware_offered') || ' ' ||
                      count(*) FILTER (WHERE kind = 'firmware_withdrawn') FROM audit_log")"
t_eq "matrix: no offer row for a device without double consent" 0 \
    "$(t_psql "SELECT count(*) FROM upgrade_offers o JOIN devices d USING (did)
               WHERE d.upgrade_consent = 'off' OR (d.upgrade_consent = 'ask'
                 AND NOT EXISTS (SELECT 1 FROM upgrade_approvals a WHERE a.did = o.did))")"

# ---- what an offer carries -------------------------------------------------------------------
dev=${devs[auto/in/valid]}
other=${devs[ask-approved/in/valid]}
offers_before="$(audit_count "$dev" firmware_offered)"
t_eq "offered" 200 "$(hb "$dev" 1.0 true)"
t_eq "offer: release" "$valid" "$(jq -r .upgrade.release "$T_BODY")"
t_eq "offer: url" "/firmware/$valid" "$(jq -r .upgrade.url "$T_BODY")"
t_eq "offer: the manifest bytes, base64" \
    "$(t_psql "SELECT encode(sha256(manifest), 'hex') FROM releases WHERE id = '$valid'")" \
    "$(jq -r .upgrade.manifest "$T_BODY" | base64 -d | sha256sum | cut -d' ' -f1)"
t_eq "offer: the 64-byte signature, base64" 64 \
    "$(jq -r .upgrade.signature "$T_BODY" | base64 -d | wc -c)"
t_eq "offer: the log entry" \
    "$(t_psql "SELECT log_seq || ' ' || log_prev || ' ' || log_hash FROM releases WHERE id = '$valid'")" \
    "$(jq -r '"\(.upgrade.log.seq) \(.upgrade.log.prev) \(.upgrade.log.hash)"' "$T_BODY")"
t_eq "offer: server time" 1 "$(jq '.time > 1700000000 | if . then 1 else 0 end' "$T_BODY")"
hb "$dev" 1.0 true >/dev/null
t_eq "an offer made again after a withdrawal is audited, a repeated one is not" \
    $((offers_before + 1)) "$(audit_count "$dev" firmware_offered)"

# ---- downloads -------------------------------------------------------------------------------
size=$(stat -c %s "$valid_image")
digest="$(sha256sum "$valid_image" | cut -d' ' -f1)"
get() { t_curl "$1" "/firmware/$2" -D "$T_WORK/headers" "${@:3}"; }
header() { tr -d '\r' <"$T_WORK/headers" | sed -n "s/^$1: //Ip" | tail -n 1; }

t_eq "range: the first 1000 bytes" 206 "$(get "$dev" "$valid" -H 'Range: bytes=0-999')"
t_eq "range: Content-Range" "bytes 0-999/$size" "$(header Content-Range)"
t_eq "range: 1000 bytes" 1000 "$(wc -c <"$T_BODY")"
cp "$T_BODY" "$T_WORK/part1"
t_eq "a partial download is not a download yet" offered \
    "$(t_psql "SELECT state FROM upgrade_offers WHERE release_id = '$valid' AND did = $(did_of "$dev")")"
t_eq "range: resume from byte 1000" 206 "$(get "$dev" "$valid" -H 'Range: bytes=1000-')"
t_eq "range: resumed Content-Range" "bytes 1000-$((size - 1))/$size" "$(header Content-Range)"
cat "$T_WORK/part1" "$T_BODY" >"$T_WORK/joined"
t_eq "range: the two parts are the image" "$digest" "$(sha256sum <"$T_WORK/joined" | cut -d' ' -f1)"
t_eq "reaching the last byte marks it downloaded" downloaded \
    "$(t_psql "SELECT state FROM upgrade_offers WHERE release_id = '$valid' AND did = $(did_of "$dev")")"
t_eq "whole image" 200 "$(get "$dev" "$valid")"
t_eq "whole image: digest" "$digest" "$(sha256sum <"$T_BODY" | cut -d' ' -f1)"
t_eq "whole image: Content-Type" application/octet-stream "$(header Content-Type)"
t_eq "whole image: Accept-Ranges" bytes "$(header Accept-Ranges)"
t_eq "whole image: ETag" "\"$digest\"" "$(header ETag)"
t_eq "downloaded audited once" 1 "$(audit_count "$dev" firmware_downloaded)"
t_eq "range: suffix" 206 "$(get "$dev" "$valid" -H 'Range: bytes=-10')"
t_eq "range: suffix bytes" "$(tail -c 10 "$valid_image" | sha256sum)" "$(sha256sum <"$T_BODY")"
t_eq "range: span past the end is clamped" 206 "$(get "$dev" "$valid" -H "Range: bytes=$((size - 5))-$((size + 100))")"
t_eq "range: clamped Content-Range" "bytes $((size - 5))-$((size - 1))/$size" "$(header Content-Range)"
t_eq "range: starting at the end" 416 "$(get "$dev" "$valid" -H "Range: bytes=$size-")"
t_eq "range: 416 Content-Range" "bytes */$size" "$(header Content-Range)"
t_like "range: 416 JSON" '"error":"range_not_satisfiable"' "$(cat "$T_BODY")"
t_eq "range: empty suffix" 416 "$(get "$dev" "$valid" -H 'Range: bytes=-0')"
t_eq "range: reversed is ignored (whole image)" 200 "$(get "$dev" "$valid" -H 'Range: bytes=9-2')"
t_eq "range: several ranges are ignored" 200 "$(get "$dev" "$valid" -H 'Range: bytes=0-1,5-9')"
t_eq "range: another unit is ignored" 200 "$(get "$dev" "$valid" -H 'Range: items=0-1')"
t_eq "range: garbage is ignored" 200 "$(get "$dev" "$valid" -H 'Range: bytes=a-b')"

# Refusals: each 403 not_offered (or the right other status), and nothing served.
refuse_dl() {
    local name=$1 want=$2 code=$3 d=$4 rel=$5
    shift 5
    t_eq "$name" "$want" "$(get "$d" "$rel" "$@")"
    t_like "$name: JSON error $code" "\"error\":\"$code\"" "$(cat "$T_BODY")"
}
refuse_dl "download by a device never offered it" 403 not_offered "${devs[auto/out/valid]}" "$valid"
refuse_dl "download of the release offered to another device, with one's own certificate" \
    403 not_offered "${devs[off/in/valid]}" "$valid"
refuse_dl "download of an unknown release" 403 not_offered "$dev" "$(printf 'f%.0s' {1..32})"
refuse_dl "download of a malformed release id" 404 not_found "$dev" "not-a-release"
refuse_dl "download with POST" 405 method_not_allowed "$dev" "$valid" -X POST
t_eq "download without a certificate: no TLS session" 000 "$(get "" "$valid")"

# A burst: download checks go to PostgreSQL in batches, and each answer must reach its own
# request. 16 ranges of the offered device and 8 requests of a device never offered it, all
# at once; each range must be its own slice of the image, each refusal a 403.
burst_get() {
    local i=$1 d=$2 dir="$T_WORK/burst/$1"
    shift 2
    mkdir -p "$dir"
    (T_WORK="$dir" T_BODY="$dir/body" get "$d" "$valid" "$@" >"$dir/code") &
    burst_pids+=("$!")
}
burst_pids=()
for i in $(seq 0 23); do
    if ((i % 3 == 2)); then
        burst_get "$i" "${devs[auto/out/valid]}"
    else
        burst_get "$i" "$dev" -H "Range: bytes=$((i * 1000))-$((i * 1000 + 999))"
    fi
done
# Only these: the daemons are children of this shell too. Each curl has its own --max-time.
wait "${burst_pids[@]}" || true
burst_ok=0 burst_refused=0
for i in $(seq 0 23); do
    code="$(cat "$T_WORK/burst/$i/code")"
    if ((i % 3 == 2)); then
        [[ "$code" == 403 ]] && grep -q '"error":"not_offered"' "$T_WORK/burst/$i/body" &&
            burst_refused=$((burst_refused + 1))
    elif [[ "$code" == 206 ]] &&
        cmp -s "$T_WORK/burst/$i/body" <(tail -c "+$((i * 1000 + 1))" "$valid_image" | head -c 1000); then
        burst_ok=$((burst_ok + 1))
    fi
done
t_eq "burst: each of 16 ranges got its own slice of the image" 16 "$burst_ok"
t_eq "burst: each of 8 requests without an offer got 403" 8 "$burst_refused"

refused_before="$(t_metric ingest meterhub_ingest_firmware_refused_total)"
t_ok "refused downloads are counted" test "$refused_before" -ge 3

# ---- reports ---------------------------------------------------------------------------------
bad_report() {
    local name=$1 field=$2 report=$3
    local before
    before="$(t_psql "SELECT count(*) FROM audit_log")"
    t_eq "report $name: 400" 400 "$(hb "$other" 1.0 true "$report")"
    t_like "report $name: names the field" "\"field\":\"$field\"" "$(cat "$T_BODY")"
    t_eq "report $name: nothing recorded" "$before" "$(t_psql "SELECT count(*) FROM audit_log")"
}
t_eq "the other consenting device is offered" "$valid" "$(offer "$other" 1.0 true)"
bad_report "not an object" upgrade_report '"installed"'
bad_report "unknown key" upgrade_report.extra "{\"release\":\"$valid\",\"outcome\":\"installed\",\"extra\":1}"
bad_report "malformed release" upgrade_report.release '{"release":"XYZ","outcome":"installed"}'
bad_report "unknown outcome" upgrade_report.outcome "{\"release\":\"$valid\",\"outcome\":\"bricked\"}"
bad_report "refused without a reason" upgrade_report.reason "{\"release\":\"$valid\",\"outcome\":\"refused\"}"
bad_report "empty reason" upgrade_report.reason "{\"release\":\"$valid\",\"outcome\":\"failed\",\"reason\":\"\"}"
bad_report "long reason" upgrade_report.reason \
    "{\"release\":\"$valid\",\"outcome\":\"failed\",\"reason\":\"$(printf 'x%.0s' {1..201})\"}"
before="$(t_psql "SELECT count(*) FROM audit_log")"
t_eq "a report of a release never offered: 409" 409 \
    "$(hb "$other" 1.0 true "{\"release\":\"$expired\",\"outcome\":\"installed\"}")"
t_like "409 not_offered" '"error":"not_offered"' "$(cat "$T_BODY")"
t_eq "... and nothing recorded" "$before" "$(t_psql "SELECT count(*) FROM audit_log")"

t_eq "report refused" 200 \
    "$(hb "$other" 1.0 true "{\"release\":\"$valid\",\"outcome\":\"refused\",\"reason\":\"sha256\"}")"
t_eq "a refused release is not offered again" null "$(offered_release)"
t_eq "refused recorded with its reason" "refused sha256" \
    "$(t_psql "SELECT state || ' ' || reason FROM upgrade_offers WHERE did = $(did_of "$other")")"
t_eq "the same report again is recorded once" 200 \
    "$(hb "$other" 1.0 true "{\"release\":\"$valid\",\"outcome\":\"refused\",\"reason\":\"sha256\"}")"
t_eq "refused audited once" 1 "$(audit_count "$other" firmware_refused)"
refuse_dl "download after refusing it" 403 not_offered "$other" "$valid"

t_eq "report installed, running the new version" 200 \
    "$(hb "$dev" 2.0 true "{\"release\":\"$valid\",\"outcome\":\"installed\"}")"
t_eq "nothing newer to offer" null "$(offered_release)"
t_eq "installed recorded" installed \
    "$(t_psql "SELECT state FROM upgrade_offers WHERE did = $(did_of "$dev")")"
t_eq "installed audited" 1 "$(audit_count "$dev" firmware_installed)"
t_eq "the audit entries name the device and the release" "$valid" \
    "$(t_psql "SELECT detail->>'release' FROM audit_log WHERE kind = 'firmware_installed'")"
t_eq "back on the old version (reflashed by hand): offered again" "$valid" "$(offer "$dev" 1.0 true)"
t_eq "... as an open offer" offered \
    "$(t_psql "SELECT state FROM upgrade_offers WHERE did = $(did_of "$dev")")"
t_eq "... that can be downloaded" 206 "$(get "$dev" "$valid" -H 'Range: bytes=0-9')"
t_eq "installed again" 200 "$(hb "$dev" 2.0 true "{\"release\":\"$valid\",\"outcome\":\"installed\"}")"
t_ok "reports are counted" test "$(t_metric ingest meterhub_ingest_firmware_reports_total)" -ge 2

# ---- pause, abort, consent withdrawal --------------------------------------------------------
withdrawn_before="$(audit_count "$dev" firmware_withdrawn)"
fake_release 3.0 hwv "now() + interval '30 days'"
v3=$REL
ro3="$(rollout "$v3")"
in_rollout "$ro3" "$dev" >/dev/null
t_eq "a newer release is offered" "$v3" "$(offer "$dev" 2.0 true)"
t_eq "download allowed" 206 "$(get "$dev" "$v3" -H 'Range: bytes=0-9')"
t_rollout pause "$ro3" >/dev/null
refuse_dl "paused: the download stops at once" 403 not_offered "$dev" "$v3" -H 'Range: bytes=10-19'
t_eq "paused: no offer on the next heartbeat" null "$(offer "$dev" 2.0 true)"
t_eq "paused: the offer is withdrawn" withdrawn \
    "$(t_psql "SELECT state FROM upgrade_offers WHERE release_id = '$v3'")"
t_rollout resume "$ro3" >/dev/null
t_eq "resumed: offered again" "$v3" "$(offer "$dev" 2.0 true)"
t_eq "resumed: the download resumes" 206 "$(get "$dev" "$v3" -H 'Range: bytes=10-19')"
set_device "$dev" "upgrade_consent = 'off'"
refuse_dl "consent withdrawn: the download stops at once" 403 not_offered "$dev" "$v3"
t_eq "consent withdrawn: no offer" null "$(offer "$dev" 2.0 true)"
set_device "$dev" "upgrade_consent = 'auto'"
t_eq "consent back: offered" "$v3" "$(offer "$dev" 2.0 true)"
t_eq "the meter turns its flag off: no offer" null "$(offer "$dev" 2.0 false)"
t_eq "... and the offer is withdrawn" withdrawn \
    "$(t_psql "SELECT state FROM upgrade_offers WHERE release_id = '$v3'")"
refuse_dl "flag off: no download" 403 not_offered "$dev" "$v3"
t_eq "flag on again: offered" "$v3" "$(offer "$dev" 2.0 true)"
t_rollout abort "$ro3" >/dev/null
t_eq "aborted: no offer on the next heartbeat" null "$(offer "$dev" 2.0 true)"
refuse_dl "aborted: no download" 403 not_offered "$dev" "$v3"
t_eq "withdrawals audited: pause, consent, flag, abort" $((withdrawn_before + 4)) \
    "$(audit_count "$dev" firmware_withdrawn)"

# A release newer than 2.0 but expired since it was offered.
fake_release 4.0 hwv "now() + interval '3 seconds'"
v4=$REL
ro4="$(rollout "$v4")"
in_rollout "$ro4" "$dev" >/dev/null
t_eq "about to expire: offered" "$v4" "$(offer "$dev" 2.0 true)"
sleep 3.5
refuse_dl "expired: no download" 403 not_offered "$dev" "$v4"
t_eq "expired: no offer" null "$(offer "$dev" 2.0 true)"

# Percent buckets: a rollout at 0 % reaches nobody, at 100 % everyone in its list.
fake_release 5.0 hwv "now() + interval '30 days'"
v5=$REL
ro5="$(rollout "$v5" 0)"
in_rollout "$ro5" "$dev" >/dev/null
t_eq "0 %: no offer" null "$(offer "$dev" 2.0 true)"
t_rollout set "$ro5" --percent 100 >/dev/null
t_eq "100 %: offered" "$v5" "$(offer "$dev" 2.0 true)"

# The store lost the image: 503, not a short or wrong answer.
rm -f "$(t_psql "SELECT '$STORE/sha256/' || substr(image_sha256, 1, 2) || '/' || image_sha256
                 FROM releases WHERE id = '$v5'")"
refuse_dl "image missing from the store" 503 image_unavailable "$dev" "$v5"

# A revoked device gets nothing, even with an open offer.
t_admin device revoke "$(basename "$dev")" >/dev/null
t_sync_directory
refuse_dl "revoked device" 403 device_revoked "$dev" "$v5"

# Nothing here may have reached a device without double consent.
t_eq "no device without double consent was ever offered or served anything" 0 \
    "$(t_psql "SELECT count(*) FROM audit_log a JOIN devices d ON d.id = a.device_id
               WHERE a.kind IN ('firmware_offered', 'firmware_downloaded')
                 AND d.id <> '$(basename "$dev")' AND d.id <> '$(basename "$other")'")"
t_done
