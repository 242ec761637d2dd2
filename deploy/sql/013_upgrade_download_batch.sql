-- Many download checks in one call (docs/upgrade.md): when a rollout reaches a fleet within one
-- heartbeat period, its meters ask for the image within seconds of each other, and one
-- statement per request queued past ingest's deadline. Each element is decided exactly as
-- upg_download decides one; the rows come back tagged with the element's position (1-based).
-- p_batch: [{"did": 12, "release": "...", "first": 0, "last": null}, ...].
--
-- Both batch functions take their elements in device order (then arrival order), so that two
-- batches running at once lock the offers they change in the same order and cannot deadlock.
CREATE FUNCTION upg_downloads(p_batch jsonb)
    RETURNS TABLE (ord bigint, status text, image_sha256 text, size bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT x.value AS v, x.ordinality AS n
               FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS x
              ORDER BY (x.value->>'did')::bigint, x.ordinality LOOP
        RETURN QUERY
            SELECT e.n, d.status, d.image_sha256, d.size
              FROM upg_download((e.v->>'did')::bigint, e.v->>'release',
                                (e.v->>'first')::bigint, (e.v->>'last')::bigint) d;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION upg_heartbeats(p_batch jsonb)
    RETURNS TABLE (ord bigint, status text, release_id text, manifest bytea, signature bytea,
                   log_seq bigint, log_prev text, log_hash text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT x.value AS v, x.ordinality AS n
               FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS x
              ORDER BY (x.value->>'did')::bigint, x.ordinality LOOP
        RETURN QUERY
            SELECT e.n, h.status, h.release_id, h.manifest, h.signature, h.log_seq, h.log_prev,
                   h.log_hash
              FROM upg_heartbeat((e.v->>'did')::bigint, e.v->>'version',
                                 (e.v->>'remote')::boolean, e.v->>'release', e.v->>'outcome',
                                 e.v->>'reason') h;
    END LOOP;
END $$;

REVOKE EXECUTE ON FUNCTION upg_downloads(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION upg_downloads(jsonb) TO meterhub_ingest;
