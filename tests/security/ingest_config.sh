#!/usr/bin/env bash
#
# Unsafe or broken configurations are refused at load, before anything listens: no client CA,
# a non-loopback metrics address, unknown keys, out-of-range values, a world-readable Redis
# password file. The writer refuses the same classes of mistakes.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"

t_init ingest_config
t_write_ingest_conf
t_write_writer_conf
ingest_conf="${T_CONFS[ingest]}"
writer_conf="${T_CONFS[writer]}"

check() { "$MH_BIN/meterhub-ingest" -c "$ingest_conf" --check "$@" >"$T_WORK/out" 2>&1; }
refused() {
    local desc=$1 pattern=$2
    shift 2
    local rc=0
    check "$@" || rc=$?
    t_eq "$desc: exit status 2" 2 "$rc"
    t_like "$desc: says why" "$pattern" "$(cat "$T_WORK/out")"
}

t_ok "the test configuration is valid" check
refused "client certificates without a CA" "client_ca is required" -s ingest.client_ca=
sed -i '/^client_ca/d' "$ingest_conf"
refused "client_ca missing from the file" "client_ca is required"
t_write_ingest_conf
ingest_conf="${T_CONFS[ingest]}"
refused "metrics on a public address" "loopback" -s ingest.ops_addr=0.0.0.0
refused "an unknown key" "unknown key" -s ingest.wokers=2
refused "a value out of range" "out of range" -s ingest.listen_port=70000
refused "a non-number" "not an integer" -s ingest.workers=two
refused "an unknown log level" "log_level" -s ingest.log_level=chatty
printf '[ingest]\nlisten_port 8443\n' >"$T_WORK/broken.conf"
rc=0
"$MH_BIN/meterhub-ingest" -c "$T_WORK/broken.conf" --check >"$T_WORK/out" 2>&1 || rc=$?
t_eq "a malformed line: exit status 2" 2 "$rc"
t_like "names file and line" 'broken.conf:2' "$(cat "$T_WORK/out")"

pw="$T_WORK/open.pw"
printf 'hunter2-xyzzy\n' >"$pw"
chmod 644 "$pw"
refused "a world-readable Redis password file" "must not be accessible" -s "redis.password_file=$pw"
t_fails "the password never reaches the output" grep -q hunter2-xyzzy "$T_WORK/out"
chmod 600 "$pw"
t_ok "the same file with mode 0600 passes" check -s "redis.password_file=$pw"

dump="$("$MH_BIN/meterhub-ingest" -c "$ingest_conf" --check --dump 2>&1)"
t_like "--dump redacts the PostgreSQL conninfo" 'conninfo = <redacted>' "$dump"

rc=0
"$MH_BIN/meterhub-writer" -c "$writer_conf" --check -s writer.ops_addr=0.0.0.0 >"$T_WORK/out" 2>&1 || rc=$?
t_eq "writer: metrics on a public address refused" 2 "$rc"
rc=0
"$MH_BIN/meterhub-writer" -c "$writer_conf" --check -s writer.batchsize=5 >"$T_WORK/out" 2>&1 || rc=$?
t_eq "writer: an unknown key refused" 2 "$rc"

t_done
