"""One contract, both runtimes (settings.RUNTIME): the platform's own rollouts through the
real pipeline, once on this machine's Docker Engine and once on a real Kubernetes control
plane (scripts/kube; kwok nodes), with the same component, builds and calls.

deploy → active; a new version; promote; roll back; an unhealthy version fails while the
active one keeps its ready replicas; reconciliation after a deleted object; teardown. And a
task's execution that succeeds, fails, times out and is cancelled.

The unhealthy version is the same image on both: its replicas never answer when they have a
variable named CHOREO_TEST_UNREADY, and kwok keeps such a pod not Ready
(scripts/kube/kwok/choreo-stages.yaml), as a failing readiness probe would.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import docker
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from builds.services import component_create
from choreo_site import runs
from choreo_site.logstream import read_text
from deployments import rollout, services
from deployments.ingress import ingress
from deployments.ingress.haproxy import slot_name
from deployments.models import Deployment, Route
from deployments.runtimes import ServiceRuntime, kubernetes
from deployments.services import component_config_delete, component_config_set
from environments.services import project_delete
from tasks.models import Execution
from tasks.services import execution_cancel
from tests.conftest import live_reader, our_labels, run_task_jobs
from tests.deployments.test_deploy import DESCRIPTOR, build, env, finish, get
from tests.tasks.conftest import make_task, task_descriptor  # noqa: F401 (a fixture)
from tests.tasks.test_executions import deployed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")]

SERVING_UNLESS_UNREADY = (
    "FROM choreo/busybox:1\nCOPY index.html /www/index.html\n"
    'CMD ["sh", "-c", "[ -n \\"$CHOREO_TEST_UNREADY\\" ] && exec sleep 600; exec httpd -f -p 8080 -h /www"]\n'
)
UNREADY = DESCRIPTOR.replace("STARTUP", "4s") + "configurations:\n  - {name: CHOREO_TEST_UNREADY, type: string, default: 'yes'}\n"


@pytest.fixture(params=["docker", pytest.param("kubernetes", marks=pytest.mark.kubernetes)])
def runtime_kind(request, settings, monkeypatch):
    """The runtime the platform runs on for this test; set before `component`, so that
    the component's teardown runs on it too."""
    if request.param == "kubernetes":
        monkeypatch.setenv("KUBECONFIG", request.getfixturevalue("kubeconfig"))
        settings.RUNTIME = "kubernetes"
    return request.param


def serves(kind: str, deployment: Deployment, host: str) -> bool:
    """Whether `deployment` is what its environment serves: on Docker, answered through the
    ingress by its own replicas; on Kubernetes, the Deployment's revision is its and the
    cluster reports the rollout complete (kwok has no traffic to send)."""
    if kind == "docker":
        servers = set(rollout._servers_of(Deployment.objects.get(pk=deployment.pk)))
        return bool(servers) and get(host)[0] == 200
    rt = rollout.runtime()
    assert isinstance(rt, ServiceRuntime)
    return rt.service_state(rollout.service_spec(deployment)).serving


def running(kind: str) -> list[str]:
    """What runs for project shop: containers, or namespaces."""
    if kind == "docker":
        return [c.name for c in docker.from_env().containers.list(all=True, filters={"label": our_labels(project="shop")})]
    rt = rollout.runtime()
    namespaces = rt.core.list_namespace(label_selector=f"io.choreo/instance={rt.namespace},io.choreo/project=shop")
    return [n.metadata.name for n in namespaces.items]


