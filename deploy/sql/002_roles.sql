-- One PostgreSQL role per daemon, each with only what it needs. The roles are created without
-- a password; the operator (or deploy/lib/stack.sh) sets one with ALTER ROLE ... PASSWORD.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'meterhub_ingest') THEN
        CREATE ROLE meterhub_ingest LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'meterhub_writer') THEN
        CREATE ROLE meterhub_writer LOGIN;
    END IF;
END $$;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ensure_reading_partitions(timestamptz, timestamptz) FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO meterhub_ingest, meterhub_writer;

-- ingest only maps certificates to devices and sensor ids to their owners.
GRANT SELECT (did, id, account_id, cert_fingerprint, status, change_seq) ON devices
    TO meterhub_ingest;
GRANT SELECT (sid, id, device_did, account_id, type, change_seq) ON sensors TO meterhub_ingest;

-- writer stores readings and rollups and records heartbeats.
GRANT SELECT, INSERT ON readings TO meterhub_writer;
GRANT SELECT, INSERT, UPDATE ON readings_hourly, readings_daily TO meterhub_writer;
GRANT SELECT (did, id, last_seen) ON devices TO meterhub_writer;
GRANT UPDATE (last_seen, firmware_version, remote_upgrade) ON devices TO meterhub_writer;
GRANT EXECUTE ON FUNCTION ensure_reading_partitions(timestamptz, timestamptz) TO meterhub_writer;
