#!/usr/bin/env bash
#
# The careful meter of meterhub-sim against a server that does what meterhub's own servers do
# not: tests/lib/fake_firmware_server.py stands in for ingest's device side and for the API's
# GET /v1/firmware, and serves each attack as a compromised or broken server would (an image
# longer than its manifest, announced or sent chunked or until close, a short or tampered
# image, a manifest tampered after signing, an unknown key, an older version, an expired
# manifest, other hardware, a release missing from the log) plus the downloads that must still
# succeed: resumed with Range after the meter or the network cut them, restarted when the
# server ignores Range, cut after the last byte, and an offer whose log entry only a refetch of
# the log shows.
# Releases are signed by meterhub-release; nothing here needs ingest.
#
# Each case runs the upgrade scenario on a small fleet until every meter with its flag on has
# reported, and checks the outcome and reason the meters reported, what they downloaded (a
# meter with its flag off never downloads anything, a refused offer is never downloaded), and
# the exit status.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/release_helpers.sh"
source "$MH_SRC/tests/lib/sim_upgrade_helpers.sh"

command -v python3 >/dev/null 2>&1 || t_skip "python3 is needed for the fake server"

t_init sim_upgrade_meter
t_release_env

fleet="$T_WORK/fleet"
mkdir -p "$T_WORK/img"
# Six meters, at least one with its flag on at 0.5 and one with it off (the install case).
t_upg_mixed_fleet "$fleet" 6 0.5 1 1
jq -r .device "$fleet/fleet.json" >"$T_WORK/consent.txt"
t_release_keygen >/dev/null
t_release_keygen "$T_WORK/other-key" >/dev/null
PUB="$T_RELEASE_KEY_DIR/release.pub"

# image NAME [SIZE]: a random image file; prints its path.
image() {
    t_release_image "$T_WORK/img/$1" "${2:-20000}"
}

# signed NAME VERSION [HARDWARE [SIGN ARGS...]]: a random image signed with the pinned key;
# prints the image path (IMAGE.manifest and IMAGE.manifest.sig next to it).
signed() {
    local img
    img="$(image "$1")"
    t_release_sign "$img" "${@:2}" >/dev/null
    printf '%s\n' "$img"
}

# A release that stays in the log before every offered one.
base="$(signed base 1.1.0)"

FAKE_PORT=""
# fake NAME MODE OFFERED_IMAGE [SERVED_IMAGE [EXTRA JSON]]: starts the fake server for a case:
# the log is [base, offered], the offer is the second; SERVED_IMAGE (default the offered
# image) is what GET /firmware sends.
fake() {
    local name=$1 mode=$2 img=$3 served=${4:-$3} extra=${5:-"{}"} conf="$T_WORK/$1.conf.json"
    FAKE_PORT="$(t_free_port)"
    jq -n --argjson port "$FAKE_PORT" --arg cert "$T_PKI/ingest.crt" --arg key "$T_PKI/ingest.key" \
        --arg ca "$T_PKI/client-ca.crt" --arg rec "$T_WORK/$name.records" --arg mode "$mode" \
        --arg bm "$base.manifest" --arg bs "$base.manifest.sig" --arg bi "$base" \
        --arg om "$img.manifest" --arg os "$img.manifest.sig" --arg oi "$served" \
        --argjson extra "$extra" \
        '{port: $port, cert: $cert, key: $key, client_ca: $ca, records: $rec, mode: $mode,
          offer: 1, drop_after: 3000,
          releases: [{manifest: $bm, signature: $bs, image: $bi},
                     {manifest: $om, signature: $os, image: $oi}]} + $extra' >"$conf"
    : >"$T_WORK/$name.records"
    T_LOGS[fake]="$T_WORK/log/fake-$name.log"
    python3 "$MH_SRC/tests/lib/fake_firmware_server.py" "$conf" >"${T_LOGS[fake]}" 2>&1 &
    T_PIDS[fake]=$!
    printf '%s\n' "$!" >>"$T_WORK/daemon-pids"
    t_wait_until 10 curl -sf -o /dev/null --cacert "$T_PKI/ca.crt" --noproxy '*' \
        "https://127.0.0.1:$FAKE_PORT/healthz" || {
        cat "${T_LOGS[fake]}" >&2
        return 1
    }
}

stop_fake() {
    _t_stop_daemon fake TERM >/dev/null 2>&1 || true
}

# sim NAME [ARGS...]: the upgrade scenario against the fake server, every meter consenting;
# 2 meters with the flag on unless ARGS say otherwise. Sets RC; output in NAME.out/.json.
sim() {
    local name=$1
    shift
    RC=0
    "$MH_BIN/meterhub-sim" --fleet "$fleet" --target "https://127.0.0.1:$FAKE_PORT" \
        --ca "$T_PKI/ca.crt" --scenario upgrade --expect-consent "$T_WORK/consent.txt" \
        --release-key "$PUB" --release-log "https://127.0.0.1:$FAKE_PORT/v1/firmware" \
        --firmware-version 2.0.0 --heartbeat-every 1 --post-every 5 --duration 30 --quiet \
        --threads 1 --json "$T_WORK/$name.json" --devices 2 --remote-upgrade 1 "$@" \
        >"$T_WORK/$name.out" 2>&1 || RC=$?
}

