# shellcheck shell=bash
# The T_UPG_* variables set here are this library's interface to the test scripts:
# shellcheck disable=SC2034
#
# tests/lib/sim_upgrade_helpers.sh: firmware campaigns with meterhub-sim against the real
# stack (ingest serving offers and images, meterhub-api serving consent and the public log).
# Source it after testlib.sh and release_helpers.sh, then, after t_init:
#
#     t_upg_start                       # ingest (with the image store), writer, api
#     t_upg_consent "$id" auto          # the owner's consent, as the owner sets it
#     src="$(t_upg_log_source)"         # where the meters read the public log
#     t_upg_sim "$fleet" NAME --expect-consent FILE ...   # sets T_UPG_RC; NAME.out, NAME.json
#
# Owners set consent through meterhub-api (PUT /v1/devices/{id}/upgrades), and the meters read
# the public log from it (GET /v1/firmware).

T_UPG_ACCOUNT=${T_UPG_ACCOUNT:-sim}

# t_upg_start: ingest with the image store, the writer and meterhub-api; a manage token of
# $T_UPG_ACCOUNT in T_UPG_TOKEN.
t_upg_start() {
    t_release_env
    mkdir -p "$T_FIRMWARE_STORE"
    T_INGEST_EXTRA="firmware_store = $T_FIRMWARE_STORE" t_start_ingest
    t_start_writer
    t_start_api
    t_api_account "$T_UPG_ACCOUNT"
    T_UPG_TOKEN="$(t_api_token "$T_UPG_ACCOUNT" manage)"
}

# t_upg_fleet DIR COUNT: COUNT devices of $T_UPG_ACCOUNT (1 sensor each) into DIR, their
# meterhub-admin lines in DIR/fleet.json; prints nothing.
t_upg_fleet() {
    mkdir -p "$1"
    t_admin device add --account "$T_UPG_ACCOUNT" --sensors 1 --count "$2" --out "$1" \
        >"$1/fleet.json"
    t_sync_directory
}

# t_upg_mixed_fleet DIR COUNT FRACTION MIN_ON MIN_OFF: as t_upg_fleet, provisioned again (a
# bounded number of times) until at least MIN_ON of the COUNT meters have remote_upgrade on at
# FRACTION and at least MIN_OFF have it off. The flags follow from the random device ids, so a
# test that needs both kinds of meter must not leave it to luck (6 meters at 0.5 are all off
# once in 64 fleets). Devices of a discarded try stay provisioned but are never run.
t_upg_mixed_fleet() {
    local dir=$1 count=$2 fraction=$3 min_on=$4 min_off=$5 try on id
    for ((try = 1; try <= 20; try++)); do
        t_upg_fleet "$dir" "$count"
        on=0
        for id in $(jq -r .device "$dir/fleet.json"); do
            if t_upg_flag "$id" "$fraction"; then on=$((on + 1)); fi
        done
        ((on >= min_on && count - on >= min_off)) && return 0
    done
    printf 'sim_upgrade_helpers: no fleet of %s with %s+ flags on and %s+ off in 20 tries\n' \
        "$count" "$min_on" "$min_off" >&2
    return 1
}

# t_upg_consent DEVICE_ID off|ask|auto: the owner's consent.
t_upg_consent() {
    local code
    code="$(t_api PUT "/v1/devices/$1/upgrades" "$T_UPG_TOKEN" \
        -H 'Content-Type: application/json' --data-binary "{\"consent\":\"$2\"}")"
    [[ "$code" == 200 ]] || {
        printf 'sim_upgrade_helpers: PUT consent answered %s: %s\n' "$code" "$(cat "$T_BODY")" >&2
        return 1
    }
}

# t_upg_approve DEVICE_ID RELEASE: the owner approves a release (consent ask).
t_upg_approve() {
    local code
    code="$(t_api POST "/v1/devices/$1/upgrades/$2/approve" "$T_UPG_TOKEN")"
    [[ "$code" == 200 ]] || {
        printf 'sim_upgrade_helpers: approve answered %s: %s\n' "$code" "$(cat "$T_BODY")" >&2
        return 1
    }
}

# t_upg_log_source: what --release-log gets: the URL of meterhub-api's public log.
t_upg_log_source() {
    printf 'https://127.0.0.1:%s/v1/firmware\n' "$T_API_PORT"
}

# t_upg_sim FLEET_DIR NAME [ARGS...]: meterhub-sim's upgrade scenario against this test's ingest
# with the pinned key $T_RELEASE_KEYS and the public log of t_upg_log_source, meters running
# 2.0.0, a heartbeat a second, bounded to 60 s; ARGS add or override. Sets T_UPG_RC; output in
# $T_WORK/NAME.out and NAME.json.
t_upg_sim() {
    local fleet=$1 name=$2 src
    shift 2
    src="$(t_upg_log_source)"
    T_UPG_RC=0
    "$MH_BIN/meterhub-sim" --fleet "$fleet" --target "https://127.0.0.1:$T_INGEST_PORT" \
        --ca "$T_PKI/ca.crt" --pg "$T_PG_URI" --scenario upgrade --release-key "$T_RELEASE_KEYS" \
        --release-log "$src" --firmware-version 2.0.0 --heartbeat-every 1 --post-every 5 \
        --duration 60 --threads 1 --quiet --json "$T_WORK/$name.json" "$@" \
        >"$T_WORK/$name.out" 2>&1 || T_UPG_RC=$?
}

# t_upg_show NAME: the end of a run's output, as test comments.
t_upg_show() {
    sed 's/^/#   /' "$T_WORK/$1.out" | tail -n 30
}

# t_upg_flag DEVICE_ID FRACTION: succeeds when the meter has remote_upgrade on at FRACTION
# (the formula of docs/upgrade.md "The careful meter").
t_upg_flag() {
    local b threshold
    b=$((0x$(printf 'remote_upgrade:%s' "$1" | sha256sum | cut -c1-8) % 10000))
    threshold="$(awk -v f="$2" 'BEGIN { printf "%d", f * 10000 + 0.5 }')"
    ((b < threshold))
}

# t_upg_offer_state DEVICE_ID RELEASE: "state reason" of the device's offer of RELEASE in
# upgrade_offers (empty: none).
t_upg_offer_state() {
    t_psql "SELECT o.state || ' ' || coalesce(o.reason, '-') FROM upgrade_offers o
            JOIN devices d ON d.did = o.did WHERE d.id = '$1' AND o.release_id = '$2'"
}
