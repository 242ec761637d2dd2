-- Core schema: accounts, devices, sensors, readings and their rollups.
-- Forward-only. meterhub-admin migrate applies each file once, in order, in one transaction,
-- and records it in schema_migrations.

CREATE TABLE accounts (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every change that ingest must notice (a new device or sensor, a revocation) draws a new
-- number from this sequence; ingest polls max(change_seq) and reloads when it moves.
CREATE SEQUENCE directory_seq;

CREATE TABLE devices (
    did              bigserial PRIMARY KEY,
    id               text NOT NULL UNIQUE CHECK (id ~ '^[0-9a-f]{32}$'),
    account_id       bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    cert_fingerprint bytea NOT NULL UNIQUE CHECK (length(cert_fingerprint) = 32),
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    firmware_version text,
    last_seen        timestamptz,
    remote_upgrade   boolean,
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz,
    change_seq       bigint NOT NULL DEFAULT nextval('directory_seq')
);
CREATE INDEX devices_account_idx ON devices (account_id);
CREATE INDEX devices_change_idx ON devices (change_seq);

CREATE TABLE sensors (
    sid         bigserial PRIMARY KEY,
    id          text NOT NULL UNIQUE CHECK (id ~ '^[0-9a-f]{32}$'),
    device_did  bigint NOT NULL REFERENCES devices (did) ON DELETE CASCADE,
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('electricity', 'gas', 'water')),
    type        text NOT NULL CHECK (type IN ('counter', 'gauge')),
    unit        text NOT NULL CHECK (unit IN ('Wh', 'W', 'L', 'L/min', 'm3')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    change_seq  bigint NOT NULL DEFAULT nextval('directory_seq')
);
CREATE INDEX sensors_device_idx ON sensors (device_did);
CREATE INDEX sensors_change_idx ON sensors (change_seq);

-- Only changes that matter to ingest move change_seq: heartbeats update last_seen and firmware
-- on every post and must not make every ingest node reload its directory.
CREATE FUNCTION bump_change_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_seq := nextval('directory_seq');
    RETURN NEW;
END $$;

CREATE TRIGGER devices_change BEFORE UPDATE ON devices FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.cert_fingerprint IS DISTINCT FROM NEW.cert_fingerprint
          OR OLD.account_id IS DISTINCT FROM NEW.account_id)
    EXECUTE FUNCTION bump_change_seq();
CREATE TRIGGER sensors_change BEFORE UPDATE ON sensors FOR EACH ROW
    WHEN (OLD.device_did IS DISTINCT FROM NEW.device_did OR OLD.type IS DISTINCT FROM NEW.type)
    EXECUTE FUNCTION bump_change_seq();

-- Raw readings. (sensor, ts) is the primary key, so a retried batch is a no-op.
-- Partitioned by month; readings outside the created partitions land in the default one.
CREATE TABLE readings (
    sensor  bigint NOT NULL,
    ts      timestamptz NOT NULL,
    value   double precision NOT NULL,
    PRIMARY KEY (sensor, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE readings_default PARTITION OF readings DEFAULT;

-- Creates the monthly partitions covering [from_ts, to_ts). Idempotent.
CREATE FUNCTION ensure_reading_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    m       timestamptz := date_trunc('month', from_ts, 'UTC');
    created integer := 0;
    name    text;
BEGIN
    WHILE m < to_ts LOOP
        name := format('readings_%s', to_char(m AT TIME ZONE 'UTC', 'YYYYMM'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
                           name, m, m + interval '1 month');
            created := created + 1;
        END IF;
        m := m + interval '1 month';
    END LOOP;
    RETURN created;
END $$;

SELECT ensure_reading_partitions(now() - interval '13 months', now() + interval '3 months');

-- Rollups, maintained in the writer's transaction from the rows it actually inserted, so a
-- duplicate reading never counts twice. Buckets are UTC hours and days.
CREATE TABLE readings_hourly (
    sensor      bigint NOT NULL,
    bucket      timestamptz NOT NULL,
    n           integer NOT NULL,
    sum         double precision NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    first_ts    timestamptz NOT NULL,
    first_value double precision NOT NULL,
    last_ts     timestamptz NOT NULL,
    last_value  double precision NOT NULL,
    PRIMARY KEY (sensor, bucket)
);
CREATE TABLE readings_daily (LIKE readings_hourly INCLUDING ALL);
