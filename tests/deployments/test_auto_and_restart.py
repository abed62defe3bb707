"""Auto deploy on build, and what survives a restart: the web and worker processes can be
killed and started again without touching healthy containers or the traffic; the ingress
is reconciled from the database."""

import hashlib
import hmac
import json
import os
import signal
import sys
import uuid

import docker
import pytest
from django.conf import settings
from django.test import Client

from builds.models import Build
from builds.services import component_create, component_update
from deployments import services
from deployments.ingress.haproxy import slot_name
from deployments.models import Deployment, Route
from deployments.rollout import ingress_reconcile
from environments.services import project_create, project_delete
from tests.conftest import MANAGE, free_port, our_labels, run_build_jobs, run_default_jobs, start_process, wait_http
from tests.deployments.load import KeepAliveLoad
from tests.deployments.test_deploy import DESCRIPTOR, SERVING, get

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")]
HOST = "web.development.shop.localhost"


def test_auto_deploy_on_build_deploys_an_automatic_build(component):
    secret = "auto-deploy-secret-0123"
    component_update(component=component, auto_build_on_commit=True, auto_deploy_on_build=True, webhook_secret=secret)
    before = component.repo.git("rev-parse", "HEAD")
    after = component.repo.commit({"index.html": "pushed\n"}, "push")
    body = json.dumps({"ref": "refs/heads/main", "before": before, "after": after, "commits": []}).encode()
    headers = {
        "HTTP_X_GITHUB_EVENT": "push",
        "HTTP_X_GITHUB_DELIVERY": str(uuid.uuid4()),
        "HTTP_X_HUB_SIGNATURE_256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }
    assert Client().post("/hooks/shop/web/", body, content_type="application/json", **headers).status_code == 202
    run_build_jobs()
    build = Build.objects.get()
    assert build.status == Build.SUCCEEDED and build.commit == after
    run_default_jobs()
    deployment = Deployment.objects.get()
    assert (deployment.kind, deployment.status, deployment.release.build_id) == (Deployment.AUTO, Deployment.ACTIVE, build.pk)
    assert deployment.environment.name == "development"
    assert get(HOST) == (200, "pushed")


def test_a_manual_build_is_not_auto_deployed(component):
    component_update(component=component, auto_build_on_commit=True, auto_deploy_on_build=True)
    from builds.services import build_start

    build_start(component=component)
    run_build_jobs()
    run_default_jobs()
    assert not Deployment.objects.exists()


def test_restarting_web_and_worker_leaves_containers_and_traffic_alone(component, platform_env, tmp_path):
    from builds.services import build_start

    build_start(component=component)
    run_build_jobs()
    deployment = services.deployment_deploy(component=component)
    run_default_jobs()
    deployment.refresh_from_db()
    assert deployment.status == Deployment.ACTIVE
    client = docker.from_env()
    started_at = {r["id"]: client.containers.get(r["id"]).attrs["State"]["StartedAt"] for r in deployment.replicas}

    port = free_port()
    env = {**platform_env, "WEB_PORT": str(port)}
    daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "choreo_site.asgi:application"]
    with KeepAliveLoad(settings.INGRESS_PORT, HOST) as load:
        for round_ in range(2):
            web = start_process(daphne, env, tmp_path / f"web{round_}.log")
            worker = start_process([*MANAGE, "rqworker"], env, tmp_path / f"worker{round_}.log")
            wait_http(f"http://127.0.0.1:{port}/login/", proc=web)
            for proc in (web, worker):  # a crash, not a polite stop
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    assert load.failures == [] and load.ok > 100
    for replica_id, when in started_at.items():
        assert client.containers.get(replica_id).attrs["State"]["StartedAt"] == when  # not restarted
    deployment.refresh_from_db()
    assert deployment.status == Deployment.ACTIVE


def test_the_ingress_is_reconciled_from_the_database(component, platform_ingress):
    from builds.services import build_start

    build_start(component=component)
    run_build_jobs()
    services.deployment_deploy(component=component)
    run_default_jobs()
    route = Route.objects.get()
    slot = slot_name(route.slot)
    # As after an ingress restart: no route, no servers.
    platform_ingress.route_delete(route.host)
    for server in platform_ingress.servers(slot):
        platform_ingress.server_delete(slot, server.name)
    assert get(HOST)[0] == 404
    ingress_reconcile()
    for server in platform_ingress.servers(slot):
        assert platform_ingress.wait_up(slot, server.name, timeout=10)
    assert get(HOST) == (200, "v1")


