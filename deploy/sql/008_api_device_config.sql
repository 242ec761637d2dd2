-- People API, registering and configuring devices: an owner registers a device with its
-- sensors (POST /v1/devices), names it, places it no finer than about a kilometre and gives it
-- write-only secrets (PATCH /v1/devices/{id}), and names or corrects sensors
-- (PATCH /v1/sensors/{id}).

-- Names people give; NULL: none. Any characters but control characters (not [[:print:]],
-- which under the C locale would refuse every non-ASCII letter).
ALTER TABLE devices ADD COLUMN name text
    CHECK (char_length(name) BETWEEN 1 AND 64 AND name !~ '[[:cntrl:]]');
ALTER TABLE sensors ADD COLUMN name text
    CHECK (char_length(name) BETWEEN 1 AND 64 AND name !~ '[[:cntrl:]]');

-- Where the device is, in degrees. The types keep two decimals (0.01 degree, about 1 km):
-- whatever is written, PostgreSQL rounds it, so exact coordinates can never be stored, even by
-- a client that forgets to round.
ALTER TABLE devices
    ADD COLUMN location_lat numeric(4, 2) CHECK (location_lat BETWEEN -90 AND 90),
    ADD COLUMN location_lon numeric(5, 2) CHECK (location_lon BETWEEN -180 AND 180),
    ADD CONSTRAINT devices_location_whole CHECK ((location_lat IS NULL) = (location_lon IS NULL));

-- The device's configuration secrets (a Wi-Fi key...), a JSON object of name -> value.
-- Write-only for the API role: it may UPDATE the column but not SELECT it (below), so no
-- answer can ever carry a secret, whatever the C code does. secret_names holds the names,
-- which people may see; the API writes both in one statement.
ALTER TABLE devices
    ADD COLUMN secrets jsonb CHECK (secrets IS NULL OR jsonb_typeof(secrets) = 'object'),
    ADD COLUMN secret_names text[] NOT NULL DEFAULT '{}' CHECK (cardinality(secret_names) <= 16);

-- meterhub_api could SELECT every column of devices (003_api.sql). Now every column but
-- secrets: the table-wide grant goes and each column is granted by name, including any an
-- earlier migration added. A later migration that adds a column the API must read grants it.
REVOKE SELECT ON devices FROM meterhub_api;
DO $$
DECLARE
    col name;
BEGIN
    FOR col IN SELECT attname FROM pg_attribute
               WHERE attrelid = 'devices'::regclass AND attnum > 0 AND NOT attisdropped
                 AND attname <> 'secrets'
    LOOP
        EXECUTE format('GRANT SELECT (%I) ON devices TO meterhub_api', col);
    END LOOP;
END $$;

-- Registration and changes, under the api_own policies of 003_api.sql (WITH CHECK
-- account_id = api_account()). The devices_change and sensors_change triggers move change_seq
-- where ingest must notice (a new device or sensor, a sensor's type).
GRANT INSERT (id, account_id, cert_fingerprint, name) ON devices TO meterhub_api;
GRANT UPDATE (name, location_lat, location_lon, secrets, secret_names) ON devices
    TO meterhub_api;
GRANT INSERT (id, device_did, account_id, kind, type, unit, name) ON sensors TO meterhub_api;
GRANT UPDATE (kind, type, unit, name) ON sensors TO meterhub_api;
GRANT USAGE ON SEQUENCE devices_did_seq, sensors_sid_seq TO meterhub_api;

-- api_own checks a new sensor's account_id, not whose device it hangs on: a sensor of the
-- bound account on another account's device would pass it. This one closes that: under
-- row-level security the subquery sees only the bound account's devices.
CREATE POLICY api_own_device ON sensors AS RESTRICTIVE FOR INSERT TO meterhub_api
    WITH CHECK (EXISTS (SELECT 1 FROM devices d WHERE d.did = device_did));
