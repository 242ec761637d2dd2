# shellcheck shell=bash
# The T_* variables set here are this library's interface to the test scripts:
# shellcheck disable=SC2034
#
# tests/lib/testlib.sh: helpers for the integration, security and fault tests. Each test is one
# bash script run by CTest (tests/CMakeLists.txt) that sources this file:
#
#     source "$MH_SRC/tests/lib/testlib.sh"
#     t_init my_test                # workdir, database, Redis prefix, PKI; cleanup on exit
#     t_write_ingest_conf; t_start_ingest
#     t_write_writer_conf; t_start_writer
#     dev="$(t_device)"             # provision a device (meterhub-admin device add)
#     code="$(t_curl "$dev" "/sensor/$(t_sensor "$dev" 0)" --data-binary '{"measurements":[]}')"
#     t_eq "empty batch refused" 400 "$code"
#     t_done                        # "N passed, M failed"; exit status
#
# Environment: CTest passes MH_BIN (built binaries) and MH_SRC (source root); tests/run exports
# the shared stack (deploy/stack env) and MH_TEST_STACK_DIR. Without MH_TEST_STACK_DIR the test
# starts a private stack of its own (slower, but `ctest -R name` then works alone).
#
# Everything listens on 127.0.0.1 only. Every wait is bounded in time and in tries. Assertions
# (t_ok, t_fails, t_eq, t_like) never abort the script; any other failing command does (set -e),
# after printing where, and the cleanup still runs.
#
# Settings (environment or shell variables, set before the call that uses them):
#   T_KEEP=1              keep the workdir and database after the test, for debugging
#   T_START_TIMEOUT=30    seconds to wait for a daemon to be healthy (/healthz 200)
#   T_START_GRACE=5       ... but accept one that answers unhealthy for this long (started while
#                         a dependency is down); T_START_HEALTHY=1: never, =0: at once
#   T_CURL_TIMEOUT=10     curl --max-time in t_curl
#   config limits, see t_write_ingest_conf / t_write_writer_conf

set -euo pipefail
shopt -s inherit_errexit

: "${MH_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${MH_BIN:=$MH_SRC/build/bin}"
export MH_SRC MH_BIN

export MH_LOG_TAG="testlib"
# shellcheck source=deploy/lib/common.sh
source "$MH_SRC/deploy/lib/common.sh"

T_PASS=0
T_FAIL=0
T_N=0
T_WORK=""
T_OWN_STACK=0
T_DB_CREATED=0
T_DONE=0
declare -A T_PIDS=() T_LOGS=() T_CONFS=() T_OPS_PORTS=() T_LISTEN_PORTS=() T_KINDS=()

_t_log() {
    printf '# %s\n' "$*" >&2
}

