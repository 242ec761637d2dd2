#!/usr/bin/env bash
#
# meterhub-admin: bulk provisioning of a fleet (files, rows and certificates agree, and a bulk
# device can post at once), listing, revocation, and clear errors for bad use.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"

t_init admin_provisioning
t_start_ingest

out="$T_WORK/fleet"
t0=$(date +%s%N)
t_admin device add --account fleet --sensors 4 --count 1000 --out "$out" >"$T_WORK/fleet.json" \
    2>"$T_WORK/fleet.err"
t1=$(date +%s%N)
printf 'provisioned 1000 devices with 4 sensors each in %d ms\n' $(((t1 - t0) / 1000000))
t_eq "one JSON line per device" 1000 "$(wc -l <"$T_WORK/fleet.json")"
t_eq "1000 device rows" 1000 "$(t_psql "SELECT count(*) FROM devices d JOIN accounts a
                                        ON a.id = d.account_id WHERE a.name = 'fleet'")"
t_eq "4000 sensor rows" 4000 "$(t_psql 'SELECT count(*) FROM sensors')"
t_eq "sensor kinds cycle as documented" "electricity counter Wh,gas counter L,water counter L,electricity gauge W" \
    "$(t_psql "SELECT string_agg(kind || ' ' || type || ' ' || unit, ',' ORDER BY sid)
               FROM (SELECT * FROM sensors ORDER BY sid LIMIT 4) s")"
t_eq "a folder per device" 1000 "$(find "$out" -mindepth 1 -maxdepth 1 -type d | wc -l)"
t_eq "no staging leftovers" 0 "$(find "$out" -maxdepth 1 -name '.mh-staging*' | wc -l)"

first="$(sed -n 1p "$T_WORK/fleet.json" | grep -o '"device": *"[0-9a-f]*"' | grep -o '[0-9a-f]\{32\}')"
dev="$out/$first"
t_eq "private keys are mode 0600" 600 "$(stat -c %a "$dev/device.key")"
t_ok "the certificate chains to the device CA" \
    openssl verify -CAfile "$T_PKI/client-ca.crt" "$dev/device.crt"
t_like "the certificate names the device" "CN ?= ?$first" \
    "$(openssl x509 -in "$dev/device.crt" -noout -subject)"
fp="$(openssl x509 -in "$dev/device.crt" -outform DER | sha256sum | cut -c1-64)"
t_eq "the stored fingerprint is the certificate's" "$fp" \
    "$(t_psql "SELECT encode(cert_fingerprint, 'hex') FROM devices WHERE id = '$first'")"
sensor="$(sed -n 1p "$T_WORK/fleet.json" | grep -o '[0-9a-f]\{32\}' | sed -n 5p)"
t_eq "a bulk-provisioned device posts right away" 200 \
    "$(t_curl "$dev" "/sensor/$sensor" -H 'Content-Type: application/json' \
        --data-binary "{\"measurements\":[[$(date +%s),1.5]]}")"

t_eq "device list shows the fleet" 1000 "$(t_admin device list --account fleet | wc -l)"
t_like "revoke answers in JSON" '"status": *"revoked"' "$(t_admin device revoke "$first")"
t_eq "revoked in the database" revoked "$(t_psql "SELECT status FROM devices WHERE id = '$first'")"

rc=0
t_admin device revoke 0123456789abcdef0123456789abcdef >/dev/null 2>&1 || rc=$?
t_eq "revoking an unknown device fails with 1" 1 "$rc"
rc=0
t_admin device add --account fleet --sensors 2 --count 0 --out "$T_WORK/none" >/dev/null 2>&1 || rc=$?
t_eq "a zero count is a usage error (2)" 2 "$rc"
rc=0
t_admin frobnicate >/dev/null 2>&1 || rc=$?
t_eq "an unknown command is a usage error (2)" 2 "$rc"
rc=0
t_admin account add 'no spaces allowed' >/dev/null 2>&1 || rc=$?
t_eq "an invalid account name is refused" 1 "$rc"
t_eq "and not stored" 0 "$(t_psql "SELECT count(*) FROM accounts WHERE name LIKE 'no spaces%'")"
rc=0
t_admin account add fleet >/dev/null 2>&1 || rc=$?
t_eq "adding an existing account fails" 1 "$rc"
t_ok "unless --if-missing" t_admin account add fleet --if-missing

# Hardware: the default, another one given with --hardware, a malformed one refused.
t_eq "bulk devices are flm02 by default" "1000 flm02" \
    "$(t_psql "SELECT count(*) || ' ' || string_agg(DISTINCT hardware, ',') FROM devices")"
t_like "device list shows the hardware" '"hardware": "flm02"' \
    "$(t_admin device list --account fleet | sed -n 1p)"
json="$(t_admin device add --account hw --sensors 1 --count 3 --hardware flm03-b.v2 \
    --out "$T_WORK/hw")"
t_like "device add says which hardware" '"hardware": "flm03-b.v2"' "$(sed -n 1p <<<"$json")"
t_eq "--hardware is stored for every device" "3 flm03-b.v2" \
    "$(t_psql "SELECT count(*) || ' ' || string_agg(DISTINCT hardware, ',') FROM devices d
               JOIN accounts a ON a.id = d.account_id WHERE a.name = 'hw'")"
t_like "device list shows it" '"hardware": "flm03-b.v2"' "$(t_admin device list --account hw | sed -n 1p)"
rc=0
t_admin device add --account hw2 --hardware FLM03 --out "$T_WORK/hw2" >/dev/null 2>"$T_WORK/hw2.err" || rc=$?
t_eq "a malformed --hardware is a usage error (2)" 2 "$rc"
t_like "naming the rule" 'hardware: expected' "$(cat "$T_WORK/hw2.err")"
t_eq "and nothing is created" 0 "$(t_psql "SELECT count(*) FROM accounts WHERE name = 'hw2'")"
t_eq "nor any file" 0 "$(find "$T_WORK/hw2" -type f 2>/dev/null | wc -l)"

t_done