def test_the_rollout_contract(runtime_kind, component):
    kind = runtime_kind
    dev_host, prod_host = "web.development.shop.localhost", "web.production.shop.localhost"
    component.repo.commit({"Dockerfile": SERVING_UNLESS_UNREADY}, "serve unless told not to")
    v1 = build(component)
    first = finish(services.deployment_deploy(component=component, build=v1))
    assert first.status == Deployment.ACTIVE, first.error
    assert serves(kind, first, dev_host) and rollout.health(first).startswith("2/2 ")

    v2 = build(component, {"index.html": "v2\n"})
    second = finish(services.deployment_deploy(component=component, build=v2))
    assert second.status == Deployment.ACTIVE, second.error
    assert serves(kind, second, dev_host)

    promoted = finish(
        services.deployment_promote(component=component, source=env(component, "development"), target=env(component, "production"))
    )
    assert promoted.status == Deployment.ACTIVE, promoted.error
    assert promoted.release_id == second.release_id and serves(kind, promoted, prod_host)

    rolled = finish(services.deployment_rollback(component=component, environment=env(component, "development")))
    assert rolled.status == Deployment.ACTIVE, rolled.error
    assert rolled.release_id == first.release_id and serves(kind, rolled, dev_host)

    v3 = build(component, {".choreo/component.yaml": UNREADY})
    bad = finish(services.deployment_deploy(component=component, build=v3))
    assert bad.status == Deployment.FAILED
    if kind == "docker":
        assert "did not pass its health check (HTTP GET / on port 8080) within 4s" in bad.error
    else:
        assert "ProgressDeadlineExceeded" in bad.error and "Ready False" in bad.error, bad.error
    assert serves(kind, rolled, dev_host) and rollout.health(rolled).startswith("2/2 ")
    statuses = dict(Deployment.objects.values_list("pk", "status"))
    assert statuses[first.pk] == Deployment.SUPERSEDED and statuses[second.pk] == Deployment.ROLLED_BACK
    assert statuses[rolled.pk] == Deployment.ACTIVE and statuses[promoted.pk] == Deployment.ACTIVE

    # Reconciliation brings back what was deleted behind the platform's back.
    if kind == "docker":
        docker.from_env().containers.get(rolled.replicas[0]["id"]).remove(force=True)
    else:
        rt = rollout.runtime()
        rt.apps.delete_namespaced_deployment(rt.service_name(component.pk), rt.namespace_name("shop", "development"))
    assert rollout.replicas_reconcile()
    rollout.ingress_reconcile()
    rolled.refresh_from_db()
    deadline = time.monotonic() + 30
    while not (serves(kind, rolled, dev_host) and rollout.health(rolled).startswith("2/2 ")):
        assert time.monotonic() < deadline, rollout.health(rolled)
        time.sleep(0.3)

    assert len(running(kind)) == (4 if kind == "docker" else 2)  # 2 replicas per environment, or 2 namespaces
    project_delete(project=component.project)
    assert running(kind) == []


def orphan(deployment: Deployment, *, replaced: Deployment | None = None) -> None:
    """Make `deployment` a rollout whose worker, on another host, went silent; `replaced`
    active again, as it was until that rollout's end."""
    stale = timezone.now() - timedelta(seconds=settings.RUN_HEARTBEAT_TIMEOUT + 1)
    Deployment.objects.filter(pk=deployment.pk).update(
        status=Deployment.ROLLING_OUT, worker="elsewhere:4242", heartbeat_at=stale, finished_at=None
    )
    if replaced is not None:
        Deployment.objects.filter(pk=replaced.pk).update(status=Deployment.ACTIVE)


