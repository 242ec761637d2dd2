#!/usr/bin/env bash
#
# The TLS wall: no client certificate, a certificate from another CA, an expired certificate,
# old protocol versions and weak ciphers are refused in the handshake; a revoked device is
# refused within 5 s of `meterhub-admin device revoke` and its open keep-alive connection is
# closed, while other devices carry on.
set -euo pipefail
source "$MH_SRC/tests/lib/testlib.sh"
source "$MH_SRC/tests/lib/ingest_helpers.sh"

t_init ingest_tls
t_start_ingest
t_start_writer

dev="$(t_device acme 2)"
other="$(t_device acme 2)"
gauge="$(t_sensor "$dev" 1)"
now=$(date +%s)
body="{\"measurements\":[[$now,1]]}"
JSON=(-H 'Content-Type: application/json')

t_eq "a good device is accepted" 200 "$(t_curl "$dev" "/sensor/$gauge" "${JSON[@]}" --data-binary "$body")"

t_eq "no client certificate: no HTTP answer" 000 \
    "$(t_curl "" "/sensor/$gauge" "${JSON[@]}" --data-binary "$body")"
foreign="$(t_foreign_device)"
t_eq "certificate from another CA: no HTTP answer" 000 \
    "$(t_curl "$foreign" "/sensor/$gauge" "${JSON[@]}" --data-binary "$body")"

expired="$T_WORK/expired"
mkdir -p "$expired"
t_admin device add --account acme --sensors 1 --days 1 --not-before-days-ago 10 --out "$expired" \
    >"$expired/device.json"
t_eq "expired certificate: no HTTP answer" 000 \
    "$(t_curl "$expired" "/sensor/$gauge" "${JSON[@]}" --data-binary "$body")"

s_client() {
    openssl s_client -connect "127.0.0.1:$T_INGEST_PORT" -cert "$dev/device.crt" \
        -key "$dev/device.key" -CAfile "$T_PKI/ca.crt" "$@" </dev/null >/dev/null 2>&1
}
t_ok "TLS 1.2 with an ECDHE AEAD suite is accepted" s_client -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256
t_ok "TLS 1.3 is accepted" s_client -tls1_3
t_fails "TLS 1.1 is refused" s_client -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'
t_fails "a CBC suite is refused" s_client -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA
t_fails "static RSA key exchange is refused" s_client -tls1_2 -cipher AES128-GCM-SHA256

t_like "missing certificates are counted" '^[1-9]' \
    "$(t_metric ingest 'meterhub_ingest_tls_handshake_failures_total{reason="certificate_required"}')"
t_like "unknown CAs are counted" '^[1-9]' \
    "$(t_metric ingest 'meterhub_ingest_tls_handshake_failures_total{reason="unknown_ca"}')"
t_like "expired certificates are counted" '^[1-9]' \
    "$(t_metric ingest 'meterhub_ingest_tls_handshake_failures_total{reason="certificate_expired"}')"

# TLS sessions are resumable (a meter that reconnects skips the full handshake)... A TLS 1.3
# session ticket comes after the handshake: make a request so the client is still there for it.
req="POST /sensor/$gauge HTTP/1.1\r\nHost: meterhub\r\nContent-Type: application/json\r\nContent-Length: ${#body}\r\n\r\n$body"
{ printf "$req"; sleep 1; } | timeout 10 openssl s_client -connect "127.0.0.1:$T_INGEST_PORT" \
    -cert "$dev/device.crt" -key "$dev/device.key" -CAfile "$T_PKI/ca.crt" -tls1_3 \
    -sess_out "$T_WORK/session" >/dev/null 2>&1 || true
resumed="$(printf '' | openssl s_client -connect "127.0.0.1:$T_INGEST_PORT" -cert "$dev/device.crt" \
    -key "$dev/device.key" -CAfile "$T_PKI/ca.crt" -tls1_3 -sess_in "$T_WORK/session" 2>/dev/null |
    grep -E '^(New|Reused),' || true)"
t_like "a TLS 1.3 session is resumed" '^Reused' "$resumed"

# Revocation: hold a keep-alive connection open, revoke, and time how long until it closes.
req2="POST /sensor/$gauge HTTP/1.1\r\nHost: meterhub\r\nContent-Type: application/json\r\nContent-Length: ${#body}\r\n\r\n$body"
{ printf "$req2"; sleep 20; } | timeout 25 openssl s_client -quiet -no_ign_eof \
    -connect "127.0.0.1:$T_INGEST_PORT" -cert "$dev/device.crt" -key "$dev/device.key" \
    -CAfile "$T_PKI/ca.crt" >"$T_WORK/held.out" 2>/dev/null &
held=$!
t_ok "the held connection got its answer" t_wait_until 10 grep -q '^HTTP/1.1 200' "$T_WORK/held.out"
t0=$(date +%s%N)
t_admin device revoke "$(device_id "$dev")" >/dev/null
refused() {
    [[ "$(t_curl "$dev" "/sensor/$gauge" "${JSON[@]}" --data-binary "$body")" == 403 ]]
}
t_ok "the revoked device is refused within 5 s" t_wait_until 5 refused
t_like "with error device_revoked" '"error":"device_revoked"' "$(cat "$T_BODY")"
closed() { ! kill -0 "$held" 2>/dev/null; }
t_ok "its open keep-alive connection is closed within 5 s" t_wait_until 5 closed
t1=$(date +%s%N)
printf 'revocation took effect in %d ms\n' $(((t1 - t0) / 1000000))
kill "$held" 2>/dev/null || true
wait "$held" 2>/dev/null || true
# ...but a resumed session of a revoked device is refused like a full handshake: the device
# is looked up on every connection, whatever the handshake.
reply="$({ printf "$req"; sleep 2; } | timeout 10 openssl s_client -quiet -no_ign_eof \
    -connect "127.0.0.1:$T_INGEST_PORT" -cert "$dev/device.crt" -key "$dev/device.key" \
    -CAfile "$T_PKI/ca.crt" -tls1_3 -sess_in "$T_WORK/session" 2>/dev/null | head -1 |
    tr -d '\r' || true)"
t_eq "a resumed session of the revoked device gets 403" "HTTP/1.1 403 Forbidden" "$reply"
t_eq "another device of the same account is unaffected" 200 \
    "$(t_curl "$other" "/sensor/$(t_sensor "$other" 1)" "${JSON[@]}" --data-binary "$body")"
t_like "closed connections are counted" '^[1-9]' \
    "$(t_metric ingest meterhub_ingest_revoked_connections_closed_total)"

t_done
