"""A hostile MCP tool server for tests/hostile_reads.rs: plain JSON-RPC, the standard library
only, so it runs on any python3.

    python3 flood_mcp.py                         # stdio
    python3 flood_mcp.py --http PORT [--sse]     # streamable HTTP at /mcp (JSON or SSE answers)

Two tools: `small` answers {"ok": true}; `huge` answers one result of FLOOD_BYTES bytes
(default 250 MB), written a MiB at a time so this process does not hold it. A client that stops
reading leaves it blocked on the write; it is killed or its connection closed.
"""

import json
import os
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FLOOD_BYTES = int(os.environ.get("FLOOD_BYTES", str(250 * 1000 * 1000)))
CHUNK = b"x" * (1 << 20)

TOOLS = [
    {
        "name": name,
        "description": f"The {name} tool.",
        "inputSchema": {"type": "object", "properties": {}},
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    }
    for name in ("small", "huge")
]


def result(request_id, value):
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def answer(message):
    """The answer to one message as a dict, "huge" for the flood, or None (a notification)."""
    method = message.get("method")
    request_id = message.get("id")
    if request_id is None:
        return None
    if method == "initialize":
        version = message.get("params", {}).get("protocolVersion", "2025-06-18")
        return result(request_id, {
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "flood", "version": "1"},
        })
    if method == "tools/list":
        return result(request_id, {"tools": TOOLS})
    if method == "ping":
        return result(request_id, {})
    if method == "tools/call":
        name = message.get("params", {}).get("name")
        if name == "huge":
            return "huge"
        if name == "small":
            return result(request_id, {
                "content": [{"type": "text", "text": json.dumps({"ok": True})}],
                "structuredContent": {"ok": True},
                "isError": False,
            })
    return {"jsonrpc": "2.0", "id": request_id,
            "error": {"code": -32601, "message": f"no method {method}"}}


def flood_parts(request_id):
    """The huge answer as (head, body size, tail): head + 'x' * size + tail is one message."""
    head = json.dumps({"jsonrpc": "2.0", "id": request_id}).encode()[:-1]
    head += b', "result": {"content": [{"type": "text", "text": "'
    tail = b'"}], "isError": false}}'
    return head, FLOOD_BYTES, tail


def write_flood(out, request_id, prefix=b"", suffix=b""):
    head, size, tail = flood_parts(request_id)
    out.write(prefix + head)
    left = size
    while left > 0:
        n = min(left, len(CHUNK))
        out.write(CHUNK[:n])
        left -= n
    out.write(tail + suffix)
    out.flush()


def stdio():
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        message = json.loads(line)
        reply = answer(message)
        if reply == "huge":
            write_flood(out, message["id"], suffix=b"\n")
        elif reply is not None:
            out.write(json.dumps(reply).encode() + b"\n")
            out.flush()


class Handler(BaseHTTPRequestHandler):
    sse = False

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_DELETE(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        message = json.loads(body)
        reply = answer(message)
        if reply is None:
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        if message.get("method") == "initialize":
            self.send_header("Mcp-Session-Id", uuid.uuid4().hex)
        try:
            if self.sse:
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                if reply == "huge":
                    write_flood(self.wfile, message["id"], b"event: message\ndata: ", b"\n\n")
                else:
                    data = json.dumps(reply).encode()
                    self.wfile.write(b"event: message\ndata: " + data + b"\n\n")
            else:
                self.send_header("Content-Type", "application/json")
                if reply == "huge":
                    head, size, tail = flood_parts(message["id"])
                    self.send_header("Content-Length", str(len(head) + size + len(tail)))
                    self.end_headers()
                    write_flood(self.wfile, message["id"])
                else:
                    data = json.dumps(reply).encode()
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


def main():
    args = sys.argv[1:]
    if "--http" in args:
        port = int(args[args.index("--http") + 1])
        Handler.sse = "--sse" in args
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        server.serve_forever()
    else:
        try:
            stdio()
        except (BrokenPipeError, ConnectionResetError):
            pass


if __name__ == "__main__":
    main()
