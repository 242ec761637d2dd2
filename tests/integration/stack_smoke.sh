#!/usr/bin/env bash
#
# The test stack and tests/lib/testlib.sh work: this test gets its own migrated database, the
# daemon roles have exactly the PostgreSQL rights deploy/sql/002_roles.sql gives them, and the
# Redis ACL users cannot run administrative or key-scanning commands nor touch keys outside
# the "mh" prefix.
set -euo pipefail
# shellcheck source=tests/lib/testlib.sh
source "$MH_SRC/tests/lib/testlib.sh"

t_init stack_smoke

# --- PostgreSQL ------------------------------------------------------------------------------
t_eq "the test has its own database" "$T_DB" "$(t_psql 'SELECT current_database()')"
for table in accounts devices sensors readings readings_hourly readings_daily schema_migrations; do
    t_eq "table $table exists" "$table" "$(t_psql "SELECT to_regclass('public.$table')")"
done
t_like "migrations are recorded" '^[1-9][0-9]*$' "$(t_psql 'SELECT count(*) FROM schema_migrations')"
t_ok "readings has monthly partitions" \
    test "$(t_psql "SELECT count(*) FROM pg_inherits WHERE inhparent = 'readings'::regclass")" -gt 1

t_ok "meterhub_ingest logs in with its passfile password" t_psql_as ingest 'SELECT 1'
t_ok "meterhub_ingest reads the device directory" \
    t_psql_as ingest 'SELECT did, id, account_id, cert_fingerprint, status, change_seq FROM devices'
t_fails "meterhub_ingest cannot INSERT into readings" \
    t_psql_as ingest "INSERT INTO readings (sensor, ts, value) VALUES (1, now(), 1)"
t_fails "meterhub_ingest cannot read readings" t_psql_as ingest 'SELECT count(*) FROM readings'
t_fails "meterhub_ingest cannot UPDATE devices" t_psql_as ingest "UPDATE devices SET status = 'active'"
t_fails "meterhub_ingest cannot create tables" t_psql_as ingest 'CREATE TABLE evil (x int)'
t_ok "meterhub_writer can INSERT readings" \
    t_psql_as writer "INSERT INTO readings (sensor, ts, value) VALUES (1, now(), 1)"
t_fails "meterhub_writer cannot DELETE readings" t_psql_as writer 'DELETE FROM readings'
t_fails "meterhub_writer cannot read accounts" t_psql_as writer 'SELECT * FROM accounts'

# --- Redis -----------------------------------------------------------------------------------
t_eq "default user answers" PONG "$(t_redis PING)"
t_eq "AOF is on" "appendonly yes" "$(t_redis CONFIG GET appendonly | paste -sd' ')"
t_eq "meterhub_ingest answers PING" PONG "$(t_redis_as ingest PING)"
t_like "meterhub_ingest cannot FLUSHALL" '^NOPERM' "$(t_redis_as ingest FLUSHALL 2>&1)"
t_like "meterhub_ingest cannot KEYS" '^NOPERM' "$(t_redis_as ingest KEYS '*' 2>&1)"
t_like "meterhub_ingest cannot CONFIG" '^NOPERM' "$(t_redis_as ingest CONFIG GET '*' 2>&1)"
t_like "meterhub_ingest cannot DEL" '^NOPERM' "$(t_redis_as ingest DEL "$T_PREFIX:x" 2>&1)"
t_like "meterhub_ingest XADDs under its prefix" '^[0-9]+-[0-9]+$' \
    "$(t_redis_as ingest XADD "$T_PREFIX:{0}:q" '*' e smoke 2>&1)"
t_like "meterhub_ingest cannot XADD outside mh*" '^NOPERM' \
    "$(t_redis_as ingest XADD "other:$T_PREFIX" '*' e smoke 2>&1)"
t_like "meterhub_writer cannot FLUSHALL" '^NOPERM' "$(t_redis_as writer FLUSHALL 2>&1)"
t_like "meterhub_writer cannot KEYS" '^NOPERM' "$(t_redis_as writer KEYS '*' 2>&1)"
t_eq "meterhub_writer reads the stream length" 1 "$(t_redis_as writer XLEN "$T_PREFIX:{0}:q")"

t_done
