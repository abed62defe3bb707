"""The rollout's drain step (deployments.rollout._drain) against a real HAProxy and real
servers on loopback, without containers: fast enough to run for every mutant of it. The
whole story, through a rollout of real replicas, is test_rollout_steps'."""

import http.client
import http.server
import socketserver
import threading
import time

import pytest

from deployments.ingress.haproxy import slot_name
from deployments.models import Deployment
from deployments.rollout import _drain

HOST = "drain.development.shop.localhost"


class Lines(list):
    """What the drain writes to the rollout's log."""

    def line(self, text: str) -> None:
        self.append(text)


def slow_server(version: str):
    """Answers every request with its version after the number of seconds the request asks."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            time.sleep(float(self.headers.get("X-Delay") or 0))
            body = version.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def pool(ingress):
    """slot2 routed from HOST, with an old and a new server in it, as mid-rollout."""
    slot = slot_name(2)
    ingress.route_set(HOST, slot)
    servers = {}
    for version in ("old", "new"):
        server = slow_server(version)
        name = ingress.server_free(slot)
        ingress.server_add(slot, name, "127.0.0.1", server.server_address[1])
        assert ingress.wait_up(slot, name, timeout=10)
        servers[version] = (name, server)
    yield ingress, slot, servers
    for state in ingress.servers(slot):
        ingress.server_delete(slot, state.name)
    ingress.route_delete(HOST)
    for _, server in servers.values():
        server.shutdown()


def request_on_old(ingress, servers, delay: float) -> tuple[threading.Thread, dict]:
    """A slow request, sent until the old server has it in flight."""
    result: dict = {}

    def send():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", ingress.port, timeout=30)
            conn.request("GET", "/", headers={"Host": HOST, "X-Delay": str(delay)})
            response = conn.getresponse()
            result.update(status=response.status, body=response.read().decode())
        except (OSError, http.client.HTTPException) as exc:
            result.update(error=repr(exc))

    old_name = servers["old"][0]
    for _ in range(10):  # round robin: some go to the new server
        thread = threading.Thread(target=send)
        thread.start()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            sessions = {s.name: s.sessions for s in ingress.servers(slot_name(2))}
            if sessions.get(old_name):
                return thread, result
            if result:
                break
            time.sleep(0.02)
        thread.join()
        result.clear()
    raise AssertionError("no request reached the old server")


def old_deployment(servers) -> Deployment:
    return Deployment(replicas=[{"id": "x", "name": "old-replica", "address": "127.0.0.1", "server": servers["old"][0]}])


def test_the_drain_waits_for_the_request_in_flight_then_frees_the_server(pool, settings):
    ingress, slot, servers = pool
    settings.ROLLOUT_DRAIN_TIMEOUT = 20
    thread, result = request_on_old(ingress, servers, delay=1.5)
    lines = Lines()
    began = time.monotonic()

    _drain(ingress, slot, old_deployment(servers), lines)

    assert time.monotonic() - began >= 0.5  # it waited for the request
    thread.join(10)
    assert result == {"status": 200, "body": "old"}
    assert [s.name for s in ingress.servers(slot)] == [servers["new"][0]]
    assert lines == [f"==> Drain the old replicas ({servers['old'][0]}), at most 20s"]


def test_a_drained_server_takes_no_new_request(pool, settings):
    ingress, slot, servers = pool
    settings.ROLLOUT_DRAIN_TIMEOUT = 20
    thread, _ = request_on_old(ingress, servers, delay=1.5)
    draining = threading.Thread(target=_drain, args=(ingress, slot, old_deployment(servers), Lines()))
    draining.start()
    time.sleep(0.2)
    bodies = set()
    for _ in range(6):
        conn = http.client.HTTPConnection("127.0.0.1", ingress.port, timeout=10)
        conn.request("GET", "/", headers={"Host": HOST})
        bodies.add(conn.getresponse().read().decode())
        conn.close()
    draining.join(20)
    thread.join(10)
    assert bodies == {"new"}


def test_the_drain_gives_up_at_its_deadline_and_says_so(pool, settings):
    ingress, slot, servers = pool
    settings.ROLLOUT_DRAIN_TIMEOUT = 1
    thread, result = request_on_old(ingress, servers, delay=6)
    lines = Lines()
    began = time.monotonic()

    _drain(ingress, slot, old_deployment(servers), lines)

    assert 0.8 <= time.monotonic() - began < 4
    assert lines[-1] == f"{servers['old'][0]} still had requests in flight at the deadline"
    assert [s.name for s in ingress.servers(slot)] == [servers["new"][0]]
    thread.join(10)
    assert result != {"status": 200, "body": "old"}  # cut at the deadline, as the setting says (a GET is then retried)


def test_nothing_to_drain_when_the_old_deployment_has_no_server_in_the_pool(pool):
    ingress, slot, servers = pool
    lines = Lines()
    _drain(ingress, slot, Deployment(replicas=[{"id": "x", "name": "r", "address": "127.0.0.1"}]), lines)
    _drain(ingress, slot, Deployment(replicas=[{"id": "x", "name": "r", "address": "127.0.0.1", "server": "srv3"}]), lines)
    assert lines == []
    assert sorted(s.name for s in ingress.servers(slot)) == sorted(name for name, _ in servers.values())


def test_every_old_replica_is_drained_and_freed_and_named_in_the_log(pool, settings):
    ingress, slot, servers = pool
    settings.ROLLOUT_DRAIN_TIMEOUT = 20
    names = [servers["old"][0], servers["new"][0]]
    old = Deployment(replicas=[{"id": str(i), "name": f"r{i}", "address": "127.0.0.1", "server": name} for i, name in enumerate(names)])
    lines = Lines()

    _drain(ingress, slot, old, lines)

    assert lines == [f"==> Drain the old replicas ({names[0]}, {names[1]}), at most 20s"]
    assert list(ingress.servers(slot)) == []
