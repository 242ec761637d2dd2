-- People API, devices: an owner may revoke their own device (DELETE /v1/devices/{id}). The
-- devices_change trigger moves change_seq, so ingest drops the device within a refresh.
GRANT UPDATE (status, revoked_at) ON devices TO meterhub_api;
GRANT USAGE ON SEQUENCE directory_seq TO meterhub_api;
