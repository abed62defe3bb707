"""The web tier: one address (WEB_HOST:WEB_PORT) in front of two servers.

- Pages, the API and webhooks go to gunicorn's WEB_WORKERS processes running the WSGI
  application: plain Django, no thread hop per request, every core used.
- WebSockets (`/ws/`) and long waits (`?wait=1`, async views that hold no thread) go to
  the ASGI server, whose Channels layer in Redis carries log lines from any worker.

A small HAProxy, started by `manage.py up` beside the two servers, routes between them over
unix sockets in RUN_DIR (DATA_DIR/run, mode 0700). It is configured once and never reloaded.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from django.conf import settings


def wsgi_socket() -> Path:
    return settings.RUN_DIR / "wsgi.sock"


def asgi_socket() -> Path:
    return settings.RUN_DIR / "asgi.sock"


def _deny(status: int, detail: str, condition: str) -> str:
    """An HAProxy rule answering `status` with the API's error shape when `condition` holds."""
    body = json.dumps({"detail": detail, "errors": {}})
    return f"http-request deny deny_status {status} content-type application/json string '{body}' if {{ {condition} }}"


def config_text(*, bind: str, port: int, wsgi: Path, asgi: Path, max_body: int) -> str:
    return f"""\
# Written by manage.py up: the web tier's front (choreo_site/webfront.py).
global
    maxconn 4096

defaults
    mode http
    option forwardfor
    timeout connect 5s
    # A client has 30 s to send its request's headers, so a slow client cannot hold a connection.
    timeout http-request 30s
    timeout http-keep-alive 30s
    # ?wait=1 blocks for up to 300 s.
    timeout client 320s
    timeout server 320s
    # WebSockets: a live log may stay open for hours.
    timeout tunnel 8h

frontend web
    bind {bind}:{port}
    # Bodies are refused here, before a byte of them is read: one of unknown length, and one
    # larger than the largest any endpoint takes (each endpoint checks its own limit too).
    {_deny(411, "Send a Content-Length: bodies of unknown length are refused.", "req.hdr(transfer-encoding) -m found")}
    {_deny(413, f"The body is larger than {max_body} bytes.", f"req.hdr_val(content-length) gt {max_body}")}
    http-request set-header X-Forwarded-Proto http
    acl to_asgi path_beg /ws/
    acl to_asgi urlp(wait) -m found
    use_backend asgi if to_asgi
    default_backend wsgi

backend wsgi
    server wsgi unix@{wsgi}

backend asgi
    server asgi unix@{asgi}
"""


def write_config() -> Path:
    """Write the front's configuration for `manage.py up`; returns its path."""
    path = settings.RUN_DIR / "webfront.cfg"
    path.write_text(
        config_text(
            bind=settings.WEB_HOST,
            port=settings.WEB_PORT,
            wsgi=wsgi_socket(),
            asgi=asgi_socket(),
            max_body=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        )
    )
    return path


def commands() -> dict[str, list[str]]:
    """The web tier's processes by name: the front, the WSGI workers, the ASGI server."""
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        raise FileNotFoundError("The web front needs HAProxy: apt-get install haproxy")
    python = sys.executable
    return {
        "web-front": [haproxy, "-W", "-db", "-f", str(write_config())],
        "web": [
            *(python, "-m", "gunicorn", "--config", "python:choreo_site.gunicorn_conf"),
            *("--bind", f"unix:{wsgi_socket()}", "--workers", str(settings.WEB_WORKERS), "choreo_site.wsgi:application"),
        ],
        "web-async": [
            *(python, "-m", "daphne", "-u", str(asgi_socket())),
            *("--access-log", str(settings.DATA_DIR / "access.log"), "choreo_site.asgi:application"),
        ],
    }