def test_a_rollout_whose_worker_died_ends_as_it_would_have_if_it_switched_and_is_undone_if_not(
    runtime_kind,
    component,
    make_task,  # noqa: F811 (the fixture)
):
    """The reaper's policy for a rollout whose worker died (rollout._orphaned): if its new
    version serves already, it becomes active and what it replaced is retired as the
    rollout would have retired it (a rollback's: rolled back, so a later rollback does not
    bring it again); if not, what it started is removed, it fails, and the active version
    keeps serving."""
    kind, host = runtime_kind, "web.development.shop.localhost"
    component.repo.commit({"Dockerfile": SERVING_UNLESS_UNREADY}, "serve unless told not to")
    # Its slot in production is taken first (as when it ran there before it ran in
    # development), and so is another component's in development: the policy must look at
    # the slot of the rollout's own component in the rollout's own environment.
    services.route_ensure(component=component, environment=env(component, "production"))
    api = component_create(project=component.project, name="api", repository=str(component.repo.path))
    services.route_ensure(component=api, environment=env(component, "development"))
    first = finish(services.deployment_deploy(component=component, build=build(component)))
    assert first.status == Deployment.ACTIVE, first.error
    second = finish(services.deployment_deploy(component=component, build=build(component, {"index.html": "v2\n"})))
    assert second.status == Deployment.ACTIVE, second.error

    # A rollback whose worker died after the switch: its statuses as they were just before its end.
    rolled = finish(services.deployment_rollback(component=component, environment=env(component, "development")))
    assert rolled.status == Deployment.ACTIVE and rolled.release_id == first.release_id, rolled.error
    orphan(rolled, replaced=second)
    rt = rollout.runtime()
    if kind == "docker":  # the version it replaced still runs, out of the pool: its worker died before stopping it
        left = rt.replica_start(rollout.replica_spec(second, 0))
        Deployment.objects.filter(pk=second.pk).update(replicas=[{"id": left.id, "name": left.name, "address": left.address}])
    told = live_reader(rolled.log_stream)
    assert runs.reap_orphans() == [f"rollout-{rolled.pk}"]
    statuses = dict(Deployment.objects.values_list("pk", "status"))
    assert (statuses[rolled.pk], statuses[second.pk]) == (Deployment.ACTIVE, Deployment.ROLLED_BACK)
    if kind == "docker":
        assert rt.replicas(deployment=str(second.pk)) == []
    assert told() == Deployment.ACTIVE
    why = "the switch; the new version serves" if kind == "docker" else "the cluster completed the rollout"
    assert f"==> The worker stopped after {why}: deployment resumed as active" in read_text(rolled.log_stream).splitlines()
    assert serves(kind, rolled, host)

    if kind == "docker":
        # A deploy whose worker died in the middle of the switch: its new replica is in the
        # pool beside the active version's. That is not a switch: it is undone.
        mid = services.deployment_deploy(component=component, build=build(component, {"index.html": "v4\n"}))
        mid = Deployment.objects.get(pk=mid.pk)  # pending: nobody runs its job
        replica = rt.replica_start(rollout.replica_spec(mid, 0))
        slot = slot_name(Route.objects.get(component=component, environment=mid.environment).slot)
        ing = ingress()
        ing.server_add(slot, server := ing.server_free(slot), replica.address, 8080)
        record = {"id": replica.id, "name": replica.name, "address": replica.address, "server": server}
        Deployment.objects.filter(pk=mid.pk).update(replicas=[record])
        orphan(mid)
        assert runs.reap_orphans() == [f"rollout-{mid.pk}"]
        assert Deployment.objects.get(pk=mid.pk).status == Deployment.FAILED
        assert Deployment.objects.get(pk=rolled.pk).status == Deployment.ACTIVE
        assert {s.name for s in ing.servers(slot)} == set(rollout._servers_of(Deployment.objects.get(pk=rolled.pk)))
        assert rt.replicas(deployment=str(mid.pk)) == []

    # A deploy whose worker died before the switch: its new version started, and not ready.
    third = services.deployment_deploy(component=component, build=build(component, {".choreo/component.yaml": UNREADY}))
    third = Deployment.objects.get(pk=third.pk)  # pending: nobody runs its job
    if kind == "docker":
        rt.replica_start(rollout.replica_spec(third, 0))
    else:
        rt.apply(*rt.service_manifests(rollout.service_spec(third), namespace=rt.namespace_name("shop", "development")))
        assert not serves(kind, rolled, host)  # the cluster rolls out the new version
    orphan(third)
    assert runs.reap_orphans() == [f"rollout-{third.pk}"]
    third.refresh_from_db()
    assert third.status == Deployment.FAILED
    assert third.error == f"The worker running this rollout (elsewhere:4242) sent no heartbeat for {settings.RUN_HEARTBEAT_TIMEOUT}s."
    note = (
        "Its replicas were removed; the active version keeps serving."
        if kind == "docker"
        else "The previous version was applied again and kept serving."
    )
    assert read_text(third.log_stream).splitlines()[-1].endswith(note)
    assert Deployment.objects.get(pk=rolled.pk).status == Deployment.ACTIVE
    deadline = time.monotonic() + 30
    while not serves(kind, rolled, host):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    if kind == "docker":
        assert get(host) == (200, "v1")
        assert rt.replicas(deployment=str(third.pk)) == []

    # The first deploy to an environment, whose worker died before the switch (its replicas
    # not ready: told so by production's configuration): nothing is left running there.
    component_config_set(component=component, environment=env(component, "production"), key="CHOREO_TEST_UNREADY", value="yes")
    fifth = services.deployment_promote(component=component, source=env(component, "development"), target=env(component, "production"))
    fifth = Deployment.objects.get(pk=fifth.pk)
    assert fifth.replaces is None
    if kind == "docker":
        rt.replica_start(rollout.replica_spec(fifth, 0))
    else:
        rt.environment_ensure(project="shop", environment="production")
        rt.apply(*rt.service_manifests(rollout.service_spec(fifth), namespace=rt.namespace_name("shop", "production")))
    orphan(fifth)
    assert runs.reap_orphans() == [f"rollout-{fifth.pk}"]
    assert Deployment.objects.get(pk=fifth.pk).status == Deployment.FAILED
    if kind == "docker":
        assert rt.replicas(deployment=str(fifth.pk)) == []
    else:
        assert rt.apps.list_namespaced_deployment(rt.namespace_name("shop", "production")).items == []

    # A task's deployment whose worker died: nothing of it runs yet, so it fails and the
    # active one stays.
    task = make_task()
    active = deployed(task)
    fourth = services.deployment_deploy(component=task, environment=env(task, "development"), build=build(task))
    orphan(fourth)
    assert runs.reap_orphans() == [f"rollout-{fourth.pk}"]
    fourth.refresh_from_db()
    assert fourth.status == Deployment.FAILED
    assert Deployment.objects.get(pk=active.pk).status == Deployment.ACTIVE
    note = "Its replicas were removed; the active version keeps serving." if kind == "docker" else "The active version stays."
    assert read_text(fourth.log_stream).splitlines()[-1].endswith(note)  # the policy's own end, not the reaper's fallback

    if kind == "kubernetes":
        # A deploy whose worker died before the switch, over an active version whose pods are
        # not ready any more (made so directly: `third`, told so by its own configuration).
        # The active version is applied again and does not settle: the log says so, and the
        # policy still ends the rollout itself.
        Deployment.objects.filter(pk=rolled.pk).update(status=Deployment.SUPERSEDED)
        Deployment.objects.filter(pk=third.pk).update(status=Deployment.ACTIVE)
        namespace = rt.namespace_name("shop", "development")
        rt.apply(*rt.service_manifests(rollout.service_spec(third), namespace=namespace))
        sixth = services.deployment_deploy(component=component, build=build(component, {".choreo/component.yaml": UNREADY}))
        sixth = Deployment.objects.get(pk=sixth.pk)  # pending: nobody runs its job
        assert sixth.replaces_id == third.pk
        rt.apply(*rt.service_manifests(rollout.service_spec(sixth), namespace=namespace))
        orphan(sixth)
        assert runs.reap_orphans() == [f"rollout-{sixth.pk}"]
        assert Deployment.objects.get(pk=sixth.pk).status == Deployment.FAILED
        lines = read_text(sixth.log_stream).splitlines()
        unsettled = "the previous version was applied again but did not settle yet: Kubernetes reported no progress"
        assert any(unsettled in line for line in lines), lines
        assert lines[-1].endswith("The previous version was applied again and kept serving.")
        deployment = rt.apps.read_namespaced_deployment(rt.service_name(component.pk), namespace)
        assert deployment.metadata.annotations[f"{kubernetes.LABEL}/deployment"] == str(third.pk)


