# shellcheck shell=bash
#
# deploy/lib/stack.sh: a local PostgreSQL 15 + Redis 7 under one directory (see docs/contracts.md,
# "Local stack"). deploy/stack is the command line; tests/lib/testlib.sh and deploy/quickstart
# use it through that command. Functions are prefixed `stack_`; the caller must have run
# `stack_load DIR` first.
#
# Layout of a stack directory DIR:
#   DIR/stack.env            ports and settings chosen on the first start (KEY=VALUE lines)
#   DIR/stack.lock           flock(1) lock serialising every command that changes the stack
#   DIR/secrets/             0700, owned by the invoking user: *.pw (0600) and pgpass (0600)
#   DIR/pg/data/             the PostgreSQL cluster (owned by the server user)
#   DIR/pg/sock/             its unix socket; DIR/pg/postgres.log its log
#   DIR/redis/               redis.conf, users.acl, redis.pid, redis.log, appendonlydir/
#
# Security: both servers listen on 127.0.0.1 only. PostgreSQL asks for a scram-sha-256
# password on TCP and on the unix socket alike; Redis runs in protected mode with ACL users
# whose passwords live only in DIR/secrets (the ACL file holds their SHA-256 hashes).
#
# When run as root the servers run as the `postgres` system user (PostgreSQL refuses root), and
# DIR is made searchable (0711) so that user can reach its subdirectories; DIR/secrets stays
# private to the invoking user.

# shellcheck source=deploy/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

STACK_PG_BIN="${MH_PG_BINDIR:-/usr/lib/postgresql/15/bin}"
STACK_DB="meterhub"
STACK_PG_ADMIN="meterhub_admin"
# Seconds we wait for a server to start or stop before giving up.
STACK_TIMEOUT=60

# stack_load DIR: sets STACK_DIR (absolute), the server user and the settings persisted in
# DIR/stack.env (when it exists). DIR itself need not exist yet.
stack_load() {
    local dir=$1
    [[ -n "$dir" ]] || mh_die "missing stack directory"
    # Restricting the characters keeps every path safe to embed, unquoted, in postgresql.conf,
    # redis.conf, libpq URIs and unix socket paths.
    if [[ ! "$dir" =~ ^[A-Za-z0-9/._+,@=-]+$ ]]; then
        mh_die "stack directory '$dir' has unsupported characters (allowed: A-Z a-z 0-9 / . _ + , @ = -)"
    fi
    mkdir -p "$dir"
    STACK_DIR="$(cd "$dir" && pwd)"
    STACK_SECRETS="$STACK_DIR/secrets"
    STACK_ENV_FILE="$STACK_DIR/stack.env"
    STACK_PGDIR="$STACK_DIR/pg"
    STACK_PGDATA="$STACK_PGDIR/data"
    STACK_REDISDIR="$STACK_DIR/redis"

    if [[ "$(id -u)" -eq 0 ]]; then
        id -u postgres >/dev/null 2>&1 ||
            mh_die "running as root needs the 'postgres' system user (install the postgresql package: deploy/lib/install-deps.sh)"
        STACK_SRV_USER=postgres
    else
        STACK_SRV_USER="$(id -un)"
    fi

    MH_PG_PORT=""
    MH_REDIS_PORT=""
    MH_REDIS_FSYNC="always"
    if [[ -f "$STACK_ENV_FILE" ]]; then
        stack_read_env
    fi
}

# stack_read_env: parses DIR/stack.env without executing it (only known keys, only digits or
# plain words as values), so a damaged file cannot run code.
stack_read_env() {
    local key val
    while IFS='=' read -r key val; do
        case "$key" in
        MH_PG_PORT | MH_REDIS_PORT)
            [[ "$val" =~ ^[0-9]{1,5}$ ]] || mh_die "$STACK_ENV_FILE: bad $key '$val'"
            printf -v "$key" '%s' "$val"
            ;;
        MH_REDIS_FSYNC)
            [[ "$val" == always || "$val" == everysec ]] || mh_die "$STACK_ENV_FILE: bad $key '$val'"
            MH_REDIS_FSYNC=$val
            ;;
        '' | '#'*) ;;
        *) mh_warn "$STACK_ENV_FILE: ignoring unknown key '$key'" ;;
        esac
    done <"$STACK_ENV_FILE"
}

