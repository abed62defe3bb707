"""A tiny HTTP service: the sample component that `make up` builds and deploys."""

import json
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8080"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/healthz":
            body = b"ok\n"
            content_type = "text/plain"
        else:
            body = (
                json.dumps(
                    {
                        "greeting": os.environ.get("GREETING", "Hello"),
                        "host": socket.gethostname(),
                        "path": self.path,
                    }
                ).encode()
                + b"\n"
            )
            content_type = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stdout.write(f"{self.address_string()} {fmt % args}\n")
        sys.stdout.flush()


def main():
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    signal.signal(signal.SIGTERM, lambda *_: (server.shutdown(), sys.exit(0)))
    print(f"listening on :{PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