# A task that says it ran; on Docker it also does what kwok's stages do for these names
# (scripts/kube/kwok/choreo-stages.yaml): fail with 3, or take two minutes.
TASK_SCRIPT = """\
echo "ran with: $*"
[ -n "$CHOREO_TEST_SLOW" ] && sleep 120
[ -n "$CHOREO_TEST_EXIT_3" ] && exit 3
exit 0
"""


def _run(api, component) -> dict:
    response = api.post(f"/api/projects/shop/components/{component.name}/executions/", {"environment": "development"}, format="json")
    assert response.status_code == 201, response.content
    return response.data


def test_the_execution_contract(runtime_kind, make_task, api):  # noqa: F811 (the fixture)
    component = make_task(task_descriptor(task="{timeout: 4s}"), script=TASK_SCRIPT)
    dev = env(component, "development")
    deployed(component)

    ok = _run(api, component)
    run_task_jobs()
    ok = Execution.objects.get(pk=ok["id"])
    assert (ok.status, ok.exit_code) == (Execution.SUCCEEDED, 0), ok.error
    log = api.get(f"/api/executions/{ok.pk}/logs/").content.decode()
    # kwok runs no container: the log says the cluster gave none.
    assert "ran with: default-argument" in log if runtime_kind == "docker" else "(no output: the cluster gave no log" in log

    component_config_set(component=component, environment=dev, key="CHOREO_TEST_EXIT_3", value="yes")
    deployed(component)
    failed = _run(api, component)
    run_task_jobs()
    failed = Execution.objects.get(pk=failed["id"])
    assert (failed.status, failed.exit_code, failed.error) == (Execution.FAILED, 3, "exited with code 3")

    component_config_delete(component=component, environment=dev, key="CHOREO_TEST_EXIT_3")
    component_config_set(component=component, environment=dev, key="CHOREO_TEST_SLOW", value="yes")
    deployed(component)
    slow = _run(api, component)
    run_task_jobs()
    slow = Execution.objects.get(pk=slow["id"])
    assert slow.status == Execution.TIMED_OUT and "Timed out after 4s" in slow.error, slow.error
    assert slow.duration < 30

    cancelled = Execution.objects.get(pk=_run(api, component)["id"])
    answers = []

    def cancel():  # as a user would, once it runs (the worker must be this thread: RQ's signals)
        deadline = time.monotonic() + 30
        while Execution.objects.get(pk=cancelled.pk).status != Execution.RUNNING and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # its process started
        answers.append(execution_cancel(execution=cancelled).status)
        connection.close()

    canceller = threading.Thread(target=cancel)
    canceller.start()
    run_task_jobs()
    canceller.join(timeout=60)
    assert answers == [Execution.RUNNING]  # asked to stop; its worker stops it
    cancelled.refresh_from_db()
    assert cancelled.status == Execution.CANCELLED, cancelled.error

    # Nothing of the four runs is left running.
    if runtime_kind == "docker":
        assert docker.from_env().containers.list(filters={"label": our_labels(project="shop")}) == []
    else:
        rt = rollout.runtime()
        assert [once for once, code in rt.once_find(project="shop") if code is None] == []


@pytest.mark.kubernetes
def test_an_unreachable_cluster_fails_the_deployment_with_its_reason_and_changes_nothing(component, settings, monkeypatch, tmp_path):
    from tests.conftest import free_port

    v1 = build(component)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        f"clusters: [{{name: gone, cluster: {{server: 'https://127.0.0.1:{free_port()}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: gone, user: {token: nothing}}]\n"
        "contexts: [{name: gone, context: {cluster: gone, user: gone}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    settings.RUNTIME = "kubernetes"
    try:
        failed = finish(services.deployment_deploy(component=component, build=v1))
        assert failed.status == Deployment.FAILED
        assert "the Kubernetes API at https://127.0.0.1:" in failed.error and "cannot be reached" in failed.error, failed.error
        assert not Deployment.objects.filter(status=Deployment.ACTIVE).exists()
        assert rollout.health(failed).startswith("unknown: the Kubernetes API at")
    finally:
        settings.RUNTIME = "docker"  # the component's teardown may come first, and needs a runtime that answers
