-- People API: erasing one's own account (DELETE /v1/me) and self-registration
-- (POST /v1/accounts). The API role can neither see other accounts nor create or delete any,
-- so each is one SECURITY DEFINER function that does exactly that one thing.

-- Readings reach the writer through Redis, possibly long after ingest accepted them, and
-- `readings` has no foreign key to `sensors` (per-row checks would cost the writer dearly). So
-- the writer stores only readings of sensors that still exist: those of an erased account
-- that were still queued are dropped instead of coming back as orphans. It needs to see which
-- sensors exist for that, and nothing more.
GRANT SELECT (sid) ON sensors TO meterhub_writer;
CREATE POLICY writer_live_sensors ON sensors FOR SELECT TO meterhub_writer USING (true);

-- Erases the account bound to the transaction (api_account()), never one named by a
-- parameter: every row of it, in every table. Another account's rows change only where they
-- point at this one: grants it received are deleted, and the actor of its own changes in
-- another owner's audit trail becomes NULL (audit_log.actor_id ON DELETE SET NULL).
--
-- Ingest notices the deleted devices at its next directory refresh, once this commits.
-- Revoking them here first would change nothing anybody sees before the commit: meterhub-api
-- revokes them in a transaction of its own before it calls this, so that ingest refuses them
-- while the erase runs.
--
-- The writer check above reads `sensors` in the writer's own snapshot, so a writer statement
-- that began before this transaction commits could still see the sensors and insert their
-- readings after this deleted them. Hence two passes over the readings: the bulk first,
-- without blocking anyone; then, holding a lock on `readings` that waits for the writers'
-- open transactions to end and keeps new ones out until this one commits, whatever they added
-- meanwhile, the rollups and the sensors. A writer statement that waited for the lock takes
-- its snapshot after this commit, sees the sensors gone, and drops their readings. The lock
-- holds the writers back (never ingest, nor readers) for the short second pass only.
CREATE FUNCTION api_erase_account() RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    acc  bigint := api_account();
    sids bigint[];
BEGIN
    IF acc IS NULL THEN
        RAISE EXCEPTION 'api_erase_account: no account bound' USING ERRCODE = '42501';
    END IF;
    SELECT coalesce(array_agg(sid), '{}') INTO sids FROM sensors WHERE account_id = acc;

    DELETE FROM readings WHERE sensor = ANY (sids);
    LOCK TABLE readings IN SHARE ROW EXCLUSIVE MODE;
    -- Each statement from here on sees what the writers committed before the lock.
    SELECT coalesce(array_agg(sid), '{}') INTO sids FROM sensors WHERE account_id = acc;
    DELETE FROM readings WHERE sensor = ANY (sids);
    DELETE FROM readings_hourly WHERE sensor = ANY (sids);
    DELETE FROM readings_daily WHERE sensor = ANY (sids);

    DELETE FROM audit_log WHERE account_id = acc;
    DELETE FROM sensor_grants WHERE account_id = acc OR grantee_id = acc;
    DELETE FROM sensor_sharing WHERE account_id = acc;
    DELETE FROM sensors WHERE account_id = acc;
    DELETE FROM devices WHERE account_id = acc;
    DELETE FROM api_tokens WHERE account_id = acc;
    DELETE FROM accounts WHERE id = acc;
END $$;

-- Creates an account with a password hash made by the API (common/password.h). Returns its
-- id and name, or no row when the name is taken. Whether anyone may call it is the API's
-- decision (api.self_registration).
CREATE FUNCTION api_register_account(p_name text, p_password_hash text)
    RETURNS TABLE (id bigint, name text)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        INSERT INTO accounts AS a (name, password_hash) VALUES (p_name, p_password_hash)
        ON CONFLICT (name) DO NOTHING
        RETURNING a.id, a.name
    $$;

REVOKE EXECUTE ON FUNCTION api_erase_account(), api_register_account(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_erase_account(), api_register_account(text, text) TO meterhub_api;