def test_a_rollout_whose_worker_dies_fails_cleanly_and_the_old_version_serves(component, platform_env, tmp_path, make_repo):
    import time

    from builds.services import build_start

    build_start(component=component)
    run_build_jobs()
    first = services.deployment_deploy(component=component)
    run_default_jobs()
    component.repo.commit({"Dockerfile": 'FROM choreo/busybox:1\nCMD ["sleep", "600"]\n'}, "never healthy")
    build_start(component=component)
    run_build_jobs()
    second = services.deployment_deploy(component=component, build=Build.objects.latest("created_at"))
    worker = start_process([*MANAGE, "rqworker", "default"], platform_env, tmp_path / "worker.log")
    deadline = time.monotonic() + 60
    while not Deployment.objects.filter(pk=second.pk, status=Deployment.ROLLING_OUT).exclude(replicas=[]).exists():
        assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-2000:]
        time.sleep(0.2)
    second.refresh_from_db()
    horse = int(second.worker.rpartition(":")[2])
    os.killpg(worker.pid, signal.SIGKILL)
    os.kill(horse, signal.SIGKILL)
    worker.wait(10)
    restarted = start_process([*MANAGE, "rqworker", "default", "--burst"], platform_env, tmp_path / "worker2.log")
    assert restarted.wait(60) == 0
    second.refresh_from_db()
    assert second.status == Deployment.FAILED
    assert "stopped: it was killed or crashed" in second.error
    assert docker.from_env().containers.list(all=True, filters={"label": our_labels(deployment=second.pk)}) == []
    first.refresh_from_db()
    assert first.status == Deployment.ACTIVE
    assert get(HOST) == (200, "v1")


def test_a_rollout_whose_worker_freezes_is_failed_by_its_heartbeat_and_the_next_deploy_goes_ahead(
    component, platform_env, tmp_path, settings
):
    """A frozen worker (SIGSTOP) still has its process: only the stale heartbeat tells, as for
    a worker on another machine."""
    import time

    from builds.services import build_start
    from choreo_site import runs

    build_start(component=component)
    run_build_jobs()
    first = services.deployment_deploy(component=component)
    run_default_jobs()
    v1 = Build.objects.latest("created_at")
    component.repo.commit({"Dockerfile": 'FROM choreo/busybox:1\nCMD ["sleep", "600"]\n'}, "never healthy")
    build_start(component=component)
    run_build_jobs()
    second = services.deployment_deploy(component=component, build=Build.objects.latest("created_at"))
    env = {**platform_env, "RUN_HEARTBEAT_INTERVAL": "1"}
    worker = start_process([*MANAGE, "rqworker", "default"], env, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 60
        while not Deployment.objects.filter(pk=second.pk, status=Deployment.ROLLING_OUT).exclude(replicas=[]).exists():
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(0.2)
        second.refresh_from_db()
        horse = int(second.worker.rpartition(":")[2])
        os.kill(horse, signal.SIGSTOP)
        os.killpg(worker.pid, signal.SIGSTOP)
        settings.RUN_HEARTBEAT_TIMEOUT = 3
        assert runs.reap_orphans() == []  # its beat is still fresh
        time.sleep(4)
        assert runs.reap_orphans() == [f"rollout-{second.pk}"]
        second.refresh_from_db()
        assert second.status == Deployment.FAILED and "sent no heartbeat for 3s" in second.error
        assert docker.from_env().containers.list(all=True, filters={"label": our_labels(deployment=second.pk)}) == []
        assert Deployment.objects.get(pk=first.pk).status == Deployment.ACTIVE and get(HOST) == (200, "v1")

        # The environment is not left busy: the next deploy is accepted and goes active.
        third = services.deployment_deploy(component=component, build=v1)
        run_default_jobs()
        third.refresh_from_db()
        assert third.status == Deployment.ACTIVE, third.error
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        try:
            os.kill(horse, signal.SIGKILL)
        except (NameError, ProcessLookupError):
            pass
        worker.wait(10)
    # The frozen worker, had it woken, would have found its rollout ended: nothing to undo.
    second.refresh_from_db()
    assert second.status == Deployment.FAILED and get(HOST) == (200, "v1")


def test_a_replica_that_disappeared_is_replaced_and_served(component, platform_ingress):
    from builds.services import build_start
    from deployments.rollout import replicas_reconcile

    build_start(component=component)
    run_build_jobs()
    deployment = services.deployment_deploy(component=component)
    run_default_jobs()
    deployment.refresh_from_db()
    client = docker.from_env()
    gone, kept = deployment.replicas
    client.containers.get(gone["id"]).remove(force=True)
    assert replicas_reconcile() != []
    ingress_reconcile()
    deployment.refresh_from_db()
    assert deployment.replicas[1] == kept  # the healthy one is untouched
    assert deployment.replicas[0]["id"] != gone["id"] and deployment.replicas[0]["server"] == gone["server"]
    slot = slot_name(Route.objects.get().slot)
    assert platform_ingress.wait_up(slot, gone["server"], timeout=15)
    addresses = {s.address for s in platform_ingress.servers(slot)}
    assert addresses == {deployment.replicas[0]["address"], kept["address"]}
    assert replicas_reconcile() == []  # nothing more to do
    assert get(HOST) == (200, "v1")


def test_project_visible_endpoints_are_not_exposed(make_repo):
    from builds.services import build_start

    descriptor = DESCRIPTOR.replace("STARTUP", "20s").replace("    port: 8080\n", "    port: 8080\n    visibility: project\n", 1)
    repo = make_repo({".choreo/component.yaml": descriptor, "Dockerfile": SERVING, "index.html": "internal\n"})
    component = component_create(project=project_create(name="inner"), name="api", repository=str(repo.path))
    try:
        build_start(component=component)
        run_build_jobs()
        deployment = services.deployment_deploy(component=component)
        run_default_jobs()
        deployment.refresh_from_db()
        assert deployment.status == Deployment.ACTIVE, deployment.error
        assert services.urls_for(deployment) == []
        assert not Route.objects.exists()
        assert get("api.development.inner.localhost")[0] == 404
    finally:
        project_delete(project=component.project)
