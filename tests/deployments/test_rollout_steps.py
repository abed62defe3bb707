"""Each rollout step, checked on its own through the real runtime and ingress: the claim,
the health gate before any traffic, and the drain that lets a slow request finish.

Load that keeps connections alive cannot see these: HAProxy's retries and redispatch hide
a cut connection, and its own (TCP) check holds back a replica that does not listen yet.
So these tests send what cannot be retried, and serve what listens before it is healthy."""

import hashlib
import http.client
import threading
import time

import pytest
from django.conf import settings

from choreo_site.logstream import read_text
from deployments import rollout, services
from deployments.ingress import ingress
from deployments.ingress.haproxy import HAProxyIngress, IngressError, slot_name
from deployments.models import Deployment, Route
from tests.conftest import run_default_jobs
from tests.deployments.load import KeepAliveLoad
from tests.deployments.test_deploy import DESCRIPTOR, build, env, finish, get

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")]

HOST = "web.development.shop.localhost"

# Answers GET / with its version at once. A POST is answered slowly: after DELAY seconds,
# a 1 MiB body sent in pieces. SIGTERM ends it at once, in-flight requests included, as
# many applications do: only the platform's drain can save such a request.
SLOW_SERVER = """\
import hashlib, http.server, os, signal, socketserver, time

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
VERSION = open("/version").read().strip()
PIECE = hashlib.sha256(VERSION.encode()).hexdigest().encode() * 1024  # 64 KiB


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(VERSION)))
        self.end_headers()
        self.wfile.write(VERSION.encode())

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(float(self.headers.get("X-Delay") or 0))
        self.send_response(200)
        self.send_header("Content-Length", str(16 * len(PIECE)))
        self.send_header("X-Version", VERSION)
        self.end_headers()
        for _ in range(16):
            self.wfile.write(PIECE)
            time.sleep(0.05)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


Server(("", 8080), Handler).serve_forever()
"""
SLOW_DOCKERFILE = 'FROM choreo/python:3.11\nCOPY server.py version /\nCMD ["python3", "/server.py"]\n'
SLOW_DESCRIPTOR = """\
schemaVersion: 1
type: service
endpoints:
  - name: web
    port: 8080
health:
  http: { path: /, port: 8080 }
  interval: 200ms
  startupTimeout: 30s
replicas: 1
"""


