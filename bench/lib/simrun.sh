# shellcheck shell=bash
#
# bench/lib/simrun.sh: runs meterhub-sim as a measured load and accounts the CPU of every
# process of the pipeline from /proc. Used by bench/ingest. Needs deploy/lib/common.sh and
# bench/lib/ceilings.sh sourced first, and these globals set by the caller:
#   BIN WORK CLK_TCK SHARDS PREFIX DRAIN_TIMEOUT VERIFY_TIMEOUT SIM_TIMEOUT DURATION
#   INGEST_PID WRITER_PID REDIS_PID PG_PID SIM_COMMON (array) R (assoc array) FAILED
#   rcli (function) nap (function: sleeps without forking)
# Results go to R[NAME.key]; the simulator's JSON to $WORK/out/NAME.json.

# ticks PID [children]: utime+stime of PID (all its threads), plus cutime+cstime (reaped
# children) with `children`, in clock ticks; 0 when PID is gone.
ticks() {
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || {
        printf '0\n'
        return 0
    }
    line=${line##*) }
    # after "pid (comm) ": state=1 ... utime=12 stime=13 cutime=14 cstime=15
    local -a f
    read -r -a f <<<"$line"
    if [[ "${2:-}" == children ]]; then
        printf '%s\n' $((f[11] + f[12] + f[13] + f[14]))
    else
        printf '%s\n' $((f[11] + f[12]))
    fi
}

# tree_ticks PID: PID with its reaped children and its live children (postgres backends,
# nginx workers).
tree_ticks() {
    local t c
    [[ -n "$1" ]] || {
        printf '0\n'
        return 0
    }
    t="$(ticks "$1" children)"
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        t=$((t + $(ticks "$c")))
    done
    printf '%s\n' "$t"
}

# cpu_snapshot: "ingest writer redis postgres sim script-children nginx" in clock ticks.
# sim: the live simulator (SIM_PID), script-children: what this script reaped so far (the
# simulator once it exited); nginx: master, workers and reaped workers.
cpu_snapshot() {
    printf '%s %s %s %s %s %s %s\n' "$(ticks "$INGEST_PID")" "$(ticks "$WRITER_PID")" \
        "$(ticks "$REDIS_PID" children)" "$(tree_ticks "$PG_PID")" \
        "$( [[ -n "${SIM_PID:-}" ]] && ticks "$SIM_PID" || echo 0)" "$(ticks $$ children)" \
        "$(tree_ticks "${CEIL_NGINX_PID:-}")"
}

# cpu_delta SNAP0 SNAP1 FIELD: seconds of CPU of field FIELD (0-based) between two snapshots.
cpu_delta() {
    local -a a b
    read -r -a a <<<"$1"
    read -r -a b <<<"$2"
    awk -v x="${a[$3]}" -v y="${b[$3]}" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (y - x) / t }'
}