# jnum NAME FILTER: a number from a case's --json report.
jnum() {
    jq -r "$2" "$T_WORK/$1.json"
}

# records NAME FILTER: jq -s over the case's server records.
records() {
    jq -s -r "$2" "$T_WORK/$1.records"
}

show() {
    sed 's/^/#   /' "$T_WORK/$1.out" | tail -n 25
}

# refused NAME REASON DOWNLOADS: the case ended with every meter refusing for REASON, its
# report acknowledged; DOWNLOADS: "none" when nothing may have been downloaded.
refused() {
    local name=$1 reason=$2 downloads=$3
    t_eq "$name: exit 0 (every meter reported)" 0 "$RC"
    ((RC == 0)) || show "$name"
    t_eq "$name: both meters refused: $reason" 2 "$(jnum "$name" ".upgrade.reasons.$reason // 0")"
    t_eq "$name: nothing installed" 0 "$(jnum "$name" .upgrade.installed)"
    t_eq "$name: both reported refused $reason to the server" 2 \
        "$(records "$name" "[.[] | select(.report.outcome == \"refused\" and
                                          .report.reason == \"$reason\") | .device] | unique | length")"
    t_eq "$name: the meters still run 2.0.0" "2.0.0" \
        "$(records "$name" '[.[] | select(.kind == "heartbeat") | .firmware_version] | unique | join(",")')"
    if [[ "$downloads" == none ]]; then
        t_eq "$name: refused before any download" 0 \
            "$(records "$name" '[.[] | select(.kind == "download")] | length')"
    fi
}

# ---------------------------------------------------------------------------------------------
# Installs

good="$(signed good 2.4.1)"

# Six meters, half with the flag on (by the documented hash of their ids); each cuts its own
# first download after 3000 bytes and resumes it.
fake install honest "$good"
sim install --devices 6 --remote-upgrade 0.5 --download-drop-after 3000
stop_fake
flag_on=0
declare -A FLAG=()
for id in $(jq -r .device "$fleet/fleet.json"); do
    b=$((0x$(printf 'remote_upgrade:%s' "$id" | sha256sum | cut -c1-8) % 10000))
    if ((b < 5000)); then
        FLAG[$id]=1
        flag_on=$((flag_on + 1))
    fi
done
t_eq "install: exit 0 (every meter with its flag on installed)" 0 "$RC"
((RC == 0)) || show install
t_eq "install: flags as documented" "$flag_on" "$(jnum install .upgrade.flag_on)"
t_eq "install: every meter with its flag on installed" "$flag_on" "$(jnum install .upgrade.installed)"
t_eq "install: the campaign says so" "$flag_on" "$(jnum install .upgrade.campaign.installed)"
t_ok "install: a time until all installed" test "$(jnum install .upgrade.campaign.all_installed_s)" != null
t_eq "install: each download cut once on purpose" "$flag_on" "$(jnum install .upgrade.downloads.interrupted)"
t_eq "install: ... and resumed with Range" "$flag_on" "$(jnum install .upgrade.downloads.resumed)"
t_eq "install: no refusal" 0 "$(jnum install '.upgrade.refused + .upgrade.failed')"
t_eq "install: the double opt-in held" 0 "$(jnum install .upgrade.violations.total)"
downloaders="$(records install '[.[] | select(.kind == "download") | .device] | unique | sort | join(" ")')"
expect="$(printf '%s\n' "${!FLAG[@]}" | sort | tr '\n' ' ' | sed 's/ $//')"
t_eq "install: only meters with their flag on downloaded" "$expect" "$downloaders"
t_eq "install: meters with their flag off were never offered anything" 0 \
    "$(jnum install .upgrade.violations.offers_flag_off)"
t_like "install: resumed from where the cut left off" '^bytes=[0-9]+-$' \
    "$(records install '[.[] | select(.kind == "download" and .range != null) | .range] | .[0]')"
t_eq "install: resumed at 3000 bytes or later" 0 \
    "$(records install '[.[] | select(.kind == "download" and .range != null)
                         | .range | ltrimstr("bytes=") | rtrimstr("-") | tonumber | select(. < 3000)]
                        | length')"
t_eq "install: each reported installed" "$flag_on" \
    "$(records install '[.[] | select(.report.outcome == "installed") | .device] | unique | length')"
t_eq "install: and now runs 2.4.1" "$flag_on" \
    "$(records install '[.[] | select(.firmware_version == "2.4.1") | .device] | unique | length')"
t_like "install: the human report" 'offered +[0-9]+, downloaded [0-9]+, installed [1-9]' \
    "$(cat "$T_WORK/install.out")"

# The network cuts the first download (the server drops the connection mid-body).
fake netdrop drop-once "$good"
sim netdrop
stop_fake
t_eq "netdrop: exit 0" 0 "$RC"
((RC == 0)) || show netdrop
t_eq "netdrop: both installed" 2 "$(jnum netdrop .upgrade.installed)"
t_ok "netdrop: a download resumed with Range" test "$(jnum netdrop .upgrade.downloads.resumed)" -ge 1