stack_write_env() {
    {
        printf '# Written by deploy/stack on the first start; ports are kept across restarts.\n'
        printf 'MH_PG_PORT=%s\n' "$MH_PG_PORT"
        printf 'MH_REDIS_PORT=%s\n' "$MH_REDIS_PORT"
        printf 'MH_REDIS_FSYNC=%s\n' "$MH_REDIS_FSYNC"
    } | mh_write_if_changed "$STACK_ENV_FILE" 0644
}

# stack_lock: takes DIR/stack.lock for the rest of the calling process, so that concurrent
# commands (parallel tests creating databases, say) run one at a time. The descriptor must be
# closed in anything that outlives us (the servers), hence STACK_LOCK_FD and stack_srv's
# `{STACK_LOCK_FD}>&-`.
stack_lock() {
    mh_need flock
    exec {STACK_LOCK_FD}>>"$STACK_DIR/stack.lock"
    flock -w 300 "$STACK_LOCK_FD" || mh_die "timed out waiting for the lock on $STACK_DIR"
}

# stack_srv CMD...: runs CMD as the server user, without our lock descriptor.
stack_srv() {
    local fd=${STACK_LOCK_FD:-}
    if [[ "$STACK_SRV_USER" != "$(id -un)" ]]; then
        if command -v runuser >/dev/null 2>&1; then
            set -- runuser -u "$STACK_SRV_USER" -- "$@"
        else
            set -- setpriv --reuid="$STACK_SRV_USER" --regid="$STACK_SRV_USER" --init-groups -- "$@"
        fi
    fi
    if [[ -n "$fd" ]]; then
        # Run from a harmless working directory: the server user may not be able to enter ours.
        (cd / && exec "$@" {fd}>&-)
    else
        (cd / && exec "$@")
    fi
}

# stack_owned_dir PATH MODE: creates PATH owned by the server user with MODE.
stack_owned_dir() {
    mkdir -p "$1"
    chmod "$2" "$1"
    if [[ "$STACK_SRV_USER" != "$(id -un)" ]]; then
        chown "$STACK_SRV_USER:" "$1"
    fi
}

stack_secret() {
    cat "$STACK_SECRETS/$1.pw"
}

# ---------------------------------------------------------------------------------------------
# URIs

# stack_pg_uri ROLE [DB]: libpq URI for ROLE (admin|ingest|writer|api) on DB (default meterhub),
# with the password taken from the passfile.
stack_pg_uri() {
    local role=$1 db=${2:-$STACK_DB} user
    case "$role" in
    admin) user=$STACK_PG_ADMIN ;;
    ingest) user=meterhub_ingest ;;
    writer) user=meterhub_writer ;;
    api) user=meterhub_api ;;
    *) mh_die "unknown role '$role'" ;;
    esac
    printf 'postgresql://%s@127.0.0.1:%s/%s?passfile=%s\n' "$user" "$MH_PG_PORT" "$db" \
        "$(mh_urlencode "$STACK_SECRETS/pgpass")"
}

# stack_psql [DB] -- PSQL-ARGS...: psql as the admin over TCP, no psqlrc, stop on error.
stack_psql() {
    local db=$STACK_DB
    if [[ "${1:-}" != "--" ]]; then
        db=$1
        shift
    fi
    shift
    psql -X -q -At -v ON_ERROR_STOP=1 "$(stack_pg_uri admin "$db")" "$@"
}

stack_redis_cli() {
    REDISCLI_AUTH="$(stack_secret redis-admin)" \
        redis-cli -h 127.0.0.1 -p "$MH_REDIS_PORT" --no-auth-warning "$@"
}