fmt() { awk -v x="$1" -v p="${2:-2}" 'BEGIN { if (x == "" || x == "n/a") print "n/a"; else printf "%.*f", p, x }'; }
div() { awk -v a="$1" -v b="$2" -v p="${3:-2}" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.*f", p, a / b }'; }
# per1k CPU_SECONDS READINGS
per1k() { div "$(awk -v x="$1" 'BEGIN { print x * 1000 }')" "$2" 4; }

backlog_total() {
    local s n total=0
    for ((s = 0; s < SHARDS; s++)); do
        n="$(rcli XLEN "$PREFIX:{$s}:q")"
        [[ "$n" =~ ^[0-9]+$ ]] || return 1
        total=$((total + n))
    done
    printf '%s\n' "$total"
}

drained() { [[ "$(backlog_total)" == 0 ]]; }

dead_total() {
    local s n total=0
    for ((s = 0; s < SHARDS; s++)); do
        n="$(rcli XLEN "$PREFIX:{$s}:dead")"
        total=$((total + ${n:-0}))
    done
    printf '%s\n' "$total"
}

# sim_run NAME KIND URL VERIFY SIM-ARGS...: one meterhub-sim run against URL (KIND ingest or
# nginx). With VERIFY=1 it passes --verify; when the load ends (the simulator says it is
# verifying) the simulator is paused (SIGSTOP), the writer's drain is awaited and timed, the
# CPU snapshot taken, and the simulator resumed: the verification's own queries are not
# charged to the load. Every wait is bounded.
sim_run() {
    local name=$1 kind=$2 url=$3 verify=$4
    shift 4
    local json="$WORK/out/$name.json" err="$WORK/out/$name.err" out="$WORK/out/$name.txt"
    local c0 c1 c2 t_drain0 line found=0 rc=0 errfd deadline drain_ok=1 backlog_end="-"
    local -a vargs=()
    ((verify)) && vargs=(--verify)

    drained || mh_wait_for "$DRAIN_TIMEOUT" drained || true
    : >"$err"
    c0="$(cpu_snapshot)"
    "$BIN/meterhub-sim" "${SIM_COMMON[@]}" --target "$url" --json "$json" "${vargs[@]}" "$@" \
        </dev/null >"$out" 2>"$err" &
    SIM_PID=$!
    exec {errfd}<"$err"
    # The load: its duration, the per-request timeout, start-up and a margin.
    deadline=$((SECONDS + DURATION + SIM_TIMEOUT + 60))
    while [[ -d "/proc/$SIM_PID" ]] && ((SECONDS < deadline)); do
        while IFS= read -r line <&"$errfd" || [[ -n "$line" ]]; do
            [[ "$line" == *"verifying against PostgreSQL"* ]] && found=1
            [[ -z "$line" ]] && break
            line=""
        done
        ((found)) && break
        nap 0.05
    done
    if ((found)); then
        kill -STOP "$SIM_PID" 2>/dev/null || true
        c1="$(cpu_snapshot)"
        t_drain0=$SECONDS
        backlog_end="$(backlog_total || echo '?')"
        mh_wait_for "$DRAIN_TIMEOUT" drained || drain_ok=0
        c2="$(cpu_snapshot)"
        R[$name.drain_s]=$((SECONDS - t_drain0))
        kill -CONT "$SIM_PID" 2>/dev/null || true
        deadline=$((SECONDS + VERIFY_TIMEOUT + 60))
        while [[ -d "/proc/$SIM_PID" ]] && ((SECONDS < deadline)); do nap 0.1; done
    fi
    exec {errfd}<&-
    if [[ -d "/proc/$SIM_PID" ]]; then
        printf 'bench/ingest: run %s: the simulator did not finish in time; stopping it\n' "$name" >&2
        kill -CONT "$SIM_PID" 2>/dev/null || true
        stop_child "$SIM_PID"
        rc=124
    else
        wait "$SIM_PID" || rc=$?
    fi
    if ((!found)); then
        # The simulator exited (reaped by bash): its CPU is in this script's cutime.
        c1="$(cpu_snapshot)"
        c2=$c1
    fi
    SIM_PID=""
    R[$name.rc]=$rc
    R[$name.backlog_end]=$backlog_end
    ((drain_ok)) || R[$name.drain_s]="NOT drained in ${DRAIN_TIMEOUT}"

    if [[ ! -s "$json" ]]; then
        printf 'bench/ingest: run %s: no JSON summary (exit %s); stderr:\n' "$name" "$rc" >&2
        tail -n 5 "$err" >&2
        FAILED=1
        R[$name.verify]="no result"
        return 0
    fi
    local -a v
    mapfile -t v < <(jq -r '.duration_s, .requests.ok, .requests.total, .readings.acked,
        .latency_ms.p50, .latency_ms.p99, .tls.handshakes, .tls.resumed,
        (.requests.total - .requests.ok), .verify.result, .tls.connection_errors, .requests.retries,
        ([.statuses | to_entries[] | "\(.key)x\(.value)"] | join(" "))' "$json")
    local dur=${v[0]}
    R[$name.dur]=$dur
    R[$name.ok]=${v[1]}
    R[$name.total]=${v[2]}
    R[$name.acked]=${v[3]}
    R[$name.rps]="$(div "${v[1]}" "$dur" 0)"
    R[$name.readps]="$(div "${v[3]}" "$dur" 0)"
    R[$name.p50]="$(fmt "${v[4]}" 2)"
    R[$name.p99]="$(fmt "${v[5]}" 2)"
    R[$name.hs]=${v[6]}
    R[$name.hsps]="$(div "${v[6]}" "$dur" 0)"
    R[$name.resumed]=${v[7]}
    R[$name.errors]=${v[8]}
    R[$name.verify]=${v[9]}
    R[$name.connerr]=${v[10]}
    R[$name.retries]=${v[11]}
    R[$name.statuses]=${v[12]}
    local acked=${v[3]}
    R[$name.cpu_ingest]="$(cpu_delta "$c0" "$c1" 0)"
    R[$name.cpu_writer]="$(cpu_delta "$c0" "$c2" 1)"
    R[$name.cpu_redis]="$(cpu_delta "$c0" "$c1" 2)"
    R[$name.cpu_pg]="$(cpu_delta "$c0" "$c2" 3)"
    if ((found)); then
        R[$name.cpu_sim]="$(cpu_delta "$c0" "$c1" 4)"
    else
        R[$name.cpu_sim]="$(cpu_delta "$c0" "$c1" 5)"
    fi
    R[$name.cpu_nginx]="$(cpu_delta "$c0" "$c1" 6)"
    if [[ "$kind" == nginx ]]; then R[$name.cpu_server]=${R[$name.cpu_nginx]}; else R[$name.cpu_server]=${R[$name.cpu_ingest]}; fi
    if ((verify)) && [[ "${v[9]}" != passed ]]; then FAILED=1; fi
    if ((rc != 0)) || [[ "${v[1]}" == 0 ]]; then FAILED=1; fi
    ((drain_ok)) || FAILED=1
    printf '# [%3ds]   %s: %s req/s, %s readings/s, p50 %s ms, p99 %s ms, statuses %s, verify %s\n' \
        "$SECONDS" "$name" "${R[$name.rps]}" "${R[$name.readps]}" "${R[$name.p50]}" "${R[$name.p99]}" \
        "${v[12]}" "${v[9]}" >&2
}

print_table_header() {
    printf '  %-26s %7s %9s %8s %8s %6s | %-36s | %6s %s\n' "" "" "" "" "" "" \
        "CPU s per 1,000 readings" "drain" ""
    printf '  %-26s %7s %9s %8s %8s %6s | %6s %6s %6s %6s %6s | %6s %s\n' run "req/s" "rdg/s" \
        "p50 ms" "p99 ms" "errors" server writer redis pg sim "s" verify
}

# print_row NAME LABEL
print_row() {
    local k=$1 label=$2 a=${R[$1.acked]:-0}
    printf '  %-26s %7s %9s %8s %8s %6s | %6s %6s %6s %6s %6s | %6s %s\n' "$label" \
        "${R[$k.rps]:-n/a}" "${R[$k.readps]:-n/a}" "${R[$k.p50]:-n/a}" "${R[$k.p99]:-n/a}" \
        "${R[$k.errors]:-n/a}" "$(per1k "${R[$k.cpu_server]:-}" "$a")" \
        "$(per1k "${R[$k.cpu_writer]:-}" "$a")" "$(per1k "${R[$k.cpu_redis]:-}" "$a")" \
        "$(per1k "${R[$k.cpu_pg]:-}" "$a")" "$(per1k "${R[$k.cpu_sim]:-}" "$a")" \
        "${R[$k.drain_s]:--}" "${R[$k.verify]:-n/a}"
}