# A server that ignores Range: the meter starts over from byte 0 and still installs.
fake norange ignore-range "$good"
sim norange --download-drop-after 3000
stop_fake
t_eq "norange: exit 0" 0 "$RC"
((RC == 0)) || show norange
t_eq "norange: both installed" 2 "$(jnum norange .upgrade.installed)"
t_eq "norange: both asked for a range" 2 "$(jnum norange .upgrade.downloads.resumed)"

# A chunked body cut after its last image byte: nothing is left to ask for; the image checks.
fake unterminated chunked-unterminated "$good"
sim unterminated
stop_fake
t_eq "unterminated: exit 0" 0 "$RC"
((RC == 0)) || show unterminated
t_eq "unterminated: both installed" 2 "$(jnum unterminated .upgrade.installed)"
t_eq "unterminated: no second request" 2 "$(jnum unterminated .upgrade.downloads.requests)"

# An offer whose log entry the meters' copy does not have yet: they fetch the log again.
fake late honest "$good" "$good" '{"late": true}'
sim late
stop_fake
t_eq "late log: exit 0" 0 "$RC"
((RC == 0)) || show late
t_eq "late log: both installed" 2 "$(jnum late .upgrade.installed)"
t_ok "late log: after a refetch" test "$(jnum late .upgrade.log_waits)" -ge 1
t_ok "late log: the log was fetched again" test "$(records late '[.[] | select(.kind == "log")] | length')" -ge 2

# ---------------------------------------------------------------------------------------------
# Refusals after download: the image is not the manifest's

fake longer longer "$good"
sim longer
stop_fake
refused longer size some

fake chunked chunked-endless "$good"
sim chunked
stop_fake
refused chunked size some

fake endless close-endless "$good"
sim endless
stop_fake
refused endless size some

fake short short "$good"
sim short
stop_fake
refused short size some

tampered="$(image tampered)"
fake tampered honest "$good" "$tampered"
sim tampered
stop_fake
refused tampered sha256 some

# ---------------------------------------------------------------------------------------------
# Refusals before download

# The manifest changed after it was signed (its notes, then its size).
man="$(signed man 2.4.1)"
sed -i 's/"notes":"[^"]*"/"notes":"now with extra features"/' "$man.manifest"
fake manifest honest "$man"
sim manifest
stop_fake
refused manifest signature none

# Signed by a key the meters do not pin.
unk="$(image unknown)"
t_release sign --key "$T_WORK/other-key/release.key" --image "$unk" --version 2.4.1 \
    --hardware flm02 >/dev/null
fake unknown honest "$unk"
sim unknown
stop_fake
refused unknown signature none

# A validly signed older version.
old="$(signed old 1.5.0)"
fake rollback honest "$old"
sim rollback
stop_fake
refused rollback rollback none

# Signed for other hardware.
hw="$(signed hw 2.4.1 flm03)"
fake hardware honest "$hw"
sim hardware
stop_fake
refused hardware hardware none

# Missing from the public log: after a refetch that still does not show it; and with a saved
# log, which cannot grow.
fake unlogged honest "$good" "$good" '{"unlogged": true}'
sim unlogged
t_ok "unlogged: the log was fetched again before refusing" \
    test "$(records unlogged '[.[] | select(.kind == "log")] | length')" -ge 2
stop_fake
refused unlogged not_in_log none
fake saved honest "$good" "$good" '{"unlogged": true}'
curl -sf --cacert "$T_PKI/ca.crt" --noproxy '*' -o "$T_WORK/saved-log.json" \
    "https://127.0.0.1:$FAKE_PORT/v1/firmware"
t_eq "saved log: it holds the base release only" 1 "$(jq '.releases | length' "$T_WORK/saved-log.json")"
sim saved --release-log "$T_WORK/saved-log.json"
stop_fake
refused saved not_in_log none

# Expired (a freeze): signed to expire within 9 seconds, offered after.
exp="$(signed expired 2.4.1 flm02 --expires 0.0001)"
# shellcheck disable=SC2317 # called through t_wait_until
expired_now() {
    (($(date +%s) >= $(jq -r .expires "$exp.manifest")))
}
t_wait_until 15 expired_now
fake expired honest "$exp"
sim expired
stop_fake
refused expired expired none

# ---------------------------------------------------------------------------------------------
# A meter whose flag is off never takes an offer, whatever the server does.

fake flagoff honest "$good"
sim flagoff --remote-upgrade 0 --duration 3
stop_fake
t_eq "flag off: exit 0" 0 "$RC"
((RC == 0)) || show flagoff
t_eq "flag off: nothing downloaded" 0 "$(records flagoff '[.[] | select(.kind == "download")] | length')"
t_eq "flag off: every heartbeat said so" "false" \
    "$(records flagoff '[.[] | select(.kind == "heartbeat") | .remote_upgrade] | unique | map(tostring) | join(",")')"

t_done
