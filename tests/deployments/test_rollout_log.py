"""What a rollout's log says, line by line: it is how a user follows a rollout and learns
why one failed, so each step, its figures and its order are part of the contract. And
what each step leaves behind: the replicas' records, the old version's replicas, the pool."""

import time
from types import SimpleNamespace

import pytest
from django.conf import settings

from choreo_site.logstream import read_text
from deployments import rollout, services
from deployments.ingress import ingress
from deployments.ingress.haproxy import slot_name
from deployments.models import Deployment, Route
from deployments.runtimes.docker import DockerRuntime
from tests.deployments.test_deploy import DESCRIPTOR, NEVER_HEALTHY, SERVING, build, finish, get

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")]

HOST = "web.development.shop.localhost"

# Reachable only from the project's other components: no route, nothing in the ingress;
# and no health check, so the rollout waits for the endpoint's port to accept connections.
PRIVATE = """\
schemaVersion: 1
type: service
endpoints:
  - name: web
    port: 8080
    visibility: project
replicas: 1
"""
# Listens only after a second and a half: the rollout waits for it, and looks again.
SLOW_START = SERVING.replace("echo serving", "sleep 1.5; echo serving")
# Never healthy, and says a few things first.
CHATTY = 'FROM choreo/busybox:1\nCMD ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; done; exec sleep 600"]\n'


def log_of(deployment: Deployment) -> list[str]:
    return read_text(deployment.log_stream).splitlines()


def deploy_counting_pauses(component, monkeypatch, files: dict[str, str]) -> tuple[Deployment, list[float]]:
    """Build `files` and roll the build out; with each pause of the rollout's health checks."""
    v = build(component, files)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        time.sleep(seconds)

    with monkeypatch.context() as patch:
        patch.setattr(rollout, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleep))
        deployment = finish(services.deployment_deploy(component=component, build=v))
    assert deployment.status == Deployment.ACTIVE, deployment.error
    return deployment, pauses


def test_a_rollout_says_each_step_in_order_with_what_it_did(component, monkeypatch):
    dev = component.project.environments.get(name="development")
    services.component_config_set(component=component, environment=None, key="GREETING", value="hello")
    services.component_config_set(component=component, environment=dev, key="TOKEN", value="t0ken-value-4242", secret=True)
    services.component_config_set(component=component, environment=dev, key="banner", value=b"hi\n", is_file=True)
    # The replicas listen after a second and a half; the rollout looks again at the
    # descriptor's interval, 200 ms.
    descriptor = DESCRIPTOR.replace("STARTUP", "20s")
    first, pauses = deploy_counting_pauses(component, monkeypatch, {".choreo/component.yaml": descriptor, "Dockerfile": SLOW_START})
    assert pauses and set(pauses) == {0.2}, pauses
    route = Route.objects.get(component=component, environment=dev)
    slot = slot_name(route.slot)

    def expected(deployment, *switch):
        return [
            f"==> Deploying {deployment.release.image_reference} to development (deploy, 2 replica(s))",
            "==> Configuration: GREETING, TOKEN (secret), banner (file)",
            "==> Start the new replicas",
            *(f"started {r['name']} at {r['address']}" for r in deployment.replicas),
            "==> Health check: HTTP GET / on port 8080, within 20s",
            "all 2 replica(s) healthy",
            f"==> Add to the ingress pool ({HOST} → {slot})",
            f"serving at http://{HOST}:{settings.INGRESS_PORT}/",
            *switch,
            f"==> Deployment {deployment.pk} is active",
        ]

    assert log_of(first) == expected(first)
    old_servers = [r["server"] for r in first.replicas]

    # Checked every 5 s, as the descriptor now says; the rollout still looks every second,
    # so a replica that becomes healthy is put in the pool within a second.
    second, pauses = deploy_counting_pauses(
        component, monkeypatch, {".choreo/component.yaml": descriptor.replace("interval: 200ms", "interval: 5s"), "index.html": "v2\n"}
    )
    assert pauses and set(pauses) == {1.0}, pauses
    assert log_of(second) == expected(
        second,
        f"==> Drain the old replicas ({', '.join(old_servers)}), at most {settings.ROLLOUT_DRAIN_TIMEOUT}s",
        f"==> Stop the old replicas (SIGTERM, {settings.ROLLOUT_STOP_GRACE}s grace)",
    )
    # What each replica's record holds is what runs: its container, its server in the pool.
    running = {r.id: r for r in rollout.runtime().replicas(deployment=str(second.pk))}
    assert [sorted(r) for r in second.replicas] == [["address", "id", "name", "server"]] * 2
    assert {r["id"]: (r["name"], r["address"]) for r in second.replicas} == {i: (r.name, r.address) for i, r in running.items()}
    assert sorted(r["server"] for r in second.replicas) == sorted(s.name for s in ingress().servers(slot))
    first.refresh_from_db()
    assert first.status == Deployment.SUPERSEDED and first.replicas == []
    assert rollout.runtime().replicas(deployment=str(first.pk)) == []
    assert get(HOST) == (200, "v2")


