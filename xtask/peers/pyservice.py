"""A small Python service for `cargo xtask bench supervisor`: http.server with GET /health.

Started by each supervisor under test (and alone, for the start-to-healthy floor). The health
body carries the pid so the benchmark can tell a restarted process from the killed one.
Usage: python3 pyservice.py --port N
"""

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server naming)
        if self.path == "/health":
            body = json.dumps({"status": "ok", "service": "pyservice", "pid": os.getpid()}).encode()
            self.send_response(200)
        else:
            body = b'{"error": "not found"}'
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"pyservice listening on 127.0.0.1:{args.port} pid={os.getpid()}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
