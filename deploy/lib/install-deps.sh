#!/usr/bin/env bash
#
# deploy/lib/install-deps.sh: installs the Debian packages meterhub needs to build, test and run
# locally. A fast no-op when everything is present (one dpkg-query call); otherwise one
# `apt-get update` and one `apt-get install` of just the missing packages, through sudo when not
# root.
#
# Installing postgresql or redis-server makes their maintainer scripts try to start the system
# services. We never use those instances (deploy/stack runs private servers on other ports), so
# while installing we put a policy-rc.d in place that forbids service starts, unless the system
# already has one (Debian container images do); it is removed afterwards.
#
# Usage: deploy/lib/install-deps.sh [--check]   (--check: list what is missing, exit 1 if any)
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config
    libevent-dev libssl-dev libpq-dev libhiredis-dev libprotobuf-c-dev protobuf-c-compiler
    libjansson-dev libcmocka-dev
    postgresql redis-server
    curl openssl iproute2 procps jq
    wrk
    # the hostile firmware server of tests/integration/sim_upgrade_meter.sh (stdlib only)
    python3
)

log() {
    printf 'install-deps: %s\n' "$*" >&2
}

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "error: need root to run: $*"
        exit 1
    fi
}

# missing_packages: prints the packages that are not fully installed, one per line.
missing_packages() {
    local status
    declare -A installed=()
    # Unknown packages make dpkg-query complain and exit non-zero; that just means "missing".
    while IFS=' ' read -r pkg status; do
        [[ "$status" == installed ]] && installed[$pkg]=1
    done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
    local p
    for p in "${PACKAGES[@]}"; do
        [[ -n "${installed[$p]:-}" ]] || printf '%s\n' "$p"
    done
}

main() {
    local check=0
    if [[ "${1:-}" == --check ]]; then
        check=1
    elif (($#)); then
        sed -n '3,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
        exit 2
    fi
    command -v dpkg-query >/dev/null 2>&1 || {
        log "error: not a Debian system (no dpkg-query); install by hand: ${PACKAGES[*]}"
        exit 1
    }

    local missing
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    if ((check)); then
        printf '%s\n' "${missing[@]}"
        return 1
    fi
    log "installing: ${missing[*]}"

    local policy=/usr/sbin/policy-rc.d ours=0
    if [[ ! -e "$policy" ]]; then
        # exit 101 = "action forbidden by policy": invoke-rc.d and deb-systemd-invoke skip the
        # start. Removed by the trap, whatever happens.
        printf '#!/bin/sh\n# Temporary, from meterhub deploy/lib/install-deps.sh\nexit 101\n' |
            as_root tee "$policy" >/dev/null
        as_root chmod 0755 "$policy"
        ours=1
        trap 'as_root rm -f "'"$policy"'"' EXIT
    fi

    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}"

    if ((ours)); then
        as_root rm -f "$policy"
        trap - EXIT
    fi
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]})); then
        log "error: still missing after apt-get install: ${missing[*]}"
        exit 1
    fi
    log "all dependencies installed"
}

main "$@"
