#!/usr/bin/env python3
"""A scripted model behind an OpenAI-compatible API, for trying Ballast without a model.

POST /v1/chat/completions answers the way a tool-calling model does: from the messages it is
sent, with tool calls or a final answer. It plays a support agent for the orders service:

- a request naming an order (A1001) and asking for a refund: look the order up, then refund
  the amount the lookup returned, then answer with the refund's id;
- a request naming an order otherwise: look it up, then say its status;
- anything else: ask which order is meant.

It decides from the conversation alone (the tool results Ballast feeds back as `tool`
messages), never from state of its own, as a real model would. Python standard library only.

    python3 model_server.py --port 8421      # then base_url = "http://127.0.0.1:8421/v1"
"""

import argparse
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ORDER_ID = re.compile(r"\b[A-Z]\d{3,}\b")
MAX_BODY = 4 * 1024 * 1024


def tool_results(messages):
    """(tool, arguments, result) of every tool call answered in `messages`, in order."""
    asked = {}
    out = []
    for m in messages:
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            try:
                args = json.loads(fn.get("arguments") or "{}")
            except ValueError:
                args = {}
            asked[call.get("id")] = (fn.get("name"), args)
        if m.get("role") == "tool" and m.get("tool_call_id") in asked:
            name, args = asked[m["tool_call_id"]]
            try:
                result = json.loads(m.get("content") or "null")
            except ValueError:
                result = {"error": m.get("content")}
            out.append((name, args, result))
    return out


def decide(messages):
    """The next step: ("calls", [(tool, args)]) or ("answer", text)."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last_user is None:
        return ("answer", "How can I help?")
    request = messages[last_user].get("content") or ""
    this_turn = tool_results(messages[last_user + 1:])
    earlier = tool_results(messages[:last_user])
    # The order: named in the request, else the last one looked up earlier in the session.
    named = ORDER_ID.findall(request)
    order = named[0] if named else next(
        (r.get("order_id") for t, _, r in reversed(earlier)
         if t == "lookup_order" and isinstance(r, dict) and r.get("order_id")), None)
    if order is None:
        return ("answer", "Which order do you mean? Please give its number, e.g. A1001.")
    lookup = next((r for t, a, r in reversed(this_turn + earlier)
                   if t == "lookup_order" and a.get("order_id") == order), None)
    if lookup is None:
        return ("calls", [("lookup_order", {"order_id": order})])
    if not isinstance(lookup, dict) or "amount_cents" not in lookup:
        return ("answer", f"I could not find order {order}.")
    if "refund" in request.lower():
        refund = next((r for t, _, r in this_turn if t == "issue_refund"), None)
        if refund is None:
            return ("calls", [("issue_refund", {"order_id": order,
                                                "amount_cents": lookup["amount_cents"]})])
        if not isinstance(refund, dict) or "refund_id" not in refund:
            return ("answer", f"I could not refund order {order}; a colleague will follow up.")
        cents = refund.get("amount_cents", lookup["amount_cents"])
        return ("answer", f"I have refunded {cents / 100:.2f} for order {order} "
                          f"(refund {refund['refund_id']}). Sorry it arrived broken.")
    return ("answer", f"Order {order} is {lookup.get('status', 'unknown')}.")


class Model:
    """Numbers each completion so a trace shows which answer came from which request."""

    def __init__(self):
        self.lock = threading.Lock()
        self.served = 0

    def complete(self, body):
        with self.lock:
            self.served += 1
            n = self.served
        kind, said = decide(body.get("messages") or [])
        if kind == "calls":
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{n}_{i}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}
                for i, (name, args) in enumerate(said)]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": said}
            finish = "stop"
        return {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "model": body.get("model") or "quickstart-scripted",
            "system_fingerprint": "fp_quickstart",
            "choices": [{"index": 0, "finish_reason": finish, "message": message}],
            "usage": {"prompt_tokens": 200, "completion_tokens": 30, "total_tokens": 230},
        }


def handler(model):
    class Handler(BaseHTTPRequestHandler):
        def send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                self.send(200, {"object": "list", "data": [
                    {"id": "quickstart-scripted", "object": "model", "owned_by": "quickstart"}]})
            else:
                self.send(404, {"error": {"message": "not found"}})

        def do_POST(self):
            if self.path.rstrip("/") != "/v1/chat/completions":
                self.send(404, {"error": {"message": "not found"}})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send(413, {"error": {"message": "request too large"}})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self.send(400, {"error": {"message": "the body is not JSON"}})
                return
            self.send(200, model.complete(body))

        def log_message(self, fmt, *args):
            sys.stderr.write("model: " + (fmt % args) + "\n")

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8421)
    p.add_argument("--host", default="127.0.0.1")
    a = p.parse_args()
    server = ThreadingHTTPServer((a.host, a.port), handler(Model()))
    print(f"model: listening on http://{a.host}:{server.server_port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
