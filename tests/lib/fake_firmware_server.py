#!/usr/bin/env python3
"""A stand-in for what a meter talks to, for the careful meter's tests (meterhub-sim).

Serves, over TLS on 127.0.0.1 (client certificates asked for and verified against the device
CA, so each request is tied to its device id):
  POST /device/<id>    heartbeats: records them; answers {"time", "upgrade"} with an offer of
                       the configured release while the heartbeat says remote_upgrade true and
                       the device has not yet reported on that release (the offer rule's 1 and
                       6, as meterhub-ingest applies them)
  POST /sensor/<id>    readings: 200 {}
  GET  /firmware/<id>  the image, honestly or as a broken or hostile server would (mode)
  GET  /v1/firmware    the public log, as meterhub-api pages it (after, limit)
  GET  /healthz        200, for the test to know it is up

It plays what meterhub-ingest and meterhub-api do not do themselves: a compromised or broken
server. Every request is appended as a JSON line to the records file, for the test to check.

usage: fake_firmware_server.py CONFIG.json
CONFIG: {"port", "cert", "key", "client_ca", "records",
         "releases": [{"manifest": FILE, "signature": FILE, "image": FILE}, ...],  (log order)
         "offer": INDEX, "unlogged": BOOL (the offered release is not in GET /v1/firmware),
         "late": BOOL (it appears there only from the second GET on),
         "mode": "honest" | "longer" | "chunked-endless" | "close-endless" | "ignore-range"
                 | "short" | "chunked-unterminated" (the image, then no last chunk)
                 | "drop-once" (cut the first download after "drop_after" bytes)}
"""

import base64
import hashlib
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Endless modes stop after this much: a meter that did not stop on its own fails its test
# anyway, and the server must not run forever.
ENDLESS_LIMIT = 8 << 20

CONF = {}
LOCK = threading.Lock()
STATE = {"reported": set(), "log_gets": 0, "dropped": False}


def record(obj):
    with LOCK:
        with open(CONF["records"], "a", encoding="utf-8") as f:
            f.write(json.dumps(obj) + "\n")