def slow_post(delay: float, result: dict) -> None:
    """POST through the ingress on one connection, never retried; keeps what came back."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", settings.INGRESS_PORT, timeout=60)
        conn.request("POST", "/orders", body=b'{"order": 1}', headers={"Host": HOST, "X-Delay": str(delay)})
        response = conn.getresponse()
        result.update(status=response.status, version=response.getheader("X-Version"), body=response.read())
    except (OSError, http.client.HTTPException) as exc:
        result.update(error=repr(exc))


def servers_in_pool(component) -> set[str]:
    route = Route.objects.get(component=component, environment__name="development")
    return {s.name for s in ingress().servers(slot_name(route.slot))}


def test_a_slow_post_in_flight_on_the_old_version_completes_through_a_rollout(component):
    files = {".choreo/component.yaml": SLOW_DESCRIPTOR, "Dockerfile": SLOW_DOCKERFILE, "server.py": SLOW_SERVER}
    v1 = build(component, {**files, "version": "v1\n"})
    first = finish(services.deployment_deploy(component=component, build=v1))
    assert first.status == Deployment.ACTIVE, first.error
    old_servers = {r["server"] for r in first.replicas}
    assert servers_in_pool(component) == old_servers
    v2 = build(component, {"version": "v2\n"})

    result: dict = {}
    client = threading.Thread(target=slow_post, args=(6, result))
    client.start()
    deadline = time.monotonic() + 10  # the request has reached the old replica
    while not any(s.sessions for s in ingress().servers(slot_name(Route.objects.get(component=component).slot))):
        assert time.monotonic() < deadline, "the POST never reached the old replica"
        time.sleep(0.05)
    second = finish(services.deployment_deploy(component=component, build=v2))
    client.join(60)

    assert second.status == Deployment.ACTIVE, second.error
    assert "error" not in result, result.get("error")
    assert result["status"] == 200 and result["version"] == "v1"
    piece = hashlib.sha256(b"v1").hexdigest().encode() * 1024
    assert result["body"] == piece * 16  # the whole response, not a cut one
    assert "==> Drain the old replicas" in read_text(second.log_stream)
    # The old deployment's servers have left the pool: only the new one's remain.
    new_servers = {r["server"] for r in Deployment.objects.get(pk=second.pk).replicas}
    assert servers_in_pool(component) == new_servers and not new_servers & old_servers
    assert get(HOST) == (200, "v2")


# Listens at once, and serves "not-ready" until it is healthy: the health path /ready
# exists only after 4 s, when the page says "v2".
SLOW_TO_BE_HEALTHY = (
    "FROM choreo/busybox:1\nCOPY index.html /www/index.html\n"
    'CMD ["sh", "-c", "echo not-ready > /www/index.html; (sleep 4; echo v2 > /www/v2 && mv /www/v2 /www/index.html; touch /www/ready) & '
    'exec httpd -f -p 8080 -h /www"]\n'
)


def test_no_request_reaches_a_replica_before_its_health_check_passes(component):
    v1 = build(component)
    first = finish(services.deployment_deploy(component=component, build=v1))
    assert first.status == Deployment.ACTIVE, first.error
    descriptor = component.repo.path.joinpath(".choreo/component.yaml").read_text().replace("path: /,", "path: /ready,")
    v2 = build(component, {"Dockerfile": SLOW_TO_BE_HEALTHY, ".choreo/component.yaml": descriptor})

    with KeepAliveLoad(settings.INGRESS_PORT, HOST) as load:
        time.sleep(0.3)
        second = finish(services.deployment_deploy(component=component, build=v2))
        time.sleep(0.5)

    # The replica listened, and HAProxy's own check would have passed, seconds before its
    # health check did: none of that time's answers reached a client.
    assert "not-ready" not in load.bodies
    assert second.status == Deployment.ACTIVE, second.error
    assert load.failures == [] and load.errors == 0, load.failures[:5]
    assert load.bodies == {"v1", "v2"}


def test_a_rollout_that_fails_with_its_servers_in_the_pool_takes_them_out_again(component, monkeypatch):
    """Its replicas pass their health check, on its port, but the ingress cannot reach the
    endpoint's port: the rollout fails after adding a server to the pool, and the undo takes
    the server out again and stops the new replicas. The active version serves alone. If
    the ingress refuses to take a server out, the undo says so and still stops the replicas."""
    first = finish(services.deployment_deploy(component=component, build=build(component)))
    assert first.status == Deployment.ACTIVE, first.error
    route = Route.objects.get(component=component, environment=first.environment)
    in_pool = {s.name for s in ingress().servers(slot_name(route.slot))}
    assert in_pool == set(rollout._servers_of(first)) and len(in_pool) == 2

    elsewhere = DESCRIPTOR.replace("STARTUP", "5s").replace("    port: 8080\n", "    port: 8081\n")  # health stays on 8080
    waits = []
    wait_up = HAProxyIngress.wait_up

    def waited(self, slot, name, timeout):
        waits.append(timeout)
        return wait_up(self, slot, name, timeout)

    monkeypatch.setattr(HAProxyIngress, "wait_up", waited)
    bad = finish(services.deployment_deploy(component=component, build=build(component, {".choreo/component.yaml": elsewhere})))
    assert bad.status == Deployment.FAILED
    assert bad.error.startswith("the ingress could not reach ") and bad.error.endswith(" on port 8081"), bad.error
    assert waits == [10]  # the startup timeout, but never less than 10 s, for HAProxy's first checks
    # Its records say which replica got a server in the pool before the rollout failed.
    assert [sorted(r) for r in bad.replicas] == [["address", "id", "name", "server"], ["address", "id", "name"]]
    log = read_text(bad.log_stream).splitlines()
    assert any(line.startswith("==> Add to the ingress pool") for line in log)
    assert "the new replicas were removed; the active version keeps serving" in log
    assert {s.name for s in ingress().servers(slot_name(route.slot))} == in_pool
    assert rollout.runtime().replicas(deployment=str(bad.pk)) == []
    assert Deployment.objects.get(pk=first.pk).status == Deployment.ACTIVE
    assert get(HOST) == (200, "v1")

    # The same, while the ingress refuses every removal (its runtime API answers an error).
    refused = []

    def refuse(self, slot, name):
        refused.append((slot, name))
        raise IngressError(f"'set server {slot}/{name} state maint' answered: Permission denied.")

    monkeypatch.setattr(HAProxyIngress, "server_delete", refuse)
    worse = finish(services.deployment_deploy(component=component, build=build(component, {"index.html": "v3\n"})))
    monkeypatch.undo()
    assert worse.status == Deployment.FAILED and worse.error.startswith("the ingress could not reach "), worse.error
    log = read_text(worse.log_stream).splitlines()
    assert refused and [line for line in log if line.startswith("could not remove ")] == [
        f"could not remove {slot}/{name} from the ingress: 'set server {slot}/{name} state maint' answered: Permission denied."
        for slot, name in refused
    ]
    assert "the new replicas were removed; the active version keeps serving" in log
    assert rollout.runtime().replicas(deployment=str(worse.pk)) == []
    for slot, name in refused:  # what the refusing ingress kept
        ingress().server_delete(slot, name)
    assert {s.name for s in ingress().servers(slot_name(route.slot))} == in_pool
    assert get(HOST) == (200, "v1")


def test_the_switch_retires_only_an_active_replaced_deployment(component):
    """What a deployment replaces becomes superseded, or rolled back when it is a rollback;
    one that has already ended otherwise keeps its end. No rollout can end it today (one
    rollout per environment at a time), so that history is made directly."""
    first = finish(services.deployment_deploy(component=component, build=build(component)))
    assert first.status == Deployment.ACTIVE, first.error
    other = finish(services.deployment_promote(component=component, source=first.environment, target=env(component, "production")))
    assert other.status == Deployment.ACTIVE, other.error
    second = services.deployment_deploy(component=component, build=build(component, {"index.html": "v2\n"}))
    Deployment.objects.filter(pk=second.pk).update(status=Deployment.FAILED)  # its job, left queued, does nothing
    run_default_jobs()

    def retired_as(old_status: str, kind: str) -> str:
        Deployment.objects.filter(pk=first.pk).update(status=old_status)
        Deployment.objects.filter(pk=second.pk).update(kind=kind)
        rollout._retire_replaced(Deployment.objects.select_related("replaces").get(pk=second.pk))
        return Deployment.objects.get(pk=first.pk).status

    assert retired_as(Deployment.ACTIVE, Deployment.DEPLOY) == Deployment.SUPERSEDED
    assert retired_as(Deployment.ACTIVE, Deployment.PROMOTE) == Deployment.SUPERSEDED
    assert retired_as(Deployment.ACTIVE, Deployment.ROLLBACK) == Deployment.ROLLED_BACK
    assert retired_as(Deployment.ROLLED_BACK, Deployment.DEPLOY) == Deployment.ROLLED_BACK
    assert retired_as(Deployment.FAILED, Deployment.ROLLBACK) == Deployment.FAILED
    assert Deployment.objects.get(pk=other.pk).status == Deployment.ACTIVE  # another environment's is not touched


def test_a_rollout_job_for_a_deployment_no_longer_pending_does_nothing(component):
    v1 = build(component)
    first = finish(services.deployment_deploy(component=component, build=v1))
    assert first.status == Deployment.ACTIVE, first.error
    v2 = build(component, {"index.html": "v2\n"})
    late = services.deployment_deploy(component=component, build=v2)
    Deployment.objects.filter(pk=late.pk).update(status=Deployment.FAILED, error="given up")

    # A late or duplicated job: it must neither claim it nor start anything.
    assert rollout.run(late.pk) == Deployment.FAILED
    late.refresh_from_db()
    assert late.status == Deployment.FAILED and late.error == "given up" and late.started_at is None and late.replicas == []
    assert read_text(late.log_stream) == ""
    assert Deployment.objects.get(pk=first.pk).status == Deployment.ACTIVE
    assert get(HOST) == (200, "v1")


def test_a_rollout_beats_and_one_whose_worker_went_silent_is_failed_and_undone(component, settings):
    from datetime import timedelta

    from django.utils import timezone

    from choreo_site import runs

    settings.RUN_HEARTBEAT_INTERVAL = 0  # a beat every half second
    v1 = build(component)
    first = finish(services.deployment_deploy(component=component, build=v1))
    assert first.status == Deployment.ACTIVE, first.error
    assert first.heartbeat_at > first.started_at

    # A rollout on a worker on another host: its process cannot be seen from here, only its
    # heartbeat. While the heartbeat is fresh it is left alone; once stale, it is failed.
    v2 = build(component, {"index.html": "v2\n"})
    remote = services.deployment_deploy(component=component, build=v2)
    Deployment.objects.filter(pk=remote.pk).update(status=Deployment.ROLLING_OUT, worker="elsewhere:4242", heartbeat_at=timezone.now())
    assert runs.reap_orphans() == []
    silent = timezone.now() - timedelta(seconds=settings.RUN_HEARTBEAT_TIMEOUT + 1)
    Deployment.objects.filter(pk=remote.pk).update(heartbeat_at=silent)
    assert runs.reap_orphans() == [f"rollout-{remote.pk}"]
    remote.refresh_from_db()
    assert remote.status == Deployment.FAILED
    assert remote.error == f"The worker running this rollout (elsewhere:4242) sent no heartbeat for {settings.RUN_HEARTBEAT_TIMEOUT}s."
    assert "the active version keeps serving" in read_text(remote.log_stream)
    assert Deployment.objects.get(pk=first.pk).status == Deployment.ACTIVE and get(HOST) == (200, "v1")
    # A job for it that comes late finds nothing to do.
    assert rollout.run(remote.pk) == Deployment.FAILED
