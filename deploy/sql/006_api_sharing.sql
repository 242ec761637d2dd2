-- People API, sharing: who may see a sensor's data, at what detail, and the owner's audit
-- trail of every change. (Reads by others, under these rules, come with the next part.)

-- One row per sensor whose owner changed the default (private).
CREATE TABLE sensor_sharing (
    sensor_sid         bigint PRIMARY KEY REFERENCES sensors (sid) ON DELETE CASCADE,
    account_id         bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    visibility         text NOT NULL DEFAULT 'private'
                       CHECK (visibility IN ('private', 'shared', 'public')),
    public_resolution  text NOT NULL DEFAULT 'day' CHECK (public_resolution IN ('hour', 'day')),
    public_delay_hours integer NOT NULL DEFAULT 24 CHECK (public_delay_hours BETWEEN 1 AND 8760),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Grants of a shared sensor: the grantee sees nothing finer than the resolution.
CREATE TABLE sensor_grants (
    sensor_sid  bigint NOT NULL REFERENCES sensors (sid) ON DELETE CASCADE,
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE, -- the owner
    grantee_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    resolution  text NOT NULL
                CHECK (resolution IN ('raw', 'minute', '15min', 'hour', 'day', 'month')),
    PRIMARY KEY (sensor_sid, grantee_id),
    CHECK (grantee_id <> account_id)
);
CREATE INDEX sensor_grants_grantee_idx ON sensor_grants (grantee_id);

-- The owner's audit trail: sharing changes (before and after) and, later, foreign reads.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE, -- whose data
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    bigint REFERENCES accounts (id) ON DELETE SET NULL,
    kind        text NOT NULL CHECK (kind IN ('sharing_changed', 'foreign_read')),
    sensor_id   text NOT NULL,
    detail      jsonb NOT NULL
);
CREATE INDEX audit_log_account_idx ON audit_log (account_id, at);

ALTER TABLE sensor_sharing ENABLE ROW LEVEL SECURITY;
ALTER TABLE sensor_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY api_own ON sensor_sharing TO meterhub_api
    USING (account_id = api_account()) WITH CHECK (account_id = api_account());
CREATE POLICY api_own ON sensor_grants TO meterhub_api
    USING (account_id = api_account()) WITH CHECK (account_id = api_account());
-- The trail is append-only for the API: it may add and read the bound account's entries.
CREATE POLICY api_own_read ON audit_log FOR SELECT TO meterhub_api
    USING (account_id = api_account());
CREATE POLICY api_own_add ON audit_log FOR INSERT TO meterhub_api
    WITH CHECK (account_id = api_account());

GRANT SELECT, INSERT, UPDATE ON sensor_sharing TO meterhub_api;
GRANT SELECT, INSERT, DELETE ON sensor_grants TO meterhub_api;
GRANT SELECT, INSERT ON audit_log TO meterhub_api;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO meterhub_api;

-- Grants name accounts; other accounts are invisible to the API role, so names are resolved
-- by the owner of the schema, and only to ids.
CREATE FUNCTION api_account_id(p_name text) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT id FROM accounts WHERE name = p_name $$;
CREATE FUNCTION api_account_name(p_id bigint) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT name FROM accounts WHERE id = p_id $$;
REVOKE EXECUTE ON FUNCTION api_account_id(text), api_account_name(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_account_id(text), api_account_name(bigint) TO meterhub_api;
