# shellcheck shell=bash
#
# deploy/lib/common.sh: small helpers shared by the deploy/ and tests/ shell scripts.
#
# Source it; it defines functions only (plus MH_LIB_DIR / MH_REPO_ROOT) and changes no shell
# option, so callers keep their own `set -euo pipefail`. Function names carry the `mh_` prefix.

# Guard against double sourcing (deploy/stack sources this and stack.sh, which sources it too).
if [[ -n "${MH_COMMON_SH_LOADED:-}" ]]; then
    return 0
fi
MH_COMMON_SH_LOADED=1

# MH_REPO_ROOT is used by the scripts that source this file.
MH_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034
MH_REPO_ROOT="$(cd "$MH_LIB_DIR/../.." && pwd)"

# Messages go to stderr so that commands whose stdout is data (`stack env`) stay clean.
# MH_LOG_TAG names the script in each line.
mh_info() {
    printf '%s: %s\n' "${MH_LOG_TAG:-meterhub}" "$*" >&2
}

mh_warn() {
    printf '%s: warning: %s\n' "${MH_LOG_TAG:-meterhub}" "$*" >&2
}

mh_die() {
    printf '%s: error: %s\n' "${MH_LOG_TAG:-meterhub}" "$*" >&2
    exit 1
}

# mh_need CMD...: fails with a clear message unless every command is available.
mh_need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 ||
            mh_die "'$c' not found; run deploy/lib/install-deps.sh"
    done
}

# mh_abspath PATH: absolute path of PATH (which need not exist yet; its parent must).
mh_abspath() {
    local p=$1
    if [[ -d "$p" ]]; then
        (cd "$p" && pwd)
    else
        printf '%s/%s\n' "$(cd "$(dirname "$p")" && pwd)" "$(basename "$p")"
    fi
}

# mh_random_hex NBYTES: NBYTES random bytes as lowercase hex (2*NBYTES characters).
mh_random_hex() {
    openssl rand -hex "$1"
}

# mh_write_secret FILE: creates FILE (mode 0600) holding a fresh random password, unless it
# already exists. Returns 0 either way; prints nothing (secrets never reach the terminal).
mh_write_secret() {
    local f=$1
    if [[ -s "$f" ]]; then
        chmod 0600 "$f"
        return 0
    fi
    (
        umask 077
        # Write to a temporary name then rename: a crash never leaves an empty secret behind.
        mh_random_hex 24 >"$f.tmp.$$"
        mv -f "$f.tmp.$$" "$f"
    )
}

# mh_write_if_changed FILE MODE: writes stdin to FILE only when the content differs, so that
# re-running a script leaves modification times alone. The new file gets MODE.
mh_write_if_changed() {
    local f=$1 mode=$2 tmp
    tmp="$(mktemp "$f.XXXXXX")"
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [[ -f "$f" ]] && cmp -s "$tmp" "$f"; then
        rm -f "$tmp"
        chmod "$mode" "$f"
    else
        mv -f "$tmp" "$f"
    fi
}

# mh_urlencode STRING: percent-encodes everything but unreserved characters and '/', for
# paths embedded in libpq URIs (?passfile=...).
mh_urlencode() {
    local s=$1 out='' c i
    local LC_ALL=C
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case "$c" in
        [A-Za-z0-9/._~-]) out+=$c ;;
        *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s\n' "$out"
}

# mh_port_in_use PORT: true when something listens on 127.0.0.1:PORT (or on the wildcard
# address). Uses ss when present, else a bash /dev/tcp connect probe.
mh_port_in_use() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]]
        return
    fi
    # The probe runs in a subshell with a timeout so a filtered port cannot hang us.
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
}

# mh_free_port: prints a TCP port that nothing listens on, picked at random below the kernel's
# ephemeral range (so outgoing connections never take it) and reserved for a few minutes in
# ${TMPDIR:-/tmp}/meterhub-ports so that concurrent callers (parallel tests) do not pick the
# same one before its owner binds it.
mh_free_port() {
    local lo=10000 hi=32767 eph_lo eph_hi port i
    if read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then
        if ((eph_lo > lo + 1000)); then
            hi=$((eph_lo - 1))
        elif ((eph_hi < 60000)); then
            lo=$((eph_hi + 1))
            hi=65000
        fi
    fi
    local resv="${TMPDIR:-/tmp}/meterhub-ports"
    if mkdir -p "$resv" 2>/dev/null; then
        chmod 1777 "$resv" 2>/dev/null || true
    fi
    # Reservations older than 10 minutes are stale: their owner has bound the port or gone.
    find "$resv" -maxdepth 1 -type f -mmin +10 -delete 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        port=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
        mh_port_in_use "$port" && continue
        if [[ -d "$resv" ]]; then
            # noclobber makes the creation atomic: exactly one caller wins a given port.
            (set -o noclobber && : >"$resv/$port") 2>/dev/null || continue
        fi
        printf '%s\n' "$port"
        return 0
    done
    mh_die "no free TCP port found in $lo-$hi after 200 tries"
}

# mh_wait_for TIMEOUT_S CMD...: runs CMD every 0.1 s until it succeeds; returns 1 after
# TIMEOUT_S seconds. Bounded both in time and in number of tries.
mh_wait_for() {
    local timeout=$1 deadline tries=0
    shift
    deadline=$((SECONDS + timeout))
    while ((tries < timeout * 20 + 10)); do
        "$@" >/dev/null 2>&1 && return 0
        ((SECONDS >= deadline)) && return 1
        sleep 0.1
        tries=$((tries + 1))
    done
    return 1
}

# mh_pid_alive PIDFILE [NAME]: true when PIDFILE names a live process (whose command name
# contains NAME, when given, so a recycled pid does not count).
mh_pid_alive() {
    local f=$1 name=${2:-} pid comm
    [[ -r "$f" ]] || return 1
    read -r pid <"$f" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -n "$name" ]]; then
        comm="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
        [[ "$comm" == *"$name"* ]] || return 1
    fi
    return 0
}

# mh_stop_pid PID TIMEOUT_S: SIGTERM, wait up to TIMEOUT_S for the process to go, then
# SIGKILL. Works for processes that are not our children (uses kill -0 polling).
mh_stop_pid() {
    local pid=$1 timeout=$2
    kill -TERM "$pid" 2>/dev/null || return 0
    if ! mh_wait_for "$timeout" mh_pid_gone "$pid"; then
        mh_warn "process $pid did not stop within ${timeout}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        mh_wait_for 5 mh_pid_gone "$pid" || true
    fi
}

mh_pid_gone() {
    ! kill -0 "$1" 2>/dev/null
}

# mh_sudo CMD...: runs CMD as root (directly when already root, else through sudo).
mh_sudo() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        mh_die "need root for: $*; run as root or install sudo"
    fi
}

# mh_shquote STRING: STRING as one single-quoted shell word (safe for eval).
mh_shquote() {
    local s=${1//\'/\'\\\'\'}
    printf "'%s'\n" "$s"
}

# mh_export NAME VALUE: prints `export NAME='VALUE'`.
mh_export() {
    printf 'export %s=%s\n' "$1" "$(mh_shquote "$2")"
}
