-- People API, readings: meterhub_api reads readings and rollups only of sensors it can see,
-- and it sees only the bound account's sensors (003_api.sql). The writer, which stores every
-- account's readings by design, keeps full access.
ALTER TABLE readings ENABLE ROW LEVEL SECURITY;
ALTER TABLE readings_hourly ENABLE ROW LEVEL SECURITY;
ALTER TABLE readings_daily ENABLE ROW LEVEL SECURITY;

CREATE POLICY writer_all ON readings TO meterhub_writer USING (true) WITH CHECK (true);
CREATE POLICY writer_all ON readings_hourly TO meterhub_writer USING (true) WITH CHECK (true);
CREATE POLICY writer_all ON readings_daily TO meterhub_writer USING (true) WITH CHECK (true);

CREATE POLICY api_own ON readings FOR SELECT TO meterhub_api
    USING (EXISTS (SELECT 1 FROM sensors s WHERE s.sid = readings.sensor));
CREATE POLICY api_own ON readings_hourly FOR SELECT TO meterhub_api
    USING (EXISTS (SELECT 1 FROM sensors s WHERE s.sid = readings_hourly.sensor));
CREATE POLICY api_own ON readings_daily FOR SELECT TO meterhub_api
    USING (EXISTS (SELECT 1 FROM sensors s WHERE s.sid = readings_daily.sensor));

GRANT SELECT ON readings, readings_hourly, readings_daily TO meterhub_api;
