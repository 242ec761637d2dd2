-- Firmware upgrades (docs/upgrade.md): releases and their public hash-chained log, rollouts,
-- owners' consent and approvals, offers and their outcomes, and the two functions through
-- which ingest decides offers and downloads. Nothing here can sign: the service holds public
-- keys only.

-- What a device is (set when it is registered) and what its owner allows. Consent is off
-- until the owner says otherwise.
ALTER TABLE devices
    ADD COLUMN hardware text NOT NULL DEFAULT 'flm02'
        CHECK (hardware ~ '^[a-z0-9][a-z0-9._-]{0,31}$'),
    ADD COLUMN upgrade_consent text NOT NULL DEFAULT 'off'
        CHECK (upgrade_consent IN ('off', 'ask', 'auto'));

-- "2.4.1" -> {2,4,1,0}; NULL for anything that is not 1 to 4 dot-separated numbers of at most
-- 9 digits, which is then never comparable, hence never offered anything.
CREATE FUNCTION upg_version_key(v text) RETURNS integer[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
    SELECT CASE WHEN v ~ '^[0-9]{1,9}(\.[0-9]{1,9}){0,3}$'
                THEN (string_to_array(v, '.')::integer[] || '{0,0,0}'::integer[])[1:4] END
$$;

-- The stable percent bucket of a device id: the first 4 bytes of SHA-256(id), big-endian,
-- modulo 10000 (basis points).
CREATE FUNCTION upg_bucket(p_id text) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
    SELECT (('x' || substr(encode(sha256(convert_to(p_id, 'UTF8')), 'hex'), 1, 8))::bit(32)::bigint
            % 10000)::integer
$$;

CREATE TABLE release_keys (
    key_id      text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
    public_key  bytea NOT NULL UNIQUE CHECK (length(public_key) = 32),
    fingerprint text NOT NULL UNIQUE CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    added_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (key_id = substr(fingerprint, 1, 16))
);

-- One row per published release. manifest and signature are the exact bytes the meter gets;
-- the other fields are parsed from the manifest at publish time (for queries: a meter trusts
-- only the manifest). log_* is the release's log entry as recorded at publish: the offer
-- carries it, and the meter checks it against the public log.
CREATE TABLE releases (
    id              text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
    manifest        bytea NOT NULL,
    manifest_sha256 text NOT NULL UNIQUE CHECK (manifest_sha256 ~ '^[0-9a-f]{64}$'),
    signature       bytea NOT NULL CHECK (length(signature) = 64),
    key_id          text NOT NULL REFERENCES release_keys (key_id),
    version         text NOT NULL,
    version_key     integer[] NOT NULL CHECK (cardinality(version_key) = 4),
    hardware        text NOT NULL CHECK (hardware ~ '^[a-z0-9][a-z0-9._-]{0,31}$'),
    size            bigint NOT NULL CHECK (size > 0),
    image_sha256    text NOT NULL CHECK (image_sha256 ~ '^[0-9a-f]{64}$'),
    notes           text NOT NULL DEFAULT '',
    issued_at       timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL CHECK (expires_at > issued_at),
    log_seq         bigint NOT NULL,
    log_prev        text NOT NULL CHECK (log_prev ~ '^[0-9a-f]{64}$'),
    log_hash        text NOT NULL CHECK (log_hash ~ '^[0-9a-f]{64}$'),
    published_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (hardware, version)
);

-- The public log. Append-only: an entry, once written, is what everybody has seen.
CREATE TABLE release_log (
    seq             bigint PRIMARY KEY CHECK (seq >= 1),
    release_id      text NOT NULL UNIQUE REFERENCES releases (id),
    manifest_sha256 text NOT NULL CHECK (manifest_sha256 ~ '^[0-9a-f]{64}$'),
    signature       bytea NOT NULL CHECK (length(signature) = 64),
    prev_hash       text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    entry_hash      text NOT NULL UNIQUE CHECK (entry_hash ~ '^[0-9a-f]{64}$'),
    published_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION release_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the release log is append-only';
END $$;
CREATE TRIGGER release_log_append_only BEFORE UPDATE OR DELETE ON release_log
    FOR EACH ROW EXECUTE FUNCTION release_log_append_only();
CREATE TRIGGER release_log_no_truncate BEFORE TRUNCATE ON release_log
    FOR EACH STATEMENT EXECUTE FUNCTION release_log_append_only();

CREATE TABLE rollouts (
    id          bigserial PRIMARY KEY,
    release_id  text NOT NULL REFERENCES releases (id),
    percent_bp  integer NOT NULL DEFAULT 10000 CHECK (percent_bp BETWEEN 0 AND 10000),
    has_list    boolean NOT NULL DEFAULT false,
    state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'aborted')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rollouts_active_idx ON rollouts (release_id) WHERE state = 'active';

CREATE TABLE rollout_devices (
    rollout_id  bigint NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    did         bigint NOT NULL REFERENCES devices (did) ON DELETE CASCADE,
    PRIMARY KEY (rollout_id, did)
);

CREATE TABLE upgrade_approvals (
    did         bigint NOT NULL REFERENCES devices (did) ON DELETE CASCADE,
    release_id  text NOT NULL REFERENCES releases (id),
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    approved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (did, release_id)
);

CREATE TABLE upgrade_offers (
    did           bigint NOT NULL REFERENCES devices (did) ON DELETE CASCADE,
    release_id    text NOT NULL REFERENCES releases (id),
    account_id    bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    rollout_id    bigint NOT NULL REFERENCES rollouts (id),
    state         text NOT NULL CHECK (state IN ('offered', 'withdrawn', 'downloaded',
                                                 'installed', 'failed', 'refused')),
    reason        text,
    offered_at    timestamptz NOT NULL DEFAULT now(),
    downloaded_at timestamptz,
    reported_at   timestamptz,
    changed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (did, release_id)
);
CREATE INDEX upgrade_offers_rollout_idx ON upgrade_offers (rollout_id, state);
CREATE INDEX upgrade_offers_account_idx ON upgrade_offers (account_id);

-- The audit trail learns about devices: firmware events name a device, not a sensor.
ALTER TABLE audit_log ALTER COLUMN sensor_id DROP NOT NULL;
ALTER TABLE audit_log ADD COLUMN device_id text;
ALTER TABLE audit_log DROP CONSTRAINT audit_log_kind_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_kind_check CHECK (kind IN (
    'sharing_changed', 'foreign_read', 'upgrade_consent_changed', 'firmware_approved',
    'firmware_offered', 'firmware_withdrawn', 'firmware_downloaded', 'firmware_installed',
    'firmware_failed', 'firmware_refused'));
ALTER TABLE audit_log ADD CONSTRAINT audit_log_subject_check
    CHECK (sensor_id IS NOT NULL OR device_id IS NOT NULL);

CREATE FUNCTION upg_audit(p_account bigint, p_kind text, p_device text, p_detail jsonb)
    RETURNS void LANGUAGE sql VOLATILE
    AS $$
    INSERT INTO audit_log (account_id, kind, device_id, detail)
    VALUES (p_account, p_kind, p_device, p_detail)
$$;

-- The releases device p_did qualifies for by rules 3 to 6 of the offer rule when it runs
-- p_vkey (rollout, hardware, newer, unexpired, not already failed or refused), newest first,
-- with whether its owner's consent allows each (rule 2). Rule 1 (the meter's own flag) is the
-- caller's. Empty for an unknown or revoked device and for an incomparable version.
CREATE FUNCTION upg_candidates(p_did bigint, p_vkey integer[])
    RETURNS TABLE (release_id text, rollout_id bigint, consented boolean)
    LANGUAGE sql STABLE
    AS $$
    SELECT DISTINCT ON (r.version_key, r.id) r.id, ro.id,
           d.upgrade_consent = 'auto'
           OR (d.upgrade_consent = 'ask'
               AND EXISTS (SELECT 1 FROM upgrade_approvals a
                           WHERE a.did = d.did AND a.release_id = r.id))
      FROM devices d
      JOIN releases r ON r.hardware = d.hardware
      JOIN rollouts ro ON ro.release_id = r.id AND ro.state = 'active'
     WHERE d.did = p_did AND d.status = 'active' AND p_vkey IS NOT NULL
       AND r.version_key > p_vkey
       AND r.expires_at > now()
       AND upg_bucket(d.id) < ro.percent_bp
       AND (NOT ro.has_list
            OR EXISTS (SELECT 1 FROM rollout_devices rd
                       WHERE rd.rollout_id = ro.id AND rd.did = d.did))
       AND NOT EXISTS (SELECT 1 FROM upgrade_offers o
                       WHERE o.did = d.did AND o.release_id = r.id
                         AND o.state IN ('failed', 'refused'))
     ORDER BY r.version_key DESC, r.id, ro.id
$$;

-- A heartbeat's upgrade business, in one transaction: record the meter's report (if any),
-- decide the offer, withdraw the offers the rule no longer gives, audit all of it.
--   status 'offer': the row carries the offer; 'none': no offer;
--   'not_offered': the report names a release never offered to this device (nothing done);
--   'unknown_device': no such active device (nothing done).
CREATE FUNCTION upg_heartbeat(p_did bigint, p_version text, p_remote boolean,
                              p_report_release text, p_outcome text, p_reason text)
    RETURNS TABLE (status text, release_id text, manifest bytea, signature bytea,
                   log_seq bigint, log_prev text, log_hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    dev          devices%ROWTYPE;
    off          upgrade_offers%ROWTYPE;
    cand_release text;
    cand_rollout bigint;
    rel          releases%ROWTYPE;
    w            record;
BEGIN
    SELECT * INTO dev FROM devices d WHERE d.did = p_did AND d.status = 'active';
    IF NOT FOUND THEN
        status := 'unknown_device';
        RETURN NEXT;
        RETURN;
    END IF;

    IF p_report_release IS NOT NULL THEN
        IF p_outcome NOT IN ('installed', 'failed', 'refused') THEN
            RAISE EXCEPTION 'bad outcome %', p_outcome;
        END IF;
        SELECT * INTO off FROM upgrade_offers o
         WHERE o.did = p_did AND o.release_id = p_report_release FOR UPDATE;
        IF NOT FOUND THEN
            status := 'not_offered';
            RETURN NEXT;
            RETURN;
        END IF;
        -- A meter repeats its report until a heartbeat is answered: record it once.
        IF off.state IS DISTINCT FROM p_outcome OR off.reason IS DISTINCT FROM p_reason THEN
            UPDATE upgrade_offers o
               SET state = p_outcome, reason = p_reason, reported_at = now(), changed_at = now()
             WHERE o.did = p_did AND o.release_id = p_report_release;
            SELECT * INTO rel FROM releases r WHERE r.id = p_report_release;
            PERFORM upg_audit(dev.account_id, 'firmware_' || p_outcome, dev.id,
                              jsonb_strip_nulls(jsonb_build_object(
                                  'release', rel.id, 'version', rel.version,
                                  'reason', p_reason, 'running', p_version)));
        END IF;
    END IF;

    IF p_remote THEN
        SELECT c.release_id, c.rollout_id INTO cand_release, cand_rollout
          FROM upg_candidates(p_did, upg_version_key(p_version)) c
         WHERE c.consented LIMIT 1;
    END IF;

    FOR w IN UPDATE upgrade_offers o SET state = 'withdrawn', changed_at = now()
              WHERE o.did = p_did AND o.state IN ('offered', 'downloaded')
                AND o.release_id IS DISTINCT FROM cand_release
              RETURNING o.release_id LOOP
        PERFORM upg_audit(dev.account_id, 'firmware_withdrawn', dev.id,
                          jsonb_build_object('release', w.release_id));
    END LOOP;

    IF cand_release IS NULL THEN
        status := 'none';
        RETURN NEXT;
        RETURN;
    END IF;

    SELECT * INTO rel FROM releases r WHERE r.id = cand_release;
    -- An offer already open is left alone (no row lock: a download check of the same device
    -- must not wait for this transaction); a withdrawn one is made again, and so is an
    -- installed one whose meter runs an older version again (reflashed by hand, say); a new
    -- one is inserted.
    UPDATE upgrade_offers o
       SET state = 'offered', rollout_id = cand_rollout, offered_at = now(), changed_at = now(),
           reason = NULL
     WHERE o.did = p_did AND o.release_id = rel.id AND o.state IN ('withdrawn', 'installed');
    IF NOT FOUND THEN
        INSERT INTO upgrade_offers (did, release_id, account_id, rollout_id, state)
        VALUES (p_did, rel.id, dev.account_id, cand_rollout, 'offered')
        ON CONFLICT (did, release_id) DO NOTHING;
    END IF;
    IF FOUND THEN
        PERFORM upg_audit(dev.account_id, 'firmware_offered', dev.id,
                          jsonb_build_object('release', rel.id, 'version', rel.version,
                                             'running', p_version, 'rollout', cand_rollout,
                                             'image_sha256', rel.image_sha256));
    END IF;

    status := 'offer';
    release_id := rel.id;
    manifest := rel.manifest;
    signature := rel.signature;
    log_seq := rel.log_seq;
    log_prev := rel.log_prev;
    log_hash := rel.log_hash;
    RETURN NEXT;
END $$;

-- May device p_did download release p_release now? 'ok' with the image's digest and size
-- while it holds an open offer of it and consent, rollout and expiry still allow it;
-- 'not_offered' otherwise. The response will carry bytes p_first to p_last of the image
-- (p_first NULL: a non-empty suffix; p_last NULL: to the end); one that reaches the last byte
-- marks the offer downloaded (audited once).
CREATE FUNCTION upg_download(p_did bigint, p_release text, p_first bigint, p_last bigint)
    RETURNS TABLE (status text, image_sha256 text, size bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    SELECT o.state, o.account_id, d.id AS device_id, rel.version, rel.image_sha256 AS digest,
           rel.size AS len
      INTO r
      FROM upgrade_offers o
      JOIN devices d ON d.did = o.did
      JOIN releases rel ON rel.id = o.release_id
      JOIN rollouts ro ON ro.id = o.rollout_id
     WHERE o.did = p_did AND o.release_id = p_release
       AND o.state IN ('offered', 'downloaded')
       AND d.status = 'active'
       AND ro.state = 'active'
       AND rel.expires_at > now()
       AND (d.upgrade_consent = 'auto'
            OR (d.upgrade_consent = 'ask'
                AND EXISTS (SELECT 1 FROM upgrade_approvals a
                            WHERE a.did = p_did AND a.release_id = p_release)));
    IF NOT FOUND THEN
        status := 'not_offered';
        RETURN NEXT;
        RETURN;
    END IF;
    -- Only the response that reaches the last byte writes (and audits), once: the others only
    -- read, and never wait for a heartbeat of the same device.
    IF r.state = 'offered' AND (p_first IS NULL OR p_first < r.len)
       AND (p_last IS NULL OR p_last >= r.len - 1) THEN
        UPDATE upgrade_offers o SET state = 'downloaded', downloaded_at = now(), changed_at = now()
         WHERE o.did = p_did AND o.release_id = p_release AND o.state = 'offered';
        IF FOUND THEN
            PERFORM upg_audit(r.account_id, 'firmware_downloaded', r.device_id,
                              jsonb_build_object('release', p_release, 'version', r.version,
                                                 'image_sha256', r.digest));
        END IF;
    END IF;
    status := 'ok';
    image_sha256 := r.digest;
    size := r.len;
    RETURN NEXT;
END $$;

REVOKE EXECUTE ON FUNCTION upg_audit(bigint, text, text, jsonb),
    upg_candidates(bigint, integer[]),
    upg_heartbeat(bigint, text, boolean, text, text, text),
    upg_download(bigint, text, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION upg_heartbeat(bigint, text, boolean, text, text, text),
    upg_download(bigint, text, bigint, bigint) TO meterhub_ingest;