def test_a_component_without_a_public_endpoint_is_rolled_out_outside_the_ingress(component, monkeypatch):
    first = finish(services.deployment_deploy(component=component, build=build(component, {".choreo/component.yaml": PRIVATE})))
    assert first.status == Deployment.ACTIVE, first.error
    # Without a health check, a replica is healthy once the endpoint's port accepts
    # connections, not once its container runs: this one listens after a second and a half.
    probed = []
    healthy = DockerRuntime.replica_healthy

    def probe(self, replica, health, *, port):
        probed.append((health, port))
        return healthy(self, replica, health, port=port)

    monkeypatch.setattr(DockerRuntime, "replica_healthy", probe)
    second, pauses = deploy_counting_pauses(component, monkeypatch, {"Dockerfile": SLOW_START})
    assert set(probed) == {(None, 8080)} and pauses and set(pauses) == {1.0}, (probed, pauses)

    def expected(deployment, *between):
        return [
            f"==> Deploying {deployment.release.image_reference} to development (deploy, 1 replica(s))",
            "==> Start the new replicas",
            *(f"started {r['name']} at {r['address']}" for r in deployment.replicas),
            "==> Health check: TCP connect to port 8080, within 60s",
            "all 1 replica(s) healthy",
            *between,
            f"==> Deployment {deployment.pk} is active",
        ]

    assert log_of(first) == expected(first)
    stop = f"==> Stop the old replicas (SIGTERM, {settings.ROLLOUT_STOP_GRACE}s grace)"
    assert log_of(second) == expected(second, "no public endpoint: nothing to change in the ingress", stop)
    [record] = second.replicas
    [replica] = rollout.runtime().replicas(deployment=str(second.pk))
    assert record == {"id": replica.id, "name": replica.name, "address": replica.address}  # no server: it is in no pool
    assert not Route.objects.filter(component=component).exists()
    first.refresh_from_db()
    assert first.status == Deployment.SUPERSEDED and first.replicas == []
    assert rollout.runtime().replicas(deployment=str(first.pk)) == []


def test_a_replica_that_never_gets_healthy_fails_the_rollout_with_its_last_output(component):
    descriptor = DESCRIPTOR.replace("STARTUP", "2s").replace("replicas: 2", "replicas: 1")
    chatty = build(component, {".choreo/component.yaml": descriptor, "Dockerfile": CHATTY})
    silent = build(component, {"Dockerfile": NEVER_HEALTHY})
    chatty, silent = (finish(services.deployment_deploy(component=component, build=b)) for b in (chatty, silent))

    for deployment, output in ((chatty, "; its last output: line 3; line 4; line 5"), (silent, "")):
        assert deployment.status == Deployment.FAILED
        [replica] = deployment.replicas
        assert deployment.error == f"{replica['name']} did not pass its health check (HTTP GET / on port 8080) within 2s{output}"
        assert log_of(deployment)[-2:] == [
            "the new replicas were removed; the active version keeps serving",
            f"==> FAILED: {deployment.error}",
        ]
        assert rollout.runtime().replicas(deployment=str(deployment.pk)) == []


def test_a_rollout_whose_deployment_was_ended_meanwhile_says_so_and_keeps_that_end(component, monkeypatch):
    """Someone else ended the deployment (the reaper of a worker that seemed gone) just as
    the new version took over: the rollout does not make it active over that, says so, and
    still stops the old version, which no longer serves."""
    first = finish(services.deployment_deploy(component=component, build=build(component)))
    assert first.status == Deployment.ACTIVE, first.error
    retire_replaced = rollout._retire_replaced

    def ended_meanwhile(deployment):
        Deployment.objects.filter(pk=deployment.pk).update(status=Deployment.FAILED, error="ended meanwhile")
        retire_replaced(deployment)

    monkeypatch.setattr(rollout, "_retire_replaced", ended_meanwhile)
    second = finish(services.deployment_deploy(component=component, build=build(component, {"index.html": "v2\n"})))
    monkeypatch.undo()

    assert second.status == Deployment.FAILED and second.error == "ended meanwhile"
    log = log_of(second)
    assert log[-2:] == [
        "the deployment was changed by someone else while rolling out",
        f"==> Stop the old replicas (SIGTERM, {settings.ROLLOUT_STOP_GRACE}s grace)",
    ]  # and never that it is active
    assert rollout.runtime().replicas(deployment=str(first.pk)) == []
    assert get(HOST) == (200, "v2")


def test_a_task_that_replaces_a_service_takes_it_out_of_the_ingress_and_stops_it(component):
    first = finish(services.deployment_deploy(component=component, build=build(component)))
    assert first.status == Deployment.ACTIVE, first.error
    slot = slot_name(Route.objects.get(component=component).slot)
    assert get(HOST) == (200, "v1")

    task = build(component, {".choreo/component.yaml": "schemaVersion: 1\ntype: manual-task\n"})
    task = finish(services.deployment_deploy(component=component, build=task))
    assert task.status == Deployment.ACTIVE, task.error
    assert log_of(task) == [
        f"==> Deploying {task.release.image_reference} to development (deploy): a manual-task",
        "a task has no replicas and no route: its executions run this deployment from now on",
        "the replicas of the service it replaces were stopped",
        f"==> Deployment {task.pk} is active",
    ]
    first.refresh_from_db()
    assert first.status == Deployment.SUPERSEDED and first.replicas == []
    assert rollout.runtime().replicas(deployment=str(first.pk)) == []
    assert ingress().servers(slot) == []
    assert get(HOST)[0] == 404  # the host is routed nowhere
