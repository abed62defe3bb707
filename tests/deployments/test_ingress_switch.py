"""The ingress (real HAProxy) switching a route between real containers while a client
that keeps its connections alive and never retries sends requests: nothing may fail."""

import http.client
import socket
import socketserver
import threading
import time
import uuid

import docker
import pytest

from deployments.ingress.haproxy import HAProxyIngress, IngressError, slot_name
from tests.deployments.load import KeepAliveLoad

pytestmark = pytest.mark.usefixtures("base_images")
HOST = "web.development.shop.localhost"


@pytest.fixture
def network():
    client = docker.from_env()
    net = client.networks.create(f"choreo-test-{uuid.uuid4().hex[:8]}", labels={"io.choreo.test": "1"})
    containers = []

    def replica(body: str):
        container = client.containers.run(
            "choreo/busybox:1",
            ["sh", "-c", f"mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 8080 -h /www"],
            detach=True,
            network=net.name,
            labels={"io.choreo.test": "1"},
        )
        containers.append(container)
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
        # The rollout's health gate: the new replica answers before the ingress sees it.
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((address, 8080), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the replica never listened"
                time.sleep(0.05)
        return container, address

    yield replica
    for container in containers:
        container.remove(force=True)
    net.remove()


def switch(ingress: HAProxyIngress, slot: str, old: str | None, address: str) -> str:
    """The rollout's ingress steps: point a free server at the new replica, wait until it
    is up, drain the old one, wait until it has no session, free it. Returns the new one."""
    new = ingress.server_free(slot)
    ingress.server_add(slot, new, address, 8080)
    assert ingress.wait_up(slot, new, timeout=10)
    if old:
        ingress.server_drain(slot, old)
        assert ingress.wait_drained(slot, old, deadline=time.monotonic() + 10)
        ingress.server_delete(slot, old)
    return new


def test_switching_versions_under_keep_alive_load_fails_no_request(ingress, network):
    slot = slot_name(0)
    ingress.route_set(HOST, slot)
    _, address = network("v0")
    current = switch(ingress, slot, None, address)
    with KeepAliveLoad(ingress.port, HOST) as load:
        for version in range(1, 11):  # a pool of 3 servers: freed servers are reused
            time.sleep(0.3)
            _, address = network(f"v{version}")
            current = switch(ingress, slot, current, address)
        time.sleep(0.5)
    assert load.failures == []
    assert load.errors == 0 and load.bad == 0
    assert load.ok > 200
    assert {f"v{i}" for i in range(11)} <= load.bodies | {"v0"}
    assert [(s.name, s.address) for s in ingress.servers(slot)] == [(current, address)]
    print(f"{load.ok} requests over 10 switches, 0 failed")


def test_unknown_host_gets_404_and_bad_names_are_refused(ingress):
    conn = http.client.HTTPConnection("127.0.0.1", ingress.port, timeout=5)
    conn.request("GET", "/", headers={"Host": "nothing.here.localhost"})
    response = conn.getresponse()
    assert response.status == 404
    assert b"No component is served" in response.read()
    with pytest.raises(IngressError):
        ingress.route_set("Bad Host; del map", slot_name(1))
    with pytest.raises(IngressError):
        ingress.server_add(slot_name(1), "bad name", "127.0.0.1", 80)
    with pytest.raises(OSError):
        ingress.server_add(slot_name(1), "ok", "not-an-ip", 80)


@pytest.mark.django_db
def test_healthz_names_what_is_down(client):
    response = client.get("/healthz")
    assert response.status_code == 503  # no worker of this test instance is running
    checks = response.json()["checks"]
    assert checks["database"] == "ok" and checks["redis"] == "ok"
    assert checks["ingress"] in ("ok", "HAProxy's runtime API is not answering")
    assert checks["workers"].startswith("no worker on")


def _loopback_server(answer: bool) -> tuple[socketserver.ThreadingTCPServer, list[str]]:
    """A server on loopback that records each request's method. One that does not answer
    closes the connection after reading a whole request, as a replica that crashes does."""
    seen: list[str] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            try:
                self._requests()
            except OSError:
                pass  # HAProxy's check resets the connection it opened

        def _requests(self):
            while True:
                line = self.rfile.readline()
                if not line.strip():
                    return  # HAProxy's check, or the client has gone
                length = 0
                while (header := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":", 1)[1])
                self.rfile.read(length)
                seen.append(line.split()[0].decode())
                if not answer:
                    return
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_a_request_that_may_change_something_is_never_sent_twice(ingress):
    slot, host = slot_name(1), "once.development.shop.localhost"
    crashing, crashed_on = _loopback_server(answer=False)
    healthy, served = _loopback_server(answer=True)
    ingress.route_set(host, slot)
    for server in (crashing, healthy):
        name = ingress.server_free(slot)
        ingress.server_add(slot, name, "127.0.0.1", server.server_address[1])
        assert ingress.wait_up(slot, name, timeout=10)
    try:
        answers = {}
        for method in ("POST", "PUT", "PATCH", "DELETE", "GET"):
            answers[method] = []
            for _ in range(6):  # round robin: about half reach the crashing one first
                conn = http.client.HTTPConnection("127.0.0.1", ingress.port, timeout=10)
                conn.request(method, "/orders", body=b"{}", headers={"Host": host})
                answers[method].append(conn.getresponse().status)
                conn.close()
    finally:
        for state in ingress.servers(slot):
            ingress.server_delete(slot, state.name)
        ingress.route_delete(host)
        crashing.shutdown()
        healthy.shutdown()

    for method in ("POST", "PUT", "PATCH", "DELETE"):
        # Each request reached one replica exactly once; those the crashing one took failed.
        assert crashed_on.count(method) + served.count(method) == 6, (method, crashed_on, served)
        assert answers[method].count(502) == crashed_on.count(method) >= 1, (method, answers[method])
    # A GET may be sent again (HAProxy's retries): it changes nothing. Every one got an answer.
    assert len(answers["GET"]) == 6 and served.count("GET") >= answers["GET"].count(200)
