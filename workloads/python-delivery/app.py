# delivery: a mesh workload in Python, standard library only. It holds no key and speaks plain
# HTTP on loopback; its sidecar does the mTLS. It learns who called from the sidecar's
# x-forwarded-client-cert header (Envoy's format) and calls inventory through the sidecar's
# outbound listener (MESH_UPSTREAM_INVENTORY), where it is seen as delivery.
#   GET  /healthz              -> {"service": "delivery", "caller": "<who called>"}
#   POST /ship {"orderId", "sku"} -> 201 {"shipped": true, ..., "caller", "available"}
import json
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INVENTORY = os.environ.get("MESH_UPSTREAM_INVENTORY", "")
MAX_BODY = 64 * 1024


def caller_of(xfcc):
    """The caller's SPIFFE ID from the one XFCC element the sidecar sets (URI=...)."""
    if not xfcc:
        return None
    for part in xfcc.split(";"):
        key, _, value = part.partition("=")
        if key.strip() == "URI":
            return value.strip().strip('"')
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "delivery"

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def caller(self):
        uri = caller_of(self.headers.get("x-forwarded-client-cert"))
        return uri.rsplit("/", 1)[-1] if uri else None

    def do_GET(self):
        if self.path == "/healthz":
            return self.answer(200, {"service": "delivery", "caller": self.caller()})
        self.answer(404, {"error": "not_found", "path": self.path[:200]})

    def do_POST(self):
        if self.path != "/ship":
            return self.answer(404, {"error": "not_found", "path": self.path[:200]})
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            return self.answer(413, {"error": "too_large"})
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            order_id, sku = str(body["orderId"]), str(body["sku"])
        except (ValueError, KeyError, TypeError):
            return self.answer(400, {"error": "bad_request", "message": 'expected {"orderId": "...", "sku": "..."}'})
        # Through the sidecar: plain HTTP on loopback, mTLS as delivery from there on.
        url = f"{INVENTORY}/stock/{urllib.parse.quote(sku, safe='')}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                stock = json.load(r)
        except urllib.error.HTTPError as e:
            detail = e.read(4096).decode("utf-8", "replace")
            return self.answer(502 if e.code >= 500 or e.code == 403 else 409, {"error": "inventory_refused", "status": e.code, "detail": detail})
        except OSError as e:
            return self.answer(502, {"error": "inventory_unreachable", "reason": str(e)[:200]})
        if stock.get("available", 0) < 1:
            return self.answer(409, {"error": "out_of_stock", "sku": sku})
        self.answer(201, {"shipped": True, "orderId": order_id, "sku": sku, "caller": self.caller(), "available": stock["available"]})

    def log_message(self, fmt, *args):
        pass  # the sidecar logs every request


def main():
    port = int(os.environ.get("MESH_APP_PORT", "0"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(json.dumps({"event": "app.listening", "service": "delivery", "port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass


main()
