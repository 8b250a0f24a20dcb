#!/usr/bin/env python3
"""A small orders service: the HTTP tools of the quickstart (catalog.json) call it.

    GET  /orders/{id}   the order: status, amount in cents, the customer's e-mail address
    POST /refunds       {"order_id", "amount_cents"}: refunds once per Idempotency-Key
    POST /refunds/reversals  {"refund_id"}: undoes a refund (what `ballast reverse` calls)
    GET  /refunds       every refund issued, for looking at what really happened

A refund retried with the same Idempotency-Key (Ballast sends the call's key, the same on every
attempt) returns the first refund instead of issuing a second. Python standard library only.

    python3 orders_service.py --port 8422
"""

import argparse
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ORDERS = {
    "A1001": {"status": "delivered", "amount_cents": 4250, "item": "ceramic teapot",
              "email": "dana.smith@example.com"},
    "A1002": {"status": "shipped", "amount_cents": 1999, "item": "tea towels",
              "email": "lee.chen@example.com"},
    # Over 100.00: the quickstart's policies ask a person to confirm its refund.
    "A1003": {"status": "delivered", "amount_cents": 18900, "item": "espresso machine",
              "email": "sam.okafor@example.com"},
    # Over 500.00: never refunded by the agent.
    "A1004": {"status": "delivered", "amount_cents": 72000, "item": "standing desk",
              "email": "kim.novak@example.com"},
}
ORDER_PATH = re.compile(r"^/orders/([A-Za-z0-9-]{1,32})$")
MAX_BODY = 64 * 1024


class Shop:
    def __init__(self):
        self.lock = threading.Lock()
        self.refunds = []      # every refund issued, in order
        self.by_key = {}       # Idempotency-Key -> refund

    def refund(self, key, order_id, amount):
        order = ORDERS.get(order_id)
        if order is None:
            return 404, {"error": f"no order {order_id}"}
        if not isinstance(amount, int) or not 0 < amount <= order["amount_cents"]:
            return 422, {"error": f"amount_cents must be between 1 and {order['amount_cents']}"}
        with self.lock:
            if key and key in self.by_key:
                return 200, self.by_key[key]
            refund = {"refund_id": f"rf-{len(self.refunds) + 1}", "order_id": order_id,
                      "amount_cents": amount, "status": "issued"}
            self.refunds.append(refund)
            if key:
                self.by_key[key] = refund
        print(f"orders: refund {refund['refund_id']} of {amount} cents for {order_id} "
              f"(key {key or '-'})", flush=True)
        return 200, refund

    def reverse(self, refund_id):
        with self.lock:
            refund = next((r for r in self.refunds if r["refund_id"] == refund_id), None)
            if refund is None:
                return 404, {"error": f"no refund {refund_id}"}
            refund["status"] = "reversed"
        print(f"orders: refund {refund_id} reversed", flush=True)
        return 200, {"refund_id": refund_id, "reversed": True}


def handler(shop):
    class Handler(BaseHTTPRequestHandler):
        def send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            m = ORDER_PATH.match(self.path)
            if m and m.group(1) in ORDERS:
                self.send(200, {"order_id": m.group(1), **ORDERS[m.group(1)]})
            elif m:
                self.send(404, {"error": f"no order {m.group(1)}"})
            elif self.path == "/refunds":
                with shop.lock:
                    self.send(200, {"refunds": list(shop.refunds)})
            else:
                self.send(404, {"error": "not found"})

        def do_POST(self):
            if self.path not in ("/refunds", "/refunds/reversals"):
                self.send(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send(413, {"error": "request too large"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self.send(400, {"error": "the body is not JSON"})
                return
            if not isinstance(body, dict):
                self.send(400, {"error": "the body must be a JSON object"})
                return
            if self.path == "/refunds/reversals":
                self.send(*shop.reverse(body.get("refund_id")))
                return
            key = self.headers.get("Idempotency-Key", "")
            self.send(*shop.refund(key, body.get("order_id"), body.get("amount_cents")))

        def log_message(self, fmt, *args):
            sys.stderr.write("orders: " + (fmt % args) + "\n")

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8422)
    p.add_argument("--host", default="127.0.0.1")
    a = p.parse_args()
    server = ThreadingHTTPServer((a.host, a.port), handler(Shop()))
    print(f"orders: listening on http://{a.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