# Where a command failed, when set -e is about to end the test.
_t_on_err() {
    local rc=$1 line=$2 cmd=$3 i where
    where="$(basename "${BASH_SOURCE[1]:-?}"):$line"
    # The call chain up to the test script, so the failing line of the test is named.
    for ((i = 1; i < ${#FUNCNAME[@]} - 1; i++)); do
        where+=" in ${FUNCNAME[i]}, called from $(basename "${BASH_SOURCE[i + 1]}"):${BASH_LINENO[i]}"
    done
    printf 'testlib: command failed (exit %s) at %s: %s\n' "$rc" "$where" "$cmd" >&2
}

# ---------------------------------------------------------------------------------------------
# Setup and cleanup

# t_init NAME: creates the workdir ($T_WORK), a database on the shared stack (migrated), a
# Redis key prefix ($T_PREFIX, "mh<name><random>"), a PKI ($T_PKI, deploy/pki init) and
# installs the cleanup trap. Exports MH_PG_URI / MH_PKI_DIR for this test's database and PKI
# (meterhub-admin reads them).
t_init() {
    local raw=${1:?t_init NAME}
    T_NAME="$(tr -c '[:alnum:]_\n' '_' <<<"$raw" | tr '[:upper:]' '[:lower:]')"
    T_NAME=${T_NAME:0:24}
    [[ -x "$MH_BIN/meterhub-admin" ]] || {
        printf 'testlib: %s/meterhub-admin not found; build first (tests/run does)\n' "$MH_BIN" >&2
        exit 1
    }
    T_WORK="$(mktemp -d "${TMPDIR:-/tmp}/mh-$T_NAME.XXXXXX")"
    # Searchable by the stack's server user, should this test start a private stack in it.
    chmod 0711 "$T_WORK"
    mkdir -p "$T_WORK/etc" "$T_WORK/log"
    # tests/run sweeps the workdirs listed here at the end, should a test be killed (CTest
    # timeout) before its own cleanup ran: a private stack's servers would outlive it.
    if [[ -n "${MH_TEST_STACK_DIR:-}" && -w "$MH_TEST_STACK_DIR" ]]; then
        printf '%s\n' "$T_WORK" >>"$MH_TEST_STACK_DIR/test-workdirs"
    fi
    trap _t_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    set -E
    trap '_t_on_err $? $LINENO "$BASH_COMMAND"' ERR

    local rand
    rand="$(mh_random_hex 4)"
    T_DB="t_${T_NAME}_${rand}"
    T_PREFIX="mh${T_NAME//_/}${rand}"
    T_BODY="$T_WORK/body"
    T_PKI="$T_WORK/pki"
    export MH_PKI_DIR="$T_PKI"
    _t_log "test $raw: workdir $T_WORK, redis prefix $T_PREFIX"

    "$MH_SRC/deploy/pki" init "$T_PKI" >"$T_WORK/log/pki.log" 2>&1 || {
        cat "$T_WORK/log/pki.log" >&2
        exit 1
    }

    if [[ -n "${MH_TEST_STACK_DIR:-}" ]]; then
        T_STACK_DIR=$MH_TEST_STACK_DIR
        _t_stack createdb "$T_STACK_DIR" "$T_DB"
        T_DB_CREATED=1
        _t_stack migrate "$T_STACK_DIR" --db "$T_DB"
        _t_load_stack_env
    else
        _t_log "MH_TEST_STACK_DIR is not set (not run by tests/run): using a private stack"
        t_own_stack
    fi
}

# _t_stack ARGS...: deploy/stack, its chatter kept in the workdir and shown on failure.
_t_stack() {
    if ! "$MH_SRC/deploy/stack" "$@" >>"$T_WORK/log/stack.log" 2>&1; then
        tail -n 30 "$T_WORK/log/stack.log" >&2
        printf 'testlib: deploy/stack %s failed\n' "$*" >&2
        return 1
    fi
}

# _t_load_stack_env: MH_* of the current stack and database into this shell (exported, so the
# daemons and meterhub-admin see this test's database), plus T_* shorthands.
# shellcheck disable=SC2153 # MH_* come from the eval.
_t_load_stack_env() {
    local env
    env="$("$MH_SRC/deploy/stack" env "$T_STACK_DIR" --db "$T_DB")"
    eval "$env"
    T_PG_URI=$MH_PG_URI
    T_PG_INGEST_URI=$MH_PG_INGEST_URI
    T_PG_WRITER_URI=$MH_PG_WRITER_URI
    T_PG_API_URI=$MH_PG_API_URI
    T_PG_PORT=$MH_PG_PORT
    T_REDIS_PORT=$MH_REDIS_PORT
    T_REDIS_ADMIN_PW=$MH_REDIS_ADMIN_PASSWORD_FILE
    T_REDIS_INGEST_PW=$MH_REDIS_INGEST_PASSWORD_FILE
    T_REDIS_WRITER_PW=$MH_REDIS_WRITER_PASSWORD_FILE
}

# t_own_stack: for fault tests that stop or kill PostgreSQL or Redis: starts a private stack in
# $T_WORK/stack (migrated) and points the test at its `meterhub` database. Call it right after
# t_init, before writing configs. Enables t_pg_stop/t_pg_start/t_redis_stop/t_redis_start.
t_own_stack() {
    [[ -n "$T_WORK" ]] || {
        printf 'testlib: call t_init first\n' >&2
        exit 1
    }
    ((T_OWN_STACK)) && return 0
    if ((T_DB_CREATED)); then
        _t_stack dropdb "$T_STACK_DIR" "$T_DB" || true
        T_DB_CREATED=0
    fi
    T_STACK_DIR="$T_WORK/stack"
    T_OWN_STACK=1
    T_DB=meterhub
    # MH_BIN in the environment makes `stack start` run the migrations too.
    _t_stack start "$T_STACK_DIR"
    _t_load_stack_env
}

_t_require_own_stack() {
    ((T_OWN_STACK)) || {
        printf 'testlib: %s needs t_own_stack (never stop the shared stack)\n' "$1" >&2
        exit 1
    }
}

t_pg_stop() {
    _t_require_own_stack t_pg_stop
    _t_stack stop "$T_STACK_DIR" --only pg
}

t_pg_start() {
    _t_require_own_stack t_pg_start
    # After t_pg_kill, orphaned backends may hold the old shared memory for a moment, and the
    # postmaster then refuses to start: retry a few times.
    local i
    for i in 1 2 3; do
        _t_stack start "$T_STACK_DIR" --only pg 2>/dev/null && return 0
        sleep "$i"
    done
    _t_stack start "$T_STACK_DIR" --only pg
}

# t_pg_kill: SIGKILL to the postmaster (a crash). t_pg_start recovers it.
t_pg_kill() {
    _t_require_own_stack t_pg_kill
    local pid
    read -r pid <"$T_STACK_DIR/pg/data/postmaster.pid"
    kill -KILL "$pid"
    mh_wait_for 10 mh_pid_gone "$pid" || true
    # Orphaned backends notice the postmaster's death and exit; wait for the port to free up.
    mh_wait_for 10 _t_port_free "$T_PG_PORT" || true
}

t_redis_stop() {
    _t_require_own_stack t_redis_stop
    _t_stack stop "$T_STACK_DIR" --only redis
}

t_redis_start() {
    _t_require_own_stack t_redis_start
    _t_stack start "$T_STACK_DIR" --only redis
}

# t_redis_kill: SIGKILL to redis-server (a crash; what the AOF has survives).
t_redis_kill() {
    _t_require_own_stack t_redis_kill
    local pid
    read -r pid <"$T_STACK_DIR/redis/redis.pid"
    kill -KILL "$pid"
    mh_wait_for 10 mh_pid_gone "$pid" || true
}

_t_port_free() {
    ! mh_port_in_use "$1"
}

# Runs on every exit: stops what the test started, drops its database and Redis keys, removes
# the workdir (kept with T_KEEP=1). On failure, shows the end of each daemon log.
_t_cleanup() {
    local rc=$? name
    set +eu
    trap - ERR
    for name in "${!T_PIDS[@]}"; do
        _t_stop_daemon "$name" TERM >/dev/null 2>&1
    done
    if ((rc != 0)); then
        ((T_DONE)) || printf 'testlib: test ended early (exit %s)\n' "$rc" >&2
        for name in "${!T_LOGS[@]}"; do
            if [[ -s "${T_LOGS[$name]}" ]]; then
                printf -- '--- last lines of %s ---\n' "${T_LOGS[$name]}" >&2
                tail -n 40 "${T_LOGS[$name]}" >&2
            fi
        done
    fi
    if [[ "${T_KEEP:-0}" == 1 ]]; then
        : >"$T_WORK/.keep"
        printf 'testlib: T_KEEP=1: kept %s (database %s, prefix %s)\n' "$T_WORK" "$T_DB" "$T_PREFIX" >&2
        return
    fi
    if ((T_OWN_STACK)); then
        "$MH_SRC/deploy/stack" stop "$T_STACK_DIR" >/dev/null 2>&1
    else
        if ((T_DB_CREATED)); then
            "$MH_SRC/deploy/stack" dropdb "$T_STACK_DIR" "$T_DB" >/dev/null 2>&1
        fi
        [[ -n "${T_PREFIX:-}" && -n "${T_REDIS_PORT:-}" ]] && _t_redis_del_prefix
    fi
    [[ -n "$T_WORK" && -d "$T_WORK" ]] && rm -rf "$T_WORK"
    return "$rc"
}

# Deletes this test's keys from the shared Redis. SCAN runs inside one script, so this is one
# round trip however many keys there are.
_t_redis_del_prefix() {
    t_redis EVAL "local c = '0' local n = 0
repeat
  local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 1000)
  c = r[1]
  for _, k in ipairs(r[2]) do redis.call('UNLINK', k) n = n + 1 end
until c == '0'
return n" 0 "$T_PREFIX*" >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
# Small utilities

t_free_port() {
    mh_free_port
}

# t_wait_until TIMEOUT_S CMD...: runs CMD (quietly) every 0.1 s until it succeeds. Returns 1 on
# timeout.
t_wait_until() {
    mh_wait_for "$@"
}

# t_admin ARGS...: meterhub-admin on this test's database and PKI.
t_admin() {
    MH_PG_URI=$T_PG_URI MH_PKI_DIR=$T_PKI "$MH_BIN/meterhub-admin" "$@"
}

# t_psql SQL: runs SQL as the admin on this test's database; prints unaligned rows.
t_psql() {
    psql -X -q -At -v ON_ERROR_STOP=1 "$T_PG_URI" -c "$1"
}

# t_psql_as ROLE SQL: the same as the daemon role ROLE (ingest, writer or api, or admin).
t_psql_as() {
    local uri
    case "$1" in
    admin) uri=$T_PG_URI ;;
    ingest) uri=$T_PG_INGEST_URI ;;
    writer) uri=$T_PG_WRITER_URI ;;
    api) uri=$T_PG_API_URI ;;
    *)
        printf 'testlib: t_psql_as: unknown role %s\n' "$1" >&2
        return 2
        ;;
    esac
    psql -X -q -At -v ON_ERROR_STOP=1 "$uri" -c "$2"
}

