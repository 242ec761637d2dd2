-- People API, first part: passwords, bearer tokens, and the API's role under row-level
-- security. Tenant isolation is enforced twice: in meterhub-api's C code, and here, by
-- policies that only show meterhub_api the rows of the account bound to the transaction
-- (SELECT set_config('meterhub.account', '<id>', true), see api_account()).

-- The account's password as common/password.h encodes it ("$scrypt$..."); NULL: the account
-- cannot log in (operators may create accounts without one).
ALTER TABLE accounts ADD COLUMN password_hash text
    CHECK (password_hash IS NULL OR password_hash LIKE '$scrypt$%');

-- Bearer tokens. Only a SHA-256 of the token is stored: the token itself is shown once.
CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    account_id   bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (name ~ '^[[:print:]]{1,64}$'),
    scope        text NOT NULL CHECK (scope IN ('read', 'manage')),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz CHECK (expires_at IS NULL OR expires_at > created_at),
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_account_idx ON api_tokens (account_id);

-- The account bound to the current transaction, or NULL (then every policy hides everything).
CREATE FUNCTION api_account() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('meterhub.account', true), '')::bigint $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'meterhub_api') THEN
        CREATE ROLE meterhub_api LOGIN NOBYPASSRLS;
    END IF;
END $$;
ALTER ROLE meterhub_api NOBYPASSRLS NOSUPERUSER NOCREATEDB NOCREATEROLE;
GRANT USAGE ON SCHEMA public TO meterhub_api;

-- Row-level security on every table that holds account data. The owner (the migrating admin)
-- is not subject to it: meterhub-admin is the operator's tool. The daemons that work across
-- accounts by design (ingest maps certificates, writer stores readings) get explicit policies.
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE sensors ENABLE ROW LEVEL SECURITY;

CREATE POLICY api_own ON accounts TO meterhub_api
    USING (id = api_account()) WITH CHECK (id = api_account());
CREATE POLICY api_own ON api_tokens TO meterhub_api
    USING (account_id = api_account()) WITH CHECK (account_id = api_account());
CREATE POLICY api_own ON devices TO meterhub_api
    USING (account_id = api_account()) WITH CHECK (account_id = api_account());
CREATE POLICY api_own ON sensors TO meterhub_api
    USING (account_id = api_account()) WITH CHECK (account_id = api_account());

CREATE POLICY ingest_directory ON devices FOR SELECT TO meterhub_ingest USING (true);
CREATE POLICY ingest_directory ON sensors FOR SELECT TO meterhub_ingest USING (true);
CREATE POLICY writer_heartbeats ON devices FOR SELECT TO meterhub_writer USING (true);
CREATE POLICY writer_heartbeats_update ON devices FOR UPDATE TO meterhub_writer
    USING (true) WITH CHECK (true);

-- What meterhub_api may touch, under the policies above. Never password_hash directly.
GRANT SELECT (id, name, created_at) ON accounts TO meterhub_api;
GRANT SELECT (id, account_id, name, scope, created_at, expires_at, revoked_at) ON api_tokens
    TO meterhub_api;
GRANT INSERT (account_id, name, scope, token_hash, expires_at) ON api_tokens TO meterhub_api;
GRANT UPDATE (revoked_at) ON api_tokens TO meterhub_api;
GRANT USAGE ON SEQUENCE api_tokens_id_seq TO meterhub_api;
GRANT SELECT ON devices, sensors TO meterhub_api;
GRANT EXECUTE ON FUNCTION api_account() TO meterhub_api;

-- The two lookups that must happen before an account is bound: the password check of a login
-- and the token check of every request. They run as the owner (SECURITY DEFINER) and answer
-- only what the check needs.
CREATE FUNCTION api_login(p_name text)
    RETURNS TABLE (account_id bigint, password_hash text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT id, password_hash FROM accounts WHERE name = p_name $$;

CREATE FUNCTION api_token_auth(p_hash bytea)
    RETURNS TABLE (token_id bigint, account_id bigint, scope text, expires_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT id, account_id, scope, expires_at FROM api_tokens
        WHERE token_hash = p_hash AND revoked_at IS NULL
          AND (expires_at IS NULL OR expires_at > now())
    $$;

REVOKE EXECUTE ON FUNCTION api_login(text), api_token_auth(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_login(text), api_token_auth(bytea) TO meterhub_api;
