"""Issue 10, finding 8: a 400 MB chunked POST to the webhook URL of a component that does
not exist went to disk twice and grew the web process by 107 MB; with Content-Length set,
the 413 came only after the whole upload. Through the real web tier: the front refuses
such bodies before reading them, and no process grows."""

import select
import socket
import time
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db(transaction=True)

HUGE = 400 * 1024 * 1024
CHUNK = b"x" * 65536


def rss_kib(pids) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def tier_pids(web_tier) -> list[int]:
    pids = []
    for proc in web_tier.procs.values():
        pids.append(proc.pid)
        pids.extend(int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split())
    return pids


def post_huge(base: str, path: str, *, chunked: bool) -> tuple[bytes, int]:
    """Start a POST whose body would be 400 MB and keep sending until an answer comes.
    Returns the answer's first bytes and how many body bytes were sent before it."""
    host, port = base.split("//", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {HUGE}"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{length}\r\n\r\n".encode())
    sent, deadline = 0, time.monotonic() + 60
    try:
        while sent < HUGE and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                break
            if writable:
                data = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK
                sent += sock.send(data)
        answer = sock.recv(4096)
    except (BrokenPipeError, ConnectionResetError):
        answer = sock.recv(4096)
    finally:
        sock.close()
    return answer, sent


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_huge_anonymous_body_is_refused_before_it_is_read(web_tier, chunked):
    before = rss_kib(tier_pids(web_tier))
    answer, sent = post_huge(web_tier, "/hooks/no-such/component/", chunked=chunked)
    status = answer.split(b"\r\n", 1)[0]
    assert status == (b"HTTP/1.1 411 Length Required" if chunked else b"HTTP/1.1 413 Request Entity Too Large"), answer
    assert sent < settings.DATA_UPLOAD_MAX_MEMORY_SIZE, f"{sent} bytes went out before the answer"
    grown = rss_kib(tier_pids(web_tier)) - before
    assert grown < 10 * 1024, f"the web tier grew by {grown} KiB"


def test_a_body_within_the_fronts_limit_but_over_the_webhooks_is_refused_before_it_is_read(web_tier):
    import requests

    body = b"{" + b" " * (10 * 1024 * 1024 + 10) + b"}"
    response = requests.post(f"{web_tier}/hooks/no-such/component/", data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert "payload larger than 10 MiB" in response.json()["detail"]