def load_releases():
    prev = "0" * 64
    out = []
    for seq, r in enumerate(CONF["releases"], start=1):
        manifest = open(r["manifest"], "rb").read()
        sig_b64 = open(r["signature"], "rb").read().strip().decode()
        msha = hashlib.sha256(manifest).hexdigest()
        text = "meterhub-release-log/1\n%d\n%s\n%s\n%s\n" % (seq, prev, msha, sig_b64)
        entry = hashlib.sha256(text.encode()).hexdigest()
        m = json.loads(manifest)
        out.append({
            "release": msha[:32], "version": m["version"], "hardware": m["hardware"],
            "size": m["size"], "image_sha256": m["sha256"], "manifest_sha256": msha,
            "manifest": base64.b64encode(manifest).decode(), "signature": sig_b64,
            "key_id": m["key_id"], "key_fingerprint": "0" * 64, "issued": m["issued"],
            "expires": m["expires"], "notes": m["notes"],
            "published_at": "2026-11-26T12:00:00Z",
            "log": {"seq": seq, "prev": prev, "hash": entry},
            "_image": r["image"],
        })
        prev = entry
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def device(self):
        cert = self.connection.getpeercert() or {}
        for rdn in cert.get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    return v
        return None

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if n > 0 else b""
        if self.path.startswith("/sensor/"):
            self.send_json(200, {})
            return
        if not self.path.startswith("/device/"):
            self.send_json(404, {"error": "not_found"})
            return
        hb = json.loads(body)
        dev = self.device()
        report = hb.get("upgrade_report")
        record({"kind": "heartbeat", "device": dev, "firmware_version": hb.get("firmware_version"),
                "remote_upgrade": hb.get("remote_upgrade"), "report": report})
        offered = RELEASES[CONF["offer"]]
        if report is not None:
            with LOCK:
                STATE["reported"].add((dev, report.get("release")))
        offer = None
        with LOCK:
            done = (dev, offered["release"]) in STATE["reported"]
        if hb.get("remote_upgrade") is True and not done:
            offer = {"release": offered["release"], "manifest": offered["manifest"],
                     "signature": offered["signature"], "log": offered["log"],
                     "url": "/firmware/" + offered["release"]}
        self.send_json(200, {"time": int(time.time()), "upgrade": offer})

    def do_GET(self):
        if self.path == "/healthz":
            self.send_json(200, {})
        elif self.path.startswith("/v1/firmware"):
            self.log_page()
        elif self.path.startswith("/firmware/"):
            self.firmware()
        else:
            self.send_json(404, {"error": "not_found"})

    def log_page(self):
        with LOCK:
            STATE["log_gets"] += 1
            gets = STATE["log_gets"]
        query = dict(p.split("=", 1) for p in self.path.partition("?")[2].split("&") if "=" in p)
        after = int(query.get("after", "0"))
        limit = int(query.get("limit", "100"))
        entries = list(RELEASES)
        hide = CONF.get("unlogged") or (CONF.get("late") and gets == 1)
        if hide:
            entries = [e for i, e in enumerate(entries) if i != CONF["offer"]]
        record({"kind": "log", "after": after, "entries": len(entries)})
        page = [e for e in entries if e["log"]["seq"] > after][:limit]
        page = [{k: v for k, v in e.items() if not k.startswith("_")} for e in page]
        head = entries[-1]["log"] if entries else None
        more = page and head and page[-1]["log"]["seq"] < head["seq"]
        self.send_json(200, {"releases": page,
                             "log_head": {"seq": head["seq"], "hash": head["hash"]} if head else None,
                             "next_after": page[-1]["log"]["seq"] if more else None})

    def firmware(self):
        dev = self.device()
        rng = self.headers.get("Range")
        record({"kind": "download", "device": dev, "range": rng})
        rel = next((r for r in RELEASES if "/firmware/" + r["release"] == self.path), None)
        if rel is None:
            self.send_json(403, {"error": "not_offered"})
            return
        image = open(rel["_image"], "rb").read()
        mode = CONF.get("mode", "honest")
        first = 0
        if rng and rng.startswith("bytes=") and rng.endswith("-") and mode != "ignore-range":
            first = int(rng[6:-1])
        if mode == "chunked-endless":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            block = image + b"\0" * 4096
            try:
                while sent < ENDLESS_LIMIT:
                    self.wfile.write(b"%x\r\n" % len(block) + block + b"\r\n")
                    sent += len(block)
            except OSError:
                pass
            self.close_connection = True
            return
        if mode == "chunked-unterminated":
            # The whole image, chunked, then the connection goes before the last chunk.
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n" % len(image) + image + b"\r\n")
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "close-endless":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                self.wfile.write(image)
                sent = 0
                while sent < ENDLESS_LIMIT:
                    self.wfile.write(b"\0" * 65536)
                    sent += 65536
            except OSError:
                pass
            self.close_connection = True
            return
        if mode == "longer":
            body = image + b"\0" * 100
        elif mode == "short":
            body = image[:-100]
        else:
            body = image
        body = body[first:]
        self.send_response(206 if first > 0 else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if first > 0:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (first, len(image) - 1, len(image)))
        self.end_headers()
        with LOCK:
            drop = mode == "drop-once" and not STATE["dropped"]
            STATE["dropped"] = STATE["dropped"] or drop
        if drop:
            # The network fails mid-body: the connection goes, the response stays unfinished.
            self.wfile.write(body[:CONF["drop_after"]])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


def main():
    global CONF, RELEASES
    CONF = json.load(open(sys.argv[1], encoding="utf-8"))
    RELEASES = load_releases()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(CONF["cert"], CONF["key"])
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(CONF["client_ca"])
    srv = ThreadingHTTPServer(("127.0.0.1", CONF["port"]), Handler)
    srv.daemon_threads = True
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
