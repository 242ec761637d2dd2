-- Many heartbeats in one call (docs/upgrade.md): ingest sends upg_heartbeats the heartbeats
-- that arrived while its previous call ran, so that a busy node pays one round trip and one
-- statement per batch instead of one per heartbeat. Each element is decided exactly as
-- upg_heartbeat decides one; the rows come back tagged with the element's position (1-based).
-- p_batch: [{"did": 12, "version": "1.0.0", "remote": true, "release": null, "outcome": null,
-- "reason": null}, ...].
CREATE FUNCTION upg_heartbeats(p_batch jsonb)
    RETURNS TABLE (ord bigint, status text, release_id text, manifest bytea, signature bytea,
                   log_seq bigint, log_prev text, log_hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT x.value AS v, x.ordinality AS n
               FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS x LOOP
        RETURN QUERY
            SELECT e.n, h.status, h.release_id, h.manifest, h.signature, h.log_seq, h.log_prev,
                   h.log_hash
              FROM upg_heartbeat((e.v->>'did')::bigint, e.v->>'version',
                                 (e.v->>'remote')::boolean, e.v->>'release', e.v->>'outcome',
                                 e.v->>'reason') h;
    END LOOP;
END $$;

REVOKE EXECUTE ON FUNCTION upg_heartbeats(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION upg_heartbeats(jsonb) TO meterhub_ingest;
