-- People API, firmware upgrades (docs/upgrade.md, docs/api.md): an owner reads what their
-- device may be offered, sets its consent and approves releases; anyone reads the published
-- releases and their public log. Everything under the row-level security model of 003_api.sql:
-- the bound account's rows only, the public tables read-only.

-- Devices: what the API shows and changes of 010_upgrade.sql's columns. 008_api_device_config.sql
-- grants SELECT column by column, so new columns are granted here by name.
GRANT SELECT (hardware, upgrade_consent) ON devices TO meterhub_api;
GRANT UPDATE (upgrade_consent) ON devices TO meterhub_api;
GRANT INSERT (hardware) ON devices TO meterhub_api;

-- Releases, their keys and the log are public by design (anyone may check what a meter is
-- offered): readable with no account bound, never writable by the API. They hold no account
-- data, hence no row-level security.
GRANT SELECT ON releases, release_keys, release_log TO meterhub_api;

-- Offers are written by ingest (upg_heartbeat, upg_download); the owner reads their own.
ALTER TABLE upgrade_offers ENABLE ROW LEVEL SECURITY;
CREATE POLICY api_own_read ON upgrade_offers FOR SELECT TO meterhub_api
    USING (account_id = api_account());
GRANT SELECT ON upgrade_offers TO meterhub_api;

-- Approvals: the owner reads and adds their own, for their own devices only (under row-level
-- security the subquery sees only the bound account's devices). Never changed nor deleted:
-- an approval is history, and consent (off) is the way to say no again.
ALTER TABLE upgrade_approvals ENABLE ROW LEVEL SECURITY;
CREATE POLICY api_own_read ON upgrade_approvals FOR SELECT TO meterhub_api
    USING (account_id = api_account());
CREATE POLICY api_own_add ON upgrade_approvals FOR INSERT TO meterhub_api
    WITH CHECK (account_id = api_account()
                AND EXISTS (SELECT 1 FROM devices d WHERE d.did = upgrade_approvals.did));
GRANT SELECT ON upgrade_approvals TO meterhub_api;
GRANT INSERT (did, release_id, account_id) ON upgrade_approvals TO meterhub_api;

-- The rollouts stay the operators': the API role reads neither rollouts nor rollout_devices,
-- and upg_candidates (which does) is not granted to it. Which release a device qualifies for
-- is answered, for the bound account's own device only, by this wrapper: the newest candidate
-- (rules 3 to 6 of the offer rule, for the firmware_version of its last heartbeat), whether its
-- consent allows it (rule 2) and whether its owner approved it. No row for another account's
-- device, an unknown or revoked one, an incomparable version, or when nothing qualifies.
CREATE FUNCTION api_upgrade_candidate(p_device text)
    RETURNS TABLE (release_id text, consented boolean, approved boolean)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
#variable_conflict use_column
BEGIN
    IF api_account() IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT c.release_id, c.consented,
           EXISTS (SELECT 1 FROM upgrade_approvals a
                   WHERE a.did = d.did AND a.release_id = c.release_id)
      FROM devices d
     CROSS JOIN LATERAL upg_candidates(d.did, upg_version_key(d.firmware_version)) c
      JOIN releases r ON r.id = c.release_id
     WHERE d.id = p_device AND d.account_id = api_account()
     ORDER BY r.version_key DESC, r.id
     LIMIT 1;
END $$;
REVOKE EXECUTE ON FUNCTION api_upgrade_candidate(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api_upgrade_candidate(text) TO meterhub_api;

-- The audit trail: the API writes only the owner's own decisions (sharing, consent, approvals);
-- offers, downloads and outcomes are ingest's (upg_audit), so the API cannot forge them, not
-- even into its own account's trail. An entry naming a device names one of the account's.
CREATE POLICY api_own_kinds ON audit_log AS RESTRICTIVE FOR INSERT TO meterhub_api
    WITH CHECK (kind IN ('sharing_changed', 'upgrade_consent_changed', 'firmware_approved')
                AND (device_id IS NULL
                     OR EXISTS (SELECT 1 FROM devices d WHERE d.id = audit_log.device_id)));