# t_redis ARGS...: redis-cli as the default (operator) user. Note: redis-cli exits 0 even on an
# error reply; compare the output.
t_redis() {
    REDISCLI_AUTH="$(cat "$T_REDIS_ADMIN_PW")" \
        redis-cli -h 127.0.0.1 -p "$T_REDIS_PORT" --no-auth-warning "$@"
}

# t_redis_as USER ARGS...: redis-cli as the ACL user meterhub_ingest or meterhub_writer
# (USER: ingest or writer).
t_redis_as() {
    local user=$1 pw
    shift
    case "$user" in
    ingest) pw=$T_REDIS_INGEST_PW ;;
    writer) pw=$T_REDIS_WRITER_PW ;;
    *)
        printf 'testlib: t_redis_as: unknown user %s\n' "$user" >&2
        return 2
        ;;
    esac
    REDISCLI_AUTH="$(cat "$pw")" redis-cli -h 127.0.0.1 -p "$T_REDIS_PORT" \
        --user "meterhub_$user" --no-auth-warning "$@"
}

# t_curl DEVICE_DIR URL_PATH [CURL ARGS...]: HTTPS request to ingest (127.0.0.1:$T_INGEST_PORT,
# or $T_CURL_PORT) with the device's certificate and key (DEVICE_DIR/device.crt, device.key),
# verifying the server with DEVICE_DIR/ca.crt (else $T_PKI/ca.crt). An empty DEVICE_DIR sends
# no client certificate. Prints the HTTP status code (000 when no HTTP answer came: TLS refused,
# connection reset...); the body is in $T_BODY, curl's exit status in $T_WORK/curl.rc
# (t_curl_rc). Always returns 0, so `code=$(t_curl ...)` never aborts the test.
t_curl() {
    local dev=$1 path=$2 ca rc=0 code
    shift 2
    ca="$T_PKI/ca.crt"
    [[ -n "$dev" && -f "$dev/ca.crt" ]] && ca="$dev/ca.crt"
    local args=(-sS -o "$T_BODY" -w '%{http_code}' --max-time "${T_CURL_TIMEOUT:-10}"
        --cacert "$ca" --noproxy '*')
    [[ -n "$dev" ]] && args+=(--cert "$dev/device.crt" --key "$dev/device.key")
    : >"$T_BODY"
    code="$(curl "${args[@]}" "$@" "https://127.0.0.1:${T_CURL_PORT:-$T_INGEST_PORT}$path" \
        2>"$T_WORK/curl.err")" || rc=$?
    printf '%s\n' "$rc" >"$T_WORK/curl.rc"
    printf '%s\n' "${code:-000}"
}