# ---------------------------------------------------------------------------------------------
# Secrets

stack_make_secrets() {
    local name
    mkdir -p "$STACK_SECRETS"
    chmod 0700 "$STACK_SECRETS"
    for name in pg-admin pg-ingest pg-writer pg-api redis-admin redis-ingest redis-writer; do
        mh_write_secret "$STACK_SECRETS/$name.pw"
    done
    # libpq passfile: host:port:database:user:password. Any database, so that databases made
    # with `stack createdb` use the same lines. Hex passwords need no escaping.
    {
        printf '127.0.0.1:%s:*:%s:%s\n' "$MH_PG_PORT" "$STACK_PG_ADMIN" "$(stack_secret pg-admin)"
        printf '127.0.0.1:%s:*:meterhub_ingest:%s\n' "$MH_PG_PORT" "$(stack_secret pg-ingest)"
        printf '127.0.0.1:%s:*:meterhub_writer:%s\n' "$MH_PG_PORT" "$(stack_secret pg-writer)"
        printf '127.0.0.1:%s:*:meterhub_api:%s\n' "$MH_PG_PORT" "$(stack_secret pg-api)"
    } | mh_write_if_changed "$STACK_SECRETS/pgpass" 0600
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

stack_pg_running() {
    [[ -f "$STACK_PGDATA/PG_VERSION" ]] || return 1
    stack_srv "$STACK_PG_BIN/pg_ctl" -D "$STACK_PGDATA" status >/dev/null 2>&1
}

stack_pg_answers() {
    stack_psql postgres -- -c 'SELECT 1' >/dev/null 2>&1
}

stack_pg_initdb() {
    [[ -f "$STACK_PGDATA/PG_VERSION" ]] && return 0
    mh_info "initdb: creating the PostgreSQL cluster in $STACK_PGDATA"
    stack_owned_dir "$STACK_PGDATA" 0700
    # The superuser password reaches initdb through a short-lived 0600 file owned by the server
    # user inside its own 0700 directory (a pipe on /dev/stdin cannot be reopened by another
    # user), never through a command line.
    local pwfile="$STACK_PGDIR/initdb.pw"
    (umask 077 && stack_secret pg-admin >"$pwfile")
    [[ "$STACK_SRV_USER" == "$(id -un)" ]] || chown "$STACK_SRV_USER:" "$pwfile"
    if ! stack_srv "$STACK_PG_BIN/initdb" -D "$STACK_PGDATA" -U "$STACK_PG_ADMIN" \
        --pwfile="$pwfile" -A scram-sha-256 -E UTF8 --no-locale \
        >"$STACK_PGDIR/initdb.log" 2>&1; then
        rm -f "$pwfile"
        cat "$STACK_PGDIR/initdb.log" >&2
        rm -rf "$STACK_PGDATA"
        mh_die "initdb failed"
    fi
    rm -f "$pwfile"
    printf "\n# Settings written by deploy/stack on every start.\ninclude_if_exists = 'meterhub.conf'\n" \
        >>"$STACK_PGDATA/postgresql.conf"
}

# Rewritten on every start from stack.env, so the port and paths always agree with it.
stack_pg_config() {
    local sockdir="$STACK_PGDIR/sock"
    stack_owned_dir "$sockdir" 0700
    # A unix socket path is limited to 107 bytes; past that, go without the socket (all our
    # clients use TCP on 127.0.0.1).
    if ((${#sockdir} + 20 > 107)); then
        mh_warn "$sockdir is too long for a unix socket; PostgreSQL will listen on TCP only"
        sockdir=""
    fi
    {
        printf "# Generated by deploy/stack; edits are overwritten on the next start.\n"
        printf "listen_addresses = '127.0.0.1'\n"
        printf "port = %s\n" "$MH_PG_PORT"
        printf "unix_socket_directories = '%s'\n" "$sockdir"
        printf "unix_socket_permissions = 0700\n"
        printf "password_encryption = 'scram-sha-256'\n"
        printf "max_connections = 200\n"
        printf "shared_buffers = 64MB\n"
        printf "timezone = 'UTC'\n"
        printf "log_timezone = 'UTC'\n"
        printf "log_line_prefix = '%%m [%%p] %%q%%u@%%d '\n"
    } | mh_write_if_changed "$STACK_PGDATA/meterhub.conf" 0600
    {
        printf "# Generated by deploy/stack: passwords everywhere, loopback only.\n"
        printf "# TYPE  DATABASE  USER  ADDRESS        METHOD\n"
        printf "local   all       all                  scram-sha-256\n"
        printf "host    all       all   127.0.0.1/32   scram-sha-256\n"
    } | mh_write_if_changed "$STACK_PGDATA/pg_hba.conf" 0600
    if [[ "$STACK_SRV_USER" != "$(id -un)" ]]; then
        chown "$STACK_SRV_USER:" "$STACK_PGDATA/meterhub.conf" "$STACK_PGDATA/pg_hba.conf"
    fi
}

stack_pg_start() {
    stack_owned_dir "$STACK_PGDIR" 0700
    stack_pg_initdb
    stack_pg_config
    if stack_pg_running; then
        mh_info "postgres: already running on 127.0.0.1:$MH_PG_PORT"
    else
        if mh_port_in_use "$MH_PG_PORT"; then
            mh_die "postgres: port $MH_PG_PORT (from $STACK_ENV_FILE) is in use by another process; stop it, or remove $STACK_DIR to start afresh"
        fi
        mh_info "postgres: starting on 127.0.0.1:$MH_PG_PORT"
        if ! stack_srv "$STACK_PG_BIN/pg_ctl" -D "$STACK_PGDATA" -l "$STACK_PGDIR/postgres.log" \
            -w -t "$STACK_TIMEOUT" start >/dev/null; then
            tail -n 30 "$STACK_PGDIR/postgres.log" >&2 || true
            mh_die "postgres: failed to start (log: $STACK_PGDIR/postgres.log)"
        fi
    fi
    mh_wait_for "$STACK_TIMEOUT" stack_pg_answers ||
        mh_die "postgres: not answering on 127.0.0.1:$MH_PG_PORT (log: $STACK_PGDIR/postgres.log)"
    stack_createdb "$STACK_DB" quiet
}

stack_pg_stop() {
    if ! stack_pg_running; then
        mh_info "postgres: not running"
        return 0
    fi
    mh_info "postgres: stopping"
    stack_srv "$STACK_PG_BIN/pg_ctl" -D "$STACK_PGDATA" -m fast -w -t "$STACK_TIMEOUT" stop \
        >/dev/null || mh_die "postgres: failed to stop"
}

stack_pg_pid() {
    [[ -r "$STACK_PGDATA/postmaster.pid" ]] && head -n 1 "$STACK_PGDATA/postmaster.pid"
}

# stack_valid_dbname NAME: lower-case identifiers only, so they never need quoting.
stack_valid_dbname() {
    [[ "$1" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || mh_die "bad database name '$1' (want [a-z_][a-z0-9_]{0,62})"
}

# stack_createdb NAME [quiet]: creates database NAME owned by the admin, if missing.
stack_createdb() {
    local name=$1
    stack_valid_dbname "$name"
    if [[ "$(stack_psql postgres -- -c "SELECT 1 FROM pg_database WHERE datname = '$name'")" == 1 ]]; then
        [[ "${2:-}" == quiet ]] || mh_info "database $name already exists"
        return 0
    fi
    stack_psql postgres -- -c "CREATE DATABASE $name"
    mh_info "created database $name"
}

stack_dropdb() {
    local name=$1
    stack_valid_dbname "$name"
    case "$name" in
    "$STACK_DB" | postgres | template0 | template1) mh_die "refusing to drop database $name" ;;
    esac
    stack_psql postgres -- -c "DROP DATABASE IF EXISTS $name WITH (FORCE)"
    mh_info "dropped database $name"
}

# stack_find_admin: prints the meterhub-admin to use ($MH_BIN, else the repository's build/bin).
stack_find_admin() {
    local c
    for c in "${MH_BIN:+$MH_BIN/meterhub-admin}" "$MH_REPO_ROOT/build/bin/meterhub-admin"; do
        if [[ -n "$c" && -x "$c" ]]; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    return 1
}

# stack_role_login ROLE: true when ROLE can log in with its password from the passfile.
stack_role_login() {
    psql -X -q -At -c 'SELECT 1' "$(stack_pg_uri "$1" postgres)" >/dev/null 2>&1
}

# stack_migrate [DB]: applies the migrations to DB (default meterhub) with meterhub-admin, then
# gives the daemon roles (created by deploy/sql/002_roles.sql) their passwords.
stack_migrate() {
    local db=${1:-$STACK_DB} admin role
    stack_valid_dbname "$db"
    admin="$(stack_find_admin)" ||
        mh_die "meterhub-admin not found (set MH_BIN to the folder of the built binaries)"
    mh_info "migrate: $db with $admin"
    MH_SQL_DIR="${MH_SQL_DIR:-$MH_REPO_ROOT/deploy/sql}" \
        "$admin" --pg "$(stack_pg_uri admin "$db")" migrate >&2 ||
        mh_die "meterhub-admin migrate failed on database $db"
    for role in ingest writer api; do
        if [[ "$(stack_psql "$db" -- -c "SELECT 1 FROM pg_roles WHERE rolname = 'meterhub_$role'")" != 1 ]]; then
            mh_warn "role meterhub_$role does not exist after migrating; not setting its password"
            continue
        fi
        # Roles are cluster-wide: once a password works, leave it (no catalog churn).
        stack_role_login "$role" && continue
        # The password goes through stdin, never on a command line. ALTER ROLE hashes it with
        # scram-sha-256 (password_encryption).
        printf "ALTER ROLE meterhub_%s PASSWORD '%s';\n" "$role" "$(stack_secret "pg-$role")" |
            stack_psql "$db" -- -f - ||
            mh_die "could not set the password of meterhub_$role"
        mh_info "set the password of role meterhub_$role"
    done
}

# ---------------------------------------------------------------------------------------------
# Redis

stack_redis_running() {
    mh_pid_alive "$STACK_REDISDIR/redis.pid" redis-server
}

stack_redis_answers() {
    [[ "$(stack_redis_cli PING 2>/dev/null)" == PONG ]]
}

stack_sha256() {
    printf '%s' "$1" | sha256sum | cut -d' ' -f1
}

# The ACL file holds SHA-256 hashes (#...) only: the plaintext stays in DIR/secrets.
stack_redis_acl() {
    local common='~mh* resetchannels -@all +ping +hello +client|setname'
    {
        printf 'user default on #%s ~* &* +@all\n' "$(stack_sha256 "$(stack_secret redis-admin)")"
        printf 'user meterhub_ingest on #%s %s %s\n' \
            "$(stack_sha256 "$(stack_secret redis-ingest)")" "$common" \
            '+evalsha +eval +script|load +xadd +xlen +hget +hset'
        printf 'user meterhub_writer on #%s %s %s\n' \
            "$(stack_sha256 "$(stack_secret redis-writer)")" "$common" \
            '+xreadgroup +xack +xdel +xautoclaim +xclaim +xgroup|create +xadd +xlen +xpending +xinfo|stream +xinfo|groups +hget'
    } | mh_write_if_changed "$STACK_REDISDIR/users.acl" 0600
}

stack_redis_config() {
    {
        printf '# Generated by deploy/stack on every start; edits are overwritten.\n'
        printf 'bind 127.0.0.1\n'
        printf 'port %s\n' "$MH_REDIS_PORT"
        printf 'protected-mode yes\n'
        printf 'daemonize yes\n'
        printf 'pidfile %s/redis.pid\n' "$STACK_REDISDIR"
        printf 'logfile %s/redis.log\n' "$STACK_REDISDIR"
        printf 'dir %s\n' "$STACK_REDISDIR"
        printf '# Durability: 2xx to a meter means the batch is in the AOF (docs/contracts.md).\n'
        printf 'appendonly yes\n'
        printf 'appendfsync %s\n' "$MH_REDIS_FSYNC"
        printf '# The AOF is the only persistence; no RDB snapshots.\n'
        printf 'save ""\n'
        printf '# Counter state (<prefix>:{n}:last, a field per counter sensor) is read and written\n'
        printf '# on every counter post: past 128 sensors a hash table beats a listpack scan.\n'
        printf 'hash-max-ziplist-entries 128\n'
        printf 'aclfile %s/users.acl\n' "$STACK_REDISDIR"
    } | mh_write_if_changed "$STACK_REDISDIR/redis.conf" 0600
}

stack_redis_start() {
    stack_owned_dir "$STACK_REDISDIR" 0700
    stack_redis_acl
    stack_redis_config
    if [[ "$STACK_SRV_USER" != "$(id -un)" ]]; then
        chown "$STACK_SRV_USER:" "$STACK_REDISDIR/users.acl" "$STACK_REDISDIR/redis.conf"
    fi
    if stack_redis_running; then
        mh_info "redis: already running on 127.0.0.1:$MH_REDIS_PORT"
        mh_wait_for "$STACK_TIMEOUT" stack_redis_answers ||
            mh_die "redis: running but not answering (log: $STACK_REDISDIR/redis.log)"
        # Apply a changed --fsync to the running server (the config file has it for restarts).
        if [[ "$(stack_redis_cli CONFIG GET appendfsync | tail -n 1)" != "$MH_REDIS_FSYNC" ]]; then
            stack_redis_cli CONFIG SET appendfsync "$MH_REDIS_FSYNC" >/dev/null
            mh_info "redis: appendfsync set to $MH_REDIS_FSYNC"
        fi
        return 0
    fi
    if mh_port_in_use "$MH_REDIS_PORT"; then
        mh_die "redis: port $MH_REDIS_PORT (from $STACK_ENV_FILE) is in use by another process; stop it, or remove $STACK_DIR to start afresh"
    fi
    rm -f "$STACK_REDISDIR/redis.pid"
    mh_info "redis: starting on 127.0.0.1:$MH_REDIS_PORT (appendfsync $MH_REDIS_FSYNC)"
    stack_srv redis-server "$STACK_REDISDIR/redis.conf" ||
        mh_die "redis: failed to start (log: $STACK_REDISDIR/redis.log)"
    if ! mh_wait_for "$STACK_TIMEOUT" stack_redis_answers; then
        tail -n 30 "$STACK_REDISDIR/redis.log" >&2 || true
        mh_die "redis: not answering on 127.0.0.1:$MH_REDIS_PORT (log: $STACK_REDISDIR/redis.log)"
    fi
}

stack_redis_stop() {
    local pid
    if ! stack_redis_running; then
        mh_info "redis: not running"
        rm -f "$STACK_REDISDIR/redis.pid"
        return 0
    fi
    read -r pid <"$STACK_REDISDIR/redis.pid"
    mh_info "redis: stopping"
    # SIGTERM makes Redis flush and fsync the AOF before it exits.
    mh_stop_pid "$pid" "$STACK_TIMEOUT"
    rm -f "$STACK_REDISDIR/redis.pid"
}

stack_redis_pid() {
    [[ -r "$STACK_REDISDIR/redis.pid" ]] && head -n 1 "$STACK_REDISDIR/redis.pid"
}

# ---------------------------------------------------------------------------------------------
# Whole stack

# stack_prepare: the first start picks the ports; later ones reuse them.
stack_prepare() {
    local changed=0
    if [[ -z "$MH_PG_PORT" ]]; then
        MH_PG_PORT="$(mh_free_port)"
        changed=1
    fi
    if [[ -z "$MH_REDIS_PORT" ]]; then
        MH_REDIS_PORT="$(mh_free_port)"
        while [[ "$MH_REDIS_PORT" == "$MH_PG_PORT" ]]; do MH_REDIS_PORT="$(mh_free_port)"; done
        changed=1
    fi
    stack_write_env
    if ((changed)); then mh_info "ports: postgres $MH_PG_PORT, redis $MH_REDIS_PORT (saved in $STACK_ENV_FILE)"; fi
    if [[ "$STACK_SRV_USER" != "$(id -un)" ]]; then
        # The server user must be able to traverse DIR (not list it) to reach pg/ and redis/.
        chmod 0711 "$STACK_DIR"
        stack_owned_dir "$STACK_PGDIR" 0700
        if ! stack_srv test -w "$STACK_PGDIR"; then
            mh_die "user $STACK_SRV_USER cannot reach $STACK_DIR (a parent directory is not searchable by others); use a directory under /tmp, or chmod o+x its parents"
        fi
    fi
    stack_make_secrets
}

stack_print_env() {
    local db=${1:-$STACK_DB}
    stack_valid_dbname "$db"
    [[ -n "$MH_PG_PORT" ]] || mh_die "$STACK_DIR is not a stack (no $STACK_ENV_FILE); run: deploy/stack start $STACK_DIR"
    mh_export MH_STACK_DIR "$STACK_DIR"
    mh_export MH_PG_PORT "$MH_PG_PORT"
    mh_export MH_PG_DB "$db"
    mh_export MH_PG_URI "$(stack_pg_uri admin "$db")"
    mh_export MH_PG_INGEST_URI "$(stack_pg_uri ingest "$db")"
    mh_export MH_PG_WRITER_URI "$(stack_pg_uri writer "$db")"
    mh_export MH_PG_API_URI "$(stack_pg_uri api "$db")"
    mh_export MH_REDIS_HOST 127.0.0.1
    mh_export MH_REDIS_PORT "$MH_REDIS_PORT"
    mh_export MH_REDIS_URL "redis://127.0.0.1:$MH_REDIS_PORT"
    mh_export MH_REDIS_ADMIN_PASSWORD_FILE "$STACK_SECRETS/redis-admin.pw"
    mh_export MH_REDIS_INGEST_PASSWORD_FILE "$STACK_SECRETS/redis-ingest.pw"
    mh_export MH_REDIS_WRITER_PASSWORD_FILE "$STACK_SECRETS/redis-writer.pw"
}

stack_print_status() {
    local rc=0
    if [[ -z "$MH_PG_PORT" ]]; then
        printf 'stack %s: not created\n' "$STACK_DIR"
        return 3
    fi
    printf 'stack %s\n' "$STACK_DIR"
    if stack_pg_running; then
        if stack_pg_answers; then
            printf '  postgres: running, 127.0.0.1:%s, pid %s\n' "$MH_PG_PORT" "$(stack_pg_pid)"
        else
            printf '  postgres: running but not answering, 127.0.0.1:%s\n' "$MH_PG_PORT"
            rc=3
        fi
    else
        printf '  postgres: stopped (port %s)\n' "$MH_PG_PORT"
        rc=3
    fi
    if stack_redis_running; then
        if stack_redis_answers; then
            printf '  redis:    running, 127.0.0.1:%s, pid %s, appendfsync %s\n' \
                "$MH_REDIS_PORT" "$(stack_redis_pid)" "$MH_REDIS_FSYNC"
        else
            printf '  redis:    running but not answering, 127.0.0.1:%s\n' "$MH_REDIS_PORT"
            rc=3
        fi
    else
        printf '  redis:    stopped (port %s)\n' "$MH_REDIS_PORT"
        rc=3
    fi
    return "$rc"
}
