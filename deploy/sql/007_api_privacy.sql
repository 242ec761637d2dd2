-- People API, reads by others: a grantee of a shared sensor sees its data no finer than the
-- grant's resolution; anyone sees a public sensor's data no finer than its public resolution
-- and nothing newer than its delay. meterhub-api enforces this in C; the policies here are the
-- second wall, at the granularity PostgreSQL can see: which table (raw readings, hourly or
-- daily rollups) and, for public sensors, which buckets are old enough.

-- Which tables a grant of each resolution reads from: minute and 15-minute buckets are made
-- from raw readings, month buckets from daily rollups.
CREATE FUNCTION api_grant_reaches(p_resolution text, p_table text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT CASE p_table
            WHEN 'readings' THEN p_resolution IN ('raw', 'minute', '15min')
            WHEN 'readings_hourly' THEN p_resolution IN ('raw', 'minute', '15min', 'hour')
            WHEN 'readings_daily' THEN true
        END
    $$;

-- What the bound account (NULL: anonymous) may read of the sensor with this public id: one
-- row, or none (then the sensor is not found, as if it did not exist). access is 'owner',
-- 'grantee' or 'public'; finest the finest resolution allowed; not_after, for a public
-- sensor, the newest instant its data may describe.
CREATE FUNCTION api_sensor_access(p_id text)
    RETURNS TABLE (sid bigint, type text, unit text, kind text, access text, finest text,
                   not_after timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        RETURN QUERY
        SELECT s.sid, s.type, s.unit, s.kind,
               CASE WHEN s.account_id = api_account() THEN 'owner'
                    WHEN g.grantee_id IS NOT NULL THEN 'grantee' ELSE 'public' END,
               CASE WHEN s.account_id = api_account() THEN 'raw'
                    WHEN g.grantee_id IS NOT NULL THEN g.resolution
                    ELSE sh.public_resolution END,
               CASE WHEN s.account_id = api_account() OR g.grantee_id IS NOT NULL THEN NULL
                    ELSE now() - make_interval(hours => sh.public_delay_hours) END
        FROM sensors s
        LEFT JOIN sensor_sharing sh ON sh.sensor_sid = s.sid
        LEFT JOIN sensor_grants g ON g.sensor_sid = s.sid AND g.grantee_id = api_account()
                                 AND sh.visibility = 'shared'
        WHERE s.id = p_id
          AND (s.account_id = api_account() OR g.grantee_id IS NOT NULL
               OR sh.visibility = 'public');
    END $$;

-- Sensors of other accounts shared with the bound account whose grant reaches this table.
CREATE FUNCTION api_granted_sids(p_table text) RETURNS SETOF bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        IF api_account() IS NULL THEN
            RETURN;
        END IF;
        RETURN QUERY
        SELECT g.sensor_sid FROM sensor_grants g
        JOIN sensor_sharing sh ON sh.sensor_sid = g.sensor_sid AND sh.visibility = 'shared'
        WHERE g.grantee_id = api_account() AND api_grant_reaches(g.resolution, p_table);
    END $$;

-- Public sensors whose public resolution reaches this table (never raw readings).
CREATE FUNCTION api_public_sids(p_table text) RETURNS SETOF bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        RETURN QUERY
        SELECT sensor_sid FROM sensor_sharing
        WHERE visibility = 'public' AND p_table <> 'readings'
          AND (p_table = 'readings_daily' OR public_resolution = 'hour');
    END $$;

-- The newest instant a public sensor's data may describe, or NULL if it is not public.
CREATE FUNCTION api_public_not_after(p_sid bigint) RETURNS timestamptz
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        RETURN (SELECT now() - make_interval(hours => public_delay_hours) FROM sensor_sharing
                WHERE sensor_sid = p_sid AND visibility = 'public');
    END $$;

-- Each set is an uncorrelated subquery, evaluated once per query and hashed; the functions are
-- PL/pgSQL so that their own plans are cached for the session (an SQL function that cannot be
-- inlined, as SECURITY DEFINER ones cannot, is planned again on every call).
-- The owner's policies of 005, as uncorrelated subqueries too: a correlated EXISTS costs an
-- index probe of sensors for every row read.
ALTER POLICY api_own ON readings USING (sensor IN (SELECT s.sid FROM sensors s));
ALTER POLICY api_own ON readings_hourly USING (sensor IN (SELECT s.sid FROM sensors s));
ALTER POLICY api_own ON readings_daily USING (sensor IN (SELECT s.sid FROM sensors s));

CREATE POLICY api_shared ON readings FOR SELECT TO meterhub_api
    USING (sensor IN (SELECT api_granted_sids('readings')));
CREATE POLICY api_shared ON readings_hourly FOR SELECT TO meterhub_api
    USING (sensor IN (SELECT api_granted_sids('readings_hourly')));
CREATE POLICY api_shared ON readings_daily FOR SELECT TO meterhub_api
    USING (sensor IN (SELECT api_granted_sids('readings_daily')));
CREATE POLICY api_public ON readings_hourly FOR SELECT TO meterhub_api
    USING (sensor IN (SELECT api_public_sids('readings_hourly'))
           AND bucket + interval '1 hour' <= api_public_not_after(sensor));
CREATE POLICY api_public ON readings_daily FOR SELECT TO meterhub_api
    USING (sensor IN (SELECT api_public_sids('readings_daily'))
           AND bucket + interval '1 day' <= api_public_not_after(sensor));

-- The token check of every request (003_api.sql), for the same reason.
CREATE OR REPLACE FUNCTION api_token_auth(p_hash bytea)
    RETURNS TABLE (token_id bigint, account_id bigint, scope text, expires_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    BEGIN
        RETURN QUERY
        SELECT t.id, t.account_id, t.scope, t.expires_at FROM api_tokens t
        WHERE t.token_hash = p_hash AND t.revoked_at IS NULL
          AND (t.expires_at IS NULL OR t.expires_at > now());
    END $$;

-- Reads of an account's data by anyone else, per sensor, reader and UTC day: what the owner's
-- audit trail shows. reader_id 0 is an anonymous reader of a public sensor; a reader's
-- account may be erased later, so it is not a foreign key.
CREATE TABLE foreign_reads (
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE, -- the owner
    sensor_sid  bigint NOT NULL REFERENCES sensors (sid) ON DELETE CASCADE,
    sensor_id   text NOT NULL,
    reader_id   bigint NOT NULL,
    day         date NOT NULL,
    reads       bigint NOT NULL,
    points      bigint NOT NULL,
    first_at    timestamptz NOT NULL,
    last_at     timestamptz NOT NULL,
    PRIMARY KEY (sensor_sid, reader_id, day)
);
CREATE INDEX foreign_reads_account_idx ON foreign_reads (account_id, last_at);

ALTER TABLE foreign_reads ENABLE ROW LEVEL SECURITY;
CREATE POLICY api_own_read ON foreign_reads FOR SELECT TO meterhub_api
    USING (account_id = api_account());
GRANT SELECT ON foreign_reads TO meterhub_api;

-- Counts one read of p_points points of sensor p_sid by the bound account (or an anonymous
-- reader). The owner's own reads are not foreign and count nothing.
CREATE FUNCTION api_note_foreign_read(p_sid bigint, p_points bigint) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        INSERT INTO foreign_reads AS f (account_id, sensor_sid, sensor_id, reader_id, day,
                                        reads, points, first_at, last_at)
        SELECT s.account_id, s.sid, s.id, coalesce(api_account(), 0),
               (now() AT TIME ZONE 'UTC')::date, 1, p_points, now(), now()
        FROM sensors s
        WHERE s.sid = p_sid AND s.account_id IS DISTINCT FROM api_account()
        ON CONFLICT (sensor_sid, reader_id, day) DO UPDATE
            SET reads = f.reads + 1, points = f.points + excluded.points, last_at = now()
    $$;

REVOKE EXECUTE ON FUNCTION api_sensor_access(text), api_granted_sids(text),
    api_public_sids(text), api_public_not_after(bigint), api_note_foreign_read(bigint, bigint)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_sensor_access(text), api_granted_sids(text), api_public_sids(text),
    api_public_not_after(bigint), api_note_foreign_read(bigint, bigint), api_grant_reaches(text, text)
    TO meterhub_api;