t_curl_rc() {
    cat "$T_WORK/curl.rc"
}

# t_device [ACCOUNT [SENSORS [DEVICE-ADD ARGS...]]]: provisions one device with meterhub-admin
# (account created if needed; default "acme", 2 sensors) into $T_WORK/devices/<id>/, writes its
# JSON line to DIR/device.json and prints DIR. Extra arguments go to `device add`, e.g. an
# expired certificate: t_device acme 1 --days 1 --not-before-days-ago 2
t_device() {
    local account=${1:-acme} nsensors=${2:-2} out json id
    shift $(($# < 2 ? $# : 2))
    out="$T_WORK/devices/new.$$.$RANDOM"
    mkdir -p "$out"
    json="$(t_admin device add --account "$account" --sensors "$nsensors" --out "$out" "$@")"
    id="$(sed -n 's/.*"device": *"\([0-9a-f]\{32\}\)".*/\1/p' <<<"$json")"
    [[ -n "$id" ]] || {
        printf 'testlib: t_device: unexpected output: %s\n' "$json" >&2
        return 1
    }
    mv "$out" "$T_WORK/devices/$id"
    printf '%s\n' "$json" >"$T_WORK/devices/$id/device.json"
    [[ "${T_DEVICE_NOWAIT:-0}" == 1 ]] || t_sync_directory
    printf '%s\n' "$T_WORK/devices/$id"
}

# t_sync_directory: waits until every running ingest instance has reloaded its device directory
# up to the newest change in the database (after provisioning or revoking), so the next request
# sees it. ingest logs "directory: loaded ... (seq D/S)" on each reload; we wait for D/S to
# reach the database's max(change_seq). Bounded by 3 refresh periods + 1 s (then it returns
# anyway: the test's own assertion will tell). t_device calls it (unless T_DEVICE_NOWAIT=1).
t_sync_directory() {
    local want dseq sseq name refresh bound
    local -a names=()
    for name in "${!T_PIDS[@]}"; do
        [[ "${T_KINDS[$name]:-}" == ingest ]] && _t_running "${T_PIDS[$name]}" && names+=("$name")
    done
    ((${#names[@]})) || return 0
    want="$(t_psql "SELECT (SELECT coalesce(max(change_seq), 0) FROM devices) || ' ' ||
                           (SELECT coalesce(max(change_seq), 0) FROM sensors)")"
    read -r dseq sseq <<<"$want"
    refresh=${T_DIRECTORY_REFRESH_MS-200}
    [[ -n "$refresh" ]] || refresh=1000
    bound=$(((3 * refresh + 999) / 1000 + 1))
    for name in "${names[@]}"; do
        mh_wait_for "$bound" _t_directory_at "${T_LOGS[$name]}" "$dseq" "$sseq" || true
    done
    # The line is logged just before the new snapshot is published to the workers.
    sleep 0.05
}

# _t_directory_at LOG DSEQ SSEQ: the newest directory load in LOG is at least DSEQ/SSEQ.
_t_directory_at() {
    local line
    line="$(grep -o 'directory: loaded .* (seq [0-9]*/[0-9]*)' "$1" | tail -n 1)"
    [[ "$line" =~ \(seq\ ([0-9]+)/([0-9]+)\) ]] || return 1
    ((BASH_REMATCH[1] >= $2 && BASH_REMATCH[2] >= $3))
}

# t_sensor DEVICE_DIR I: the id of sensor I (0-based) of a device made by t_device.
t_sensor() {
    local ids
    ids="$(sed -n 's/.*"sensors": *\[\([^]]*\)\].*/\1/p' "$1/device.json" | tr -d ' "' | tr ',' ' ')"
    local -a arr
    read -r -a arr <<<"$ids"
    [[ -n "${arr[$2]:-}" ]] || return 1
    printf '%s\n' "${arr[$2]}"
}

# t_foreign_device: a device certificate from an unrelated CA (deploy/pki foreign); prints its dir.
t_foreign_device() {
    local dir="$T_WORK/foreign"
    "$MH_SRC/deploy/pki" foreign "$dir" --server-ca "$T_PKI/ca.crt" >"$T_WORK/log/pki-foreign.log" 2>&1
    printf '%s\n' "$dir"
}

# ---------------------------------------------------------------------------------------------
# Configs and daemons

# _t_kv KEY VALUE: a `key = value` line, or nothing when VALUE is empty (daemon default).
_t_kv() {
    [[ -n "$2" ]] && printf '%s = %s\n' "$1" "$2"
    return 0
}

_t_redis_section() {
    local user=$1 pw=$2
    printf '[redis]\n'
    _t_kv host 127.0.0.1
    _t_kv port "$T_REDIS_PORT"
    _t_kv user "meterhub_$user"
    _t_kv password_file "$pw"
    _t_kv prefix "$T_PREFIX"
    _t_kv shards "${T_SHARDS-4}"
    _t_kv timeout_ms "${T_REDIS_TIMEOUT_MS-2000}"
}

# t_write_ingest_conf [NAME]: writes $T_WORK/etc/NAME.conf (NAME defaults to "ingest") for this
# test's database, Redis prefix and PKI, on fresh free ports: T_LISTEN_PORTS[NAME] and
# T_OPS_PORTS[NAME]; for the default instance also T_INGEST_PORT and T_INGEST_OPS_PORT.
# Limits come from these variables (an empty value leaves the key out, i.e. daemon default):
#   T_INGEST_WORKERS=2 T_MAX_BODY_BYTES=65536 T_MAX_READINGS=100 T_MAX_FUTURE_SKEW_S=300
#   T_MAX_AGE_S=2592000 T_RATE_PER_S=1000 T_RATE_BURST=1000 T_MAX_BACKLOG=100000
#   T_MAX_INFLIGHT=1024 T_DIRECTORY_REFRESH_MS=200 T_IDLE_TIMEOUT_S=10 T_LOG_LEVEL=info
#   T_SHARDS=4 T_REDIS_TIMEOUT_MS=2000
# and T_INGEST_EXTRA, raw lines appended to the [ingest] section.
t_write_ingest_conf() {
    local name=${1:-ingest} conf listen ops
    conf="$T_WORK/etc/$name.conf"
    listen="$(t_free_port)"
    ops="$(t_free_port)"
    T_LISTEN_PORTS[$name]=$listen
    T_OPS_PORTS[$name]=$ops
    T_CONFS[$name]=$conf
    if [[ "$name" == ingest ]]; then
        T_INGEST_PORT=$listen
        T_INGEST_OPS_PORT=$ops
    fi
    {
        printf '# Written by tests/lib/testlib.sh for test %s\n' "$T_NAME"
        printf '[ingest]\n'
        _t_kv listen_addr 127.0.0.1
        _t_kv listen_port "$listen"
        _t_kv ops_addr 127.0.0.1
        _t_kv ops_port "$ops"
        _t_kv tls_cert "$T_PKI/ingest.crt"
        _t_kv tls_key "$T_PKI/ingest.key"
        _t_kv client_ca "$T_PKI/client-ca.crt"
        _t_kv workers "${T_INGEST_WORKERS-2}"
        _t_kv idle_timeout_s "${T_IDLE_TIMEOUT_S-10}"
        _t_kv max_body_bytes "${T_MAX_BODY_BYTES-65536}"
        _t_kv max_readings "${T_MAX_READINGS-100}"
        _t_kv max_future_skew_s "${T_MAX_FUTURE_SKEW_S-300}"
        _t_kv max_age_s "${T_MAX_AGE_S-2592000}"
        _t_kv rate_per_s "${T_RATE_PER_S-1000}"
        _t_kv rate_burst "${T_RATE_BURST-1000}"
        _t_kv max_backlog "${T_MAX_BACKLOG-100000}"
        _t_kv max_inflight "${T_MAX_INFLIGHT-1024}"
        _t_kv directory_refresh_ms "${T_DIRECTORY_REFRESH_MS-200}"
        _t_kv log_level "${T_LOG_LEVEL-info}"
        [[ -n "${T_INGEST_EXTRA:-}" ]] && printf '%s\n' "$T_INGEST_EXTRA"
        printf '\n[postgres]\n'
        _t_kv conninfo "$T_PG_INGEST_URI"
        printf '\n'
        _t_redis_section ingest "$T_REDIS_INGEST_PW"
    } >"$conf"
}

# t_write_writer_conf [NAME]: writes $T_WORK/etc/NAME.conf (NAME defaults to "writer";
# consumer name NAME) with a fresh ops port (T_OPS_PORTS[NAME]; T_WRITER_OPS_PORT for the
# default). Variables: T_WRITER_BATCH_SIZE=200 T_WRITER_BLOCK_MS=200
# T_WRITER_CLAIM_IDLE_MS=2000 T_LOG_LEVEL=info T_SHARDS T_REDIS_TIMEOUT_MS, T_WRITER_EXTRA.
t_write_writer_conf() {
    local name=${1:-writer} conf ops
    conf="$T_WORK/etc/$name.conf"
    ops="$(t_free_port)"
    T_OPS_PORTS[$name]=$ops
    T_CONFS[$name]=$conf
    [[ "$name" == writer ]] && T_WRITER_OPS_PORT=$ops
    {
        printf '# Written by tests/lib/testlib.sh for test %s\n' "$T_NAME"
        printf '[writer]\n'
        _t_kv batch_size "${T_WRITER_BATCH_SIZE-200}"
        _t_kv block_ms "${T_WRITER_BLOCK_MS-200}"
        _t_kv claim_idle_ms "${T_WRITER_CLAIM_IDLE_MS-2000}"
        _t_kv consumer "$name"
        _t_kv ops_addr 127.0.0.1
        _t_kv ops_port "$ops"
        _t_kv log_level "${T_LOG_LEVEL-info}"
        [[ -n "${T_WRITER_EXTRA:-}" ]] && printf '%s\n' "$T_WRITER_EXTRA"
        printf '\n[postgres]\n'
        _t_kv conninfo "$T_PG_WRITER_URI"
        printf '\n'
        _t_redis_section writer "$T_REDIS_WRITER_PW"
    } >"$conf"
}

# t_write_api_conf [NAME]: writes $T_WORK/etc/NAME.conf for meterhub-api (NAME defaults to
# "api") with fresh ports: T_API_PORT (HTTPS, the test PKI's server certificate) and an ops
# port (T_OPS_PORTS[NAME]). Variables: T_API_LOGIN_FAILURES_PER_ACCOUNT=5,
# T_API_LOGIN_FAILURES_PER_ADDRESS=20, T_API_LOGIN_WINDOW_S=300, T_API_MAX_BODY_BYTES=16384,
# T_API_PKI_DIR=$T_PKI (the device CA for POST /v1/devices; empty: none, registration answers
# 503), T_LOG_LEVEL=info, T_API_EXTRA (lines added to [api]).
t_write_api_conf() {
    local name=${1:-api} conf ops
    conf="$T_WORK/etc/$name.conf"
    ops="$(t_free_port)"
    T_OPS_PORTS[$name]=$ops
    T_CONFS[$name]=$conf
    T_API_PORT="$(t_free_port)"
    T_HEADERS="$T_WORK/api.headers"
    {
        printf '# Written by tests/lib/testlib.sh for test %s\n' "$T_NAME"
        printf '[api]\n'
        _t_kv listen_addr 127.0.0.1
        _t_kv listen_port "$T_API_PORT"
        _t_kv ops_addr 127.0.0.1
        _t_kv ops_port "$ops"
        _t_kv tls_cert "$T_PKI/ingest.crt"
        _t_kv tls_key "$T_PKI/ingest.key"
        _t_kv db_threads 2
        _t_kv login_failures_per_account "${T_API_LOGIN_FAILURES_PER_ACCOUNT-5}"
        _t_kv login_failures_per_address "${T_API_LOGIN_FAILURES_PER_ADDRESS-20}"
        _t_kv login_window_s "${T_API_LOGIN_WINDOW_S-300}"
        _t_kv max_body_bytes "${T_API_MAX_BODY_BYTES-16384}"
        _t_kv pki_dir "${T_API_PKI_DIR-$T_PKI}"
        _t_kv log_level "${T_LOG_LEVEL-info}"
        [[ -n "${T_API_EXTRA:-}" ]] && printf '%s\n' "$T_API_EXTRA"
        printf '\n[postgres]\n'
        _t_kv conninfo "$T_PG_API_URI"
    } >"$conf"
}

# t_start_api [NAME] [DAEMON ARGS...]: like t_start_ingest, for meterhub-api.
t_start_api() {
    _t_inst api "${1:-}"
    local name=$_T_INST
    [[ "${1:-}" == "$name" ]] && shift
    [[ -n "${T_CONFS[$name]:-}" ]] || t_write_api_conf "$name"
    _t_start_daemon api "$name" "$@"
}

# t_stop_api [NAME]: SIGTERM; returns the exit status.
t_stop_api() {
    _t_stop_daemon "${1:-api}" TERM
}

# t_api METHOD PATH [TOKEN [CURL ARGS...]]: an HTTPS request to meterhub-api (TOKEN "" for
# none); the body goes to $T_BODY, the headers to $T_HEADERS; prints the HTTP status.
t_api() {
    local method=$1 path=$2 token=${3:-} code
    shift $(($# < 3 ? $# : 3))
    local args=(-sS -o "$T_BODY" -D "$T_HEADERS" -w '%{http_code}' --max-time 10
        --cacert "$T_PKI/ca.crt" --noproxy '*' -X "$method")
    [[ -n "$token" ]] && args+=(-H "Authorization: Bearer $token")
    : >"$T_BODY"
    code="$(curl "${args[@]}" "$@" "https://127.0.0.1:$T_API_PORT$path" 2>"$T_WORK/curl.err")" || true
    printf '%s\n' "${code:-000}"
}

# t_psql_as_account ACCOUNT SQL: SQL as the API's role in a transaction with ACCOUNT (a name;
# "" for none, an anonymous caller) bound, as meterhub-api binds it: what row-level security
# alone lets through.
t_psql_as_account() {
    local id=""
    [[ -n "$1" ]] && id="$(t_psql "SELECT id FROM accounts WHERE name = '$1'")"
    psql -X -q -At -v ON_ERROR_STOP=1 "$T_PG_API_URI" -f - <<SQL
BEGIN;
SELECT set_config('meterhub.account', '$id', true) \g /dev/null
$2;
COMMIT;
SQL
}

# t_api_account NAME...: each account (created if missing) gets the password "NAME-long-password",
# for t_api_token.
t_api_account() {
    local who
    for who in "$@"; do
        (umask 077 && printf '%s-long-password\n' "$who" >"$T_WORK/$who.pw")
        t_admin account add "$who" --if-missing >/dev/null
        t_admin account passwd "$who" --password-file "$T_WORK/$who.pw" >/dev/null
    done
}

# t_api_token NAME [SCOPE]: prints a fresh token (scope read by default) of an account made by
# t_api_account; its JSON answer stays in $T_BODY.
t_api_token() {
    t_api POST /v1/tokens "" -H 'Content-Type: application/json' --data-binary \
        "{\"username\":\"$1\",\"password\":\"$1-long-password\",\"scope\":\"${2:-read}\"}" >/dev/null
    jq -r .token "$T_BODY"
}

# _t_running PID: alive and not a zombie (our children stay zombies until reaped).
_t_running() {
    local state
    [[ -r "/proc/$1/stat" ]] || return 1
    state="$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# _t_probe NAME: sets _T_HEALTH to the HTTP status of the instance's /healthz (000: none) and
# returns 0 when the daemon answers at all: an HTTP status on the ops port, or the device port
# accepting TCP.
_t_probe() {
    local name=$1
    _T_HEALTH="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --noproxy '*' \
        "http://127.0.0.1:${T_OPS_PORTS[$name]}/healthz" 2>/dev/null)" || true
    _T_HEALTH=${_T_HEALTH:-000}
    [[ "$_T_HEALTH" != 000 ]] && return 0
    if [[ -n "${T_LISTEN_PORTS[$name]:-}" ]]; then
        timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/${T_LISTEN_PORTS[$name]}" 2>/dev/null
        return
    fi
    return 1
}

# _t_start_daemon KIND NAME [ARGS...]: starts meterhub-KIND -c NAME.conf ARGS in the background,
# output to $T_WORK/log/NAME.log, and waits until it is ready:
#   - /healthz says 200 (ingest: directory loaded, every worker connected to Redis): ready;
#   - it answers, but not 200, for T_START_GRACE seconds (default 5; a test that starts it
#     while a dependency is down or blocked): accepted, with a note. T_START_HEALTHY=1 refuses
#     that (waits for 200 until the timeout); T_START_HEALTHY=0 accepts any answer at once.
#   - neither within T_START_TIMEOUT (30 s), or it exits: fails, showing its log.
_t_start_daemon() {
    local kind=$1 name=$2 pid deadline grace first=-1
    shift 2
    [[ -n "${T_PIDS[$name]:-}" ]] && _t_running "${T_PIDS[$name]}" && {
        printf 'testlib: %s is already running (pid %s)\n' "$name" "${T_PIDS[$name]}" >&2
        return 1
    }
    case "${T_START_HEALTHY:-}" in
    0) grace=0 ;;
    1) grace=-1 ;;
    *) grace=${T_START_GRACE:-5} ;;
    esac
    T_LOGS[$name]="$T_WORK/log/$name.log"
    T_KINDS[$name]=$kind
    printf -- '--- start %s: meterhub-%s -c %s %s\n' "$(date -u +%FT%TZ)" "$kind" \
        "${T_CONFS[$name]}" "$*" >>"${T_LOGS[$name]}"
    "$MH_BIN/meterhub-$kind" -c "${T_CONFS[$name]}" "$@" </dev/null >>"${T_LOGS[$name]}" 2>&1 &
    pid=$!
    T_PIDS[$name]=$pid
    # For tests/run's sweep, should this test be killed before its cleanup runs.
    printf '%s\n' "$pid" >>"$T_WORK/daemon-pids"
    deadline=$((SECONDS + ${T_START_TIMEOUT:-30}))
    local tries=0
    while ((tries < 10 * ${T_START_TIMEOUT:-30} + 10)); do
        if ! _t_running "$pid"; then
            wait "$pid" 2>/dev/null || true
            unset "T_PIDS[$name]"
            printf 'testlib: %s exited during start-up; its log:\n' "$name" >&2
            tail -n 40 "${T_LOGS[$name]}" >&2
            return 1
        fi
        if _t_probe "$name"; then
            [[ "$_T_HEALTH" == 200 ]] && return 0
            ((first >= 0)) || first=$SECONDS
            if ((grace >= 0 && SECONDS - first >= grace)); then
                _t_log "$name answers but is not healthy (/healthz $_T_HEALTH); continuing"
                return 0
            fi
        fi
        ((SECONDS >= deadline)) && break
        sleep 0.1
        tries=$((tries + 1))
    done
    printf 'testlib: %s not ready within %ss (/healthz %s); its log:\n' "$name" \
        "${T_START_TIMEOUT:-30}" "${_T_HEALTH:-000}" >&2
    tail -n 40 "${T_LOGS[$name]}" >&2
    return 1
}

# _t_stop_daemon NAME SIGNAL: sends SIGNAL, waits (10 s, then SIGKILL) and reaps. Returns the
# daemon's exit status (128+N when killed by signal N).
_t_stop_daemon() {
    local name=$1 sig=$2 pid rc=0
    pid=${T_PIDS[$name]:-}
    [[ -n "$pid" ]] || {
        printf 'testlib: %s was not started\n' "$name" >&2
        return 1
    }
    kill "-$sig" "$pid" 2>/dev/null || true
    if ! mh_wait_for 10 _t_not_running "$pid"; then
        printf 'testlib: %s (pid %s) still running 10 s after SIG%s; killing it\n' "$name" "$pid" "$sig" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    unset "T_PIDS[$name]"
    return "$rc"
}

_t_not_running() {
    ! _t_running "$1"
}

# _t_inst DEFAULT [FIRST-ARG]: the instance name is the caller's first argument unless that is
# absent or an option (then DEFAULT); sets _T_INST.
_t_inst() {
    _T_INST=$1
    if [[ -n "${2:-}" && "$2" != -* ]]; then
        _T_INST=$2
    fi
}

# t_start_ingest [NAME] [DAEMON ARGS...]: starts meterhub-ingest with NAME.conf (written by
# t_write_ingest_conf first if missing); waits until it answers. E.g.
#   t_start_ingest -s ingest.max_readings=5
t_start_ingest() {
    _t_inst ingest "${1:-}"
    local name=$_T_INST
    [[ "${1:-}" == "$name" ]] && shift
    [[ -n "${T_CONFS[$name]:-}" ]] || t_write_ingest_conf "$name"
    _t_start_daemon ingest "$name" "$@"
}

# t_stop_ingest [NAME]: SIGTERM; returns the exit status (0 = clean shutdown).
t_stop_ingest() {
    _t_stop_daemon "${1:-ingest}" TERM
}

t_kill_ingest() {
    _t_stop_daemon "${1:-ingest}" KILL || true
}

# t_start_writer [NAME] [DAEMON ARGS...]: like t_start_ingest, for meterhub-writer.
t_start_writer() {
    _t_inst writer "${1:-}"
    local name=$_T_INST
    [[ "${1:-}" == "$name" ]] && shift
    [[ -n "${T_CONFS[$name]:-}" ]] || t_write_writer_conf "$name"
    _t_start_daemon writer "$name" "$@"
}

# t_stop_writer [NAME]: SIGTERM; returns the exit status.
t_stop_writer() {
    _t_stop_daemon "${1:-writer}" TERM
}

# t_kill_writer [NAME]: SIGKILL (a crash mid-batch), reaped.
t_kill_writer() {
    _t_stop_daemon "${1:-writer}" KILL || true
}

# t_pid NAME: pid of a running daemon instance.
t_pid() {
    printf '%s\n' "${T_PIDS[$1]:?not running: $1}"
}

# t_metric NAME METRIC: the value of METRIC (first sample whose name and labels start with
# METRIC) on the instance's /metrics; empty if absent.
t_metric() {
    curl -s --max-time 5 --noproxy '*' "http://127.0.0.1:${T_OPS_PORTS[$1]}/metrics" |
        awk -v m="$2" '!found && index($0, m) == 1 && $0 !~ /^#/ { print $NF; found = 1 }'
}

# ---------------------------------------------------------------------------------------------
# Assertions

_t_pass() {
    T_N=$((T_N + 1))
    T_PASS=$((T_PASS + 1))
    printf 'ok %d - %s\n' "$T_N" "$1"
}

_t_fail() {
    T_N=$((T_N + 1))
    T_FAIL=$((T_FAIL + 1))
    printf 'not ok %d - %s\n' "$T_N" "$1"
}

# t_ok DESC CMD...: passes when CMD succeeds; on failure shows CMD's output.
t_ok() {
    local desc=$1 out
    shift
    out="$T_WORK/assert.out"
    if "$@" >"$out" 2>&1; then
        _t_pass "$desc"
    else
        _t_fail "$desc"
        printf '#   command: %s\n' "$*"
        sed 's/^/#   /' "$out" | tail -n 20
    fi
}

# t_fails DESC CMD...: passes when CMD fails.
t_fails() {
    local desc=$1 out
    shift
    out="$T_WORK/assert.out"
    if "$@" >"$out" 2>&1; then
        _t_fail "$desc"
        printf '#   command unexpectedly succeeded: %s\n' "$*"
        sed 's/^/#   /' "$out" | tail -n 20
    else
        _t_pass "$desc"
    fi
}

# t_eq DESC EXPECTED ACTUAL
t_eq() {
    if [[ "$2" == "$3" ]]; then
        _t_pass "$1"
    else
        _t_fail "$1"
        printf '#   expected: %s\n#   actual:   %s\n' "$2" "$3"
    fi
}

# t_like DESC REGEX ACTUAL: passes when ACTUAL matches the extended regular expression.
t_like() {
    if [[ "$3" =~ $2 ]]; then
        _t_pass "$1"
    else
        _t_fail "$1"
        printf '#   expected to match: %s\n#   actual: %s\n' "$2" "$3"
    fi
}

# t_skip REASON: ends the test as skipped (CTest SKIP_RETURN_CODE 77).
t_skip() {
    printf 'skip: %s\n' "$*"
    T_DONE=1
    exit 77
}

# t_done: prints "N passed, M failed" and exits 0 only if nothing failed and something passed.
t_done() {
    T_DONE=1
    printf '%d passed, %d failed\n' "$T_PASS" "$T_FAIL"
    if ((T_FAIL > 0 || T_PASS == 0)); then
        exit 1
    fi
    exit 0
}
