# shellcheck shell=bash
#
# bench/lib/ceilings.sh: the ceilings meterhub is measured against, on the same machine in the
# same run (issue: "ceilings measured in the same run"):
#   - HTTP + TLS: nginx with ingest's mutual-TLS settings answering 204 to every request;
#   - queue: redis-benchmark XADD, pipelined, on the stack's own Redis (same durability);
#   - storage: COPY of N rows into the readings table of the stack's PostgreSQL.
# Functions are prefixed ceil_. They need deploy/lib/common.sh (mh_* helpers) sourced first.
# Loopback only; every wait is bounded.

# ceil_nginx_start WORKDIR PKI_DIR PORT WORKERS: starts nginx in the foreground-less daemon
# mode with its own prefix in WORKDIR/nginx, TLS as ingest configures it (common/tls.c:
# TLS 1.2+, ECDHE AEAD suites, client certificate required and verified against the device
# CA chain, no session tickets, a server-side session cache), keep-alive, `return 204`.
ceil_nginx_start() {
    local work=$1 pki=$2 port=$3 workers=$4 dir
    dir="$work/nginx"
    mkdir -p "$dir/logs" "$dir/tmp"
    cat >"$dir/nginx.conf" <<CONF
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
$([[ "$(id -u)" -eq 0 ]] && printf 'user root;')
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    client_max_body_size 64k;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $pki/ingest.crt;
        ssl_certificate_key $pki/ingest.key;
        ssl_client_certificate $pki/client-ca.crt;
        ssl_verify_client on;
        ssl_verify_depth 4;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        ssl_prefer_server_ciphers off;
        ssl_session_tickets off;
        ssl_session_cache shared:mh:10m;
        location / { return 204; }
    }
}
CONF
    nginx -p "$dir" -c "$dir/nginx.conf" -t >"$dir/logs/configtest.log" 2>&1 ||
        mh_die "nginx configuration refused: $(cat "$dir/logs/configtest.log")"
    nginx -p "$dir" -c "$dir/nginx.conf" || mh_die "nginx did not start: $(tail -5 "$dir/logs/error.log")"
    mh_wait_for 10 test -s "$dir/nginx.pid" || mh_die "nginx wrote no pid file"
    CEIL_NGINX_PID="$(cat "$dir/nginx.pid")"
    CEIL_NGINX_DIR=$dir
}

# ceil_nginx_stop: stops the nginx started by ceil_nginx_start (no-op if none).
ceil_nginx_stop() {
    [[ -n "${CEIL_NGINX_PID:-}" ]] || return 0
    kill -QUIT "$CEIL_NGINX_PID" 2>/dev/null || true
    mh_wait_for 10 mh_pid_gone "$CEIL_NGINX_PID" || kill -KILL "$CEIL_NGINX_PID" 2>/dev/null || true
    CEIL_NGINX_PID=""
}

# ceil_redis_xadd HOST PORT PASSWORD_FILE REQUESTS PIPELINE PAYLOAD_BYTES: XADDs per second
# with redis-benchmark (50 clients, pipelined), on a key of its own that is deleted afterwards.
# Prints the rate (a number).
ceil_redis_xadd() {
    local host=$1 port=$2 pwfile=$3 n=$4 pipe=$5 bytes=$6 key payload rate
    key="mhbench:{0}:xadd"
    payload="$(head -c "$bytes" /dev/zero | tr '\0' 'x')"
    # redis-benchmark takes the password only on its command line; this is the bench's own
    # throwaway stack, whose secrets die with it.
    rate="$(redis-benchmark -h "$host" -p "$port" --user default -a "$(cat "$pwfile")" -n "$n" \
        -P "$pipe" -c 50 -q XADD "$key" '*' e "$payload" 2>/dev/null |
        tr '\r' '\n' | sed -n 's/.*: *\([0-9.]*\) requests per second.*/\1/p' | tail -1)"
    REDISCLI_AUTH="$(cat "$pwfile")" redis-cli -h "$host" -p "$port" --no-auth-warning DEL "$key" >/dev/null
    printf '%s\n' "${rate:-0}"
}

# ceil_pg_copy PG_URI ROWS: COPY ROWS readings (64 sensor ids far above any real sid, one
# reading a second each, five days ago) straight into the readings table, in one transaction,
# timed from the start of the COPY to its commit; the rows are deleted afterwards. The rows are
# generated into a file first so only the load is timed. Prints rows per second.
ceil_pg_copy() {
    local uri=$1 rows=$2 file t0 t1
    file="$(mktemp)"
    psql -X -q -v ON_ERROR_STOP=1 -d "$uri" -c "\copy (
        SELECT 2000000000 + i % 64, now() - interval '5 days' + (i / 64) * interval '1 second',
               200 + i % 300 + (i % 10) / 10.0
        FROM generate_series(0, $rows - 1) AS i) TO '$file'" >/dev/null
    t0=$(date +%s%N)
    psql -X -q -v ON_ERROR_STOP=1 -d "$uri" -c "\copy readings (sensor, ts, value) FROM '$file'" \
        >/dev/null
    t1=$(date +%s%N)
    psql -X -q -d "$uri" -c "DELETE FROM readings WHERE sensor >= 2000000000" >/dev/null
    rm -f "$file"
    awk -v r="$rows" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f\n", r / (ns / 1e9) }'
}
