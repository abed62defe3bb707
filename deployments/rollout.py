"""The zero-downtime rollout of one deployment, as SPEC says:

1. start the new replicas;
2. wait until each passes its health check (a timeout aborts the rollout);
3. add them to the ingress pool (each taking traffic once HAProxy's check passes);
4. take the old replicas out of the pool (drain: no new requests);
5. let their in-flight requests finish, up to a deadline;
6. stop them gracefully (SIGTERM, grace period, SIGKILL).

If anything fails before step 4, the new replicas are removed and the old version keeps
serving; the deployment is `failed` with the reason.
"""

from __future__ import annotations

import logging
import secrets
import time

from django.conf import settings
from django.db import transaction

from choreo_site import runs
from choreo_site.errors import PlatformError
from choreo_site.logstream import LogWriter
from deployments import configurables
from deployments.ingress import ingress
from deployments.ingress.haproxy import IngressError, slot_name
from deployments.models import Deployment, Route
from deployments.runtimes import Limits, Replica, ReplicaSpec, Runtime, RuntimeFailure, ServiceRuntime, ServiceSpec
from deployments.runtimes.docker import DockerRuntime
from deployments.services import host_for, route_ensure
from environments import permissions

log = logging.getLogger(__name__)


class RolloutFailed(Exception):
    pass


def runtime() -> Runtime:
    """The runtime replicas and executions run on (settings.RUNTIME); the rest of the app
    sees only `Runtime` (and `ServiceRuntime`, for one that rolls services out itself)."""
    if settings.RUNTIME == "kubernetes":
        from deployments.runtimes.kubernetes import KubernetesRuntime

        return KubernetesRuntime(settings.INSTANCE_NAMESPACE)
    return DockerRuntime(settings.INSTANCE_NAMESPACE)


def replica_limits(descriptor: dict) -> Limits:
    """The descriptor's `resources`, else the platform's defaults; processes always the platform's."""
    resources = descriptor.get("resources") or {}
    return Limits(
        memory=resources.get("memory") or settings.REPLICA_MEMORY,
        cpus=resources.get("cpu") or settings.REPLICA_CPUS or None,
        pids=settings.REPLICA_PIDS,
    )


def replica_spec(deployment: Deployment, index: int) -> ReplicaSpec:
    """What replica `index` of a deployment runs."""
    # The suffix keeps names unique even against leftovers of a database reset.
    # From primary keys: joined user-chosen names can collide.
    name = f"{settings.INSTANCE_NAMESPACE}-d{deployment.pk}-r{index}-{secrets.token_hex(3)}"
    return container_spec(deployment, name=name, labels={"deployment": str(deployment.pk)})


def container_spec(deployment: Deployment, *, name: str, labels: dict[str, str]) -> ReplicaSpec:
    """A container of a deployment (a replica, or a task's execution): its release's image,
    and the configuration of its snapshots (decrypted here, in the worker; never passed
    through a job)."""
    component, environment, release = deployment.component, deployment.environment, deployment.release
    values = configurables.merged(release.config, deployment.config)
    env, files = configurables.replica_configuration(release.descriptor, values)
    return ReplicaSpec(
        project=component.project.name,
        environment=environment.name,
        component=component.name,
        image=release.image_reference,
        name=name,
        environment_variables=env,
        files=files,
        labels=labels,
        limits=replica_limits(release.descriptor),
        secret_names=frozenset(key for key, value in values.items() if value.secret and not value.is_file),
    )


def service_spec(deployment: Deployment) -> ServiceSpec:
    """The whole service a deployment is, for a runtime that rolls services out itself."""
    component, descriptor = deployment.component, deployment.release.descriptor
    endpoint = _public_endpoint(descriptor)
    return ServiceSpec(
        deployment=deployment.pk,
        component_id=component.pk,
        replica=container_spec(deployment, name=f"c{component.pk}", labels={"deployment": str(deployment.pk)}),
        replicas=descriptor.get("replicas", 1),
        ports=tuple(e["port"] for e in descriptor.get("endpoints", [])),
        health=descriptor.get("health"),
        public=endpoint,
        host=host_for(component, deployment.environment) if endpoint else None,
        drain=settings.ROLLOUT_DRAIN_TIMEOUT,
        stop_grace=settings.ROLLOUT_STOP_GRACE,
    )


def _is_task(deployment: Deployment) -> bool:
    return deployment.release.descriptor.get("type", "").endswith("-task")


def _public_endpoint(descriptor: dict) -> dict | None:
    return next((e for e in descriptor.get("endpoints", []) if e["visibility"] == "public"), None)


def _replicas_of(deployment: Deployment) -> list[Replica]:
    return [Replica(r["id"], r["name"], r["address"], {}) for r in deployment.replicas]


def run(deployment_id: int) -> str:
    """Roll out a pending deployment (choreo_site.runs); returns its final status."""
    return runs.execute(KIND, deployment_id, _run, load=_load)


def _load(pk: int) -> Deployment:
    return Deployment.objects.select_related("component__project", "environment", "release", "replaces").get(pk=pk)


def _run(deployment: Deployment, writer: LogWriter, watchdog: runs.Watchdog) -> None:
    rt = runtime()
    started: list[Replica] = []
    added: list[tuple[str, str]] = []
    try:
        _roll_out(deployment, writer, rt, started, added)
    except BaseException:
        _undo(rt, started, added, writer)
        raise


def _undo(rt: Runtime, started: list[Replica], added: list[tuple[str, str]], writer: LogWriter) -> None:
    ing = ingress()
    for slot, name in added:
        try:
            ing.server_delete(slot, name)
        except IngressError as exc:
            writer.line(f"could not remove {slot}/{name} from the ingress: {exc}")
    for replica in started:
        rt.replica_stop(replica, grace=1)
    if started:
        writer.line("the new replicas were removed; the active version keeps serving")


def _roll_out(deployment: Deployment, writer: LogWriter, rt: Runtime, started: list[Replica], added: list[tuple[str, str]]) -> None:
    component, environment, release = deployment.component, deployment.environment, deployment.release
    descriptor = release.descriptor
    old = deployment.replaces
    count = descriptor.get("replicas", 1)
    health = descriptor.get("health")
    endpoint = _public_endpoint(descriptor)
    any_port = (descriptor.get("endpoints") or [{}])[0].get("port")
    if _is_task(deployment):
        _activate_task(deployment, writer, rt)
        return
    writer.line(f"==> Deploying {release.image_reference} to {environment.name} ({deployment.kind}, {count} replica(s))")

    values = configurables.merged(release.config, deployment.config)
    if values:
        listed = ", ".join(f"{k}{' (secret)' if v.secret else ''}{' (file)' if v.is_file else ''}" for k, v in sorted(values.items()))
        writer.line(f"==> Configuration: {listed}")
    if isinstance(rt, ServiceRuntime):
        _roll_out_service(deployment, writer, rt)
        return
    writer.line("==> Start the new replicas")
    for i in range(count):
        replica = rt.replica_start(replica_spec(deployment, i))
        started.append(replica)
        writer.line(f"started {replica.name} at {replica.address}")
    Deployment.objects.filter(pk=deployment.pk).update(replicas=[{"id": r.id, "name": r.name, "address": r.address} for r in started])

    startup = (health or {}).get("startupTimeout", 60.0)
    interval = (health or {}).get("interval", 1.0)
    what = _describe_health(health, any_port)
    writer.line(f"==> Health check: {what}, within {startup:g}s")
    deadline = time.monotonic() + startup
    pending = list(started)
    while pending:
        pending = [r for r in pending if not rt.replica_healthy(r, health, port=any_port)]
        if not pending:
            break
        if time.monotonic() > deadline:
            tail = "; ".join(line for _, line in rt.logs(pending[0])[-3:])
            raise RolloutFailed(
                f"{pending[0].name} did not pass its health check ({what}) within {startup:g}s"
                + (f"; its last output: {tail}" if tail else "")
            )
        time.sleep(min(interval, 1.0))
    writer.line(f"all {count} replica(s) healthy")

    if endpoint is not None:
        route = route_ensure(component=component, environment=environment)
        slot = slot_name(route.slot)
        ing = ingress()
        writer.line(f"==> Add to the ingress pool ({route.host} → {slot})")
        records = []
        for replica in started:
            name = ing.server_free(slot)
            ing.server_add(slot, name, replica.address, endpoint["port"])
            added.append((slot, name))
            records.append({"id": replica.id, "name": replica.name, "address": replica.address, "server": name})
            Deployment.objects.filter(pk=deployment.pk).update(
                replicas=records + [{"id": r.id, "name": r.name, "address": r.address} for r in started[len(records) :]]
            )
            if not ing.wait_up(slot, name, timeout=max(startup, 10)):
                raise RolloutFailed(f"the ingress could not reach {replica.name} on port {endpoint['port']}")
        ing.route_set(route.host, slot)
        writer.line(f"serving at http://{route.host}:{settings.INGRESS_PORT}{endpoint['basePath']}")
        if old is not None:
            _drain(ing, slot, old, writer)
    elif old is not None:
        writer.line("no public endpoint: nothing to change in the ingress")

    # From here the new version serves: the switch cannot be undone by a failure below.
    added.clear()
    started_ids = [r.id for r in started]
    started.clear()
    _retire_replaced(deployment)
    taken = runs.finish(KIND, deployment, Deployment.ACTIVE)
    if not taken:
        writer.line("the deployment was changed by someone else while rolling out")
    if old is not None:  # it serves no more either way
        writer.line(f"==> Stop the old replicas (SIGTERM, {settings.ROLLOUT_STOP_GRACE}s grace)")
        for replica in _replicas_of(old):
            if replica.id not in started_ids:
                rt.replica_stop(replica, grace=settings.ROLLOUT_STOP_GRACE)
        Deployment.objects.filter(pk=old.pk).update(replicas=[])
    if taken:
        writer.line(f"==> Deployment {deployment.pk} is active")


def _roll_out_service(deployment: Deployment, writer: LogWriter, rt: ServiceRuntime) -> None:
    """The rollout on a runtime that switches versions itself (Kubernetes): it brings the
    new version to serving, or puts the old one back and says why."""
    old = deployment.replaces
    spec = service_spec(deployment)
    previous = service_spec(old) if old is not None and not _is_task(old) else None
    writer.line(f"==> Health check: {_describe_health(spec.health, spec.ports[0] if spec.ports else None)}, within {spec.startup:g}s")
    try:
        rt.service_deploy(spec, previous=previous, log=writer.line)
    except RuntimeFailure:
        raise  # the runtime put the previous version back, or says why it could not
    except BaseException:
        rt.service_revert(spec, previous=previous, log=writer.line)
        writer.line("the previous version was applied again")
        raise
    if spec.host:
        writer.line(f"serving at http://{spec.host}{spec.public['basePath']} through the cluster's ingress")
    _retire_replaced(deployment)
    if runs.finish(KIND, deployment, Deployment.ACTIVE):
        writer.line(f"==> Deployment {deployment.pk} is active")
    else:
        writer.line("the deployment was changed by someone else while rolling out")


def _activate_task(deployment: Deployment, writer: LogWriter, rt: Runtime) -> None:
    """A task has no replicas and no route: its deployment becomes the revision its
    executions run (executions already running keep theirs). What an earlier service
    version of the component ran there is taken out of the ingress and stopped."""
    release, old = deployment.release, deployment.replaces
    writer.line(
        f"==> Deploying {release.image_reference} to {deployment.environment.name} ({deployment.kind}): a {release.descriptor['type']}"
    )
    writer.line("a task has no replicas and no route: its executions run this deployment from now on")
    with transaction.atomic():  # never a moment with no active deployment (the scheduler reads it)
        _retire_replaced(deployment)
        taken = runs.finish(KIND, deployment, Deployment.ACTIVE)
        if not taken:
            transaction.set_rollback(True)
    if not taken:
        writer.line("the deployment was changed by someone else while rolling out")
        return
    if old is not None and not _is_task(old) and isinstance(rt, ServiceRuntime):
        rt.service_remove(
            project=deployment.component.project.name,
            environment=deployment.environment.name,
            component_id=deployment.component_id,
            grace=settings.ROLLOUT_STOP_GRACE,
        )
        writer.line("the service it replaces was removed")
    elif old is not None and old.replicas:
        route = Route.objects.filter(component=deployment.component, environment=deployment.environment).first()
        ing = ingress()
        if route is not None and ing.is_up():
            ing.route_delete(route.host)
            for name in _servers_of(old):
                ing.server_delete(slot_name(route.slot), name)
        for replica in _replicas_of(old):
            rt.replica_stop(replica, grace=settings.ROLLOUT_STOP_GRACE)
        Deployment.objects.filter(pk=old.pk).update(replicas=[])
        writer.line("the replicas of the service it replaces were stopped")
    writer.line(f"==> Deployment {deployment.pk} is active")


def _retire_replaced(deployment: Deployment) -> None:
    """What `deployment` replaces stops being active: rolled back when `deployment` is a
    rollback, superseded otherwise (a later rollback goes to a superseded one by default,
    never to one that was rolled back: deployments.services.rollback_target)."""
    old = deployment.replaces
    if old is not None:
        status = Deployment.ROLLED_BACK if deployment.kind == Deployment.ROLLBACK else Deployment.SUPERSEDED
        Deployment.objects.filter(pk=old.pk, status=Deployment.ACTIVE).update(status=status)


def _ended(deployment: Deployment, status: str) -> None:
    """A task's schedule follows what is active in the environment (tasks.services)."""
    if status == Deployment.ACTIVE:
        from tasks.services import schedule_sync

        schedule_sync(component=deployment.component, environment=deployment.environment)


def _servers_of(deployment: Deployment) -> list[str]:
    return [r["server"] for r in deployment.replicas if r.get("server")]


def _drain(ing, slot: str, old: Deployment, writer) -> None:
    names = _servers_of(old)
    present = {s.name for s in ing.servers(slot)}
    names = [n for n in names if n in present]
    if not names:
        return
    writer.line(f"==> Drain the old replicas ({', '.join(names)}), at most {settings.ROLLOUT_DRAIN_TIMEOUT}s")
    for name in names:
        ing.server_drain(slot, name)
    deadline = time.monotonic() + settings.ROLLOUT_DRAIN_TIMEOUT
    for name in names:
        if not ing.wait_drained(slot, name, deadline):
            writer.line(f"{name} still had requests in flight at the deadline")
        ing.server_delete(slot, name)


def _describe_health(health: dict | None, port: int | None) -> str:
    if not health:
        return f"TCP connect to port {port}" if port else "container running"
    if "http" in health:
        return f"HTTP GET {health['http']['path']} on port {health['http']['port']}"
    if "tcp" in health:
        return f"TCP connect to port {health['tcp']['port']}"
    return f"exec {' '.join(health['exec']['command'])}"


def replicas_reconcile() -> list[str]:
    """Start a replacement for each replica of an active deployment whose container is
    gone (removed by hand, or lost with the host). Running containers are not touched."""
    rt = runtime()
    replaced = []
    active = Deployment.objects.filter(status=Deployment.ACTIVE).select_related("component__project", "environment", "release")
    if isinstance(rt, ServiceRuntime):

        def current(pk: int) -> bool:
            """Asked when the cluster runs another deployment than the active one read above:
            a rollout under way (or just ended) put it there, and putting the active one back
            would undo it. Read now, after the cluster was."""
            statuses = (Deployment.PENDING, Deployment.ROLLING_OUT, Deployment.ACTIVE)
            return Deployment.objects.filter(pk=pk, status__in=statuses).exists()

        for deployment in active:
            if not _is_task(deployment):
                made = rt.service_reconcile(service_spec(deployment), current=current)
                if made:
                    LogWriter(deployment.log_stream).line(f"missing in the cluster, made again: {', '.join(made)}")
                    replaced += made
        return replaced
    for deployment in active:
        running = {r.id for r in rt.replicas(deployment=str(deployment.pk))}
        records, changed = [], False
        for index, record in enumerate(deployment.replicas):
            if record["id"] in running:
                records.append(record)
                continue
            replica = rt.replica_start(replica_spec(deployment, index))
            records.append({"id": replica.id, "name": replica.name, "address": replica.address, "server": record.get("server")})
            replaced.append(replica.name)
            changed = True
            LogWriter(deployment.log_stream).line(f"replica {record['name']} was gone; started {replica.name} in its place")
        if changed:
            Deployment.objects.filter(pk=deployment.pk).update(replicas=records)
    return replaced


def ingress_reconcile() -> None:
    """Make the ingress route every active deployment's replicas, e.g. after HAProxy
    restarted with an empty map. Touches no container and no healthy route. (On a runtime
    that rolls services out itself, the cluster's ingress routes to them.)"""
    if settings.RUNTIME != "docker":
        return
    ing = ingress()
    if not ing.is_up():
        return
    routes = ing.routes()
    for route in Route.objects.select_related("component", "environment"):
        active = route.component.deployments.filter(environment=route.environment, status=Deployment.ACTIVE).first()
        if active is None:
            continue
        endpoint = _public_endpoint(active.release.descriptor)
        if endpoint is None:
            continue
        slot = slot_name(route.slot)
        present = {s.name: s.address for s in ing.servers(slot)}
        records, changed = [], False
        for record in active.replicas:
            name = record.get("server")
            if name is None or present.get(name) != record["address"]:
                if name is None or name in present:  # never recorded, or its server now serves another replica
                    name = ing.server_free(slot)
                ing.server_add(slot, name, record["address"], endpoint["port"])
                changed = changed or name != record.get("server")
            records.append({**record, "server": name})
        if changed:
            Deployment.objects.filter(pk=active.pk).update(replicas=records)
        if routes.get(route.host) != slot:
            ing.route_set(route.host, slot)


def project_remove(*, project) -> None:
    """Stop and remove what the project runs (see `environments_remove`)."""
    environments_remove(project=project, environments=list(project.environments.all()), what=f"Project {project.name}")


def environments_remove(*, project, environments: list, what: str) -> None:
    """Stop and remove what runs in these environments of the project (see `_remove`)."""

    def stop(rt) -> None:
        for environment in environments:
            rt.environment_remove(project=project.name, environment=environment.name, grace=settings.ROLLOUT_STOP_GRACE)

    _remove(
        deployments=Deployment.objects.filter(component__project=project, environment__in=environments),
        routes=Route.objects.filter(component__project=project, environment__in=environments),
        stop=stop,
        what=what,
    )


def component_remove(*, component) -> None:
    """Stop and remove what the component runs in every environment: its replicas, its task
    containers and its ingress routes (see `_remove`)."""

    def stop(rt) -> None:
        if isinstance(rt, ServiceRuntime):
            for environment in component.project.environments.all():
                grace = settings.ROLLOUT_STOP_GRACE
                rt.service_remove(project=component.project.name, environment=environment.name, component_id=component.pk, grace=grace)
            return
        for replica in rt.replicas(project=component.project.name, component=component.name):
            rt.replica_stop(replica, grace=settings.ROLLOUT_STOP_GRACE)

    _remove(
        deployments=component.deployments.all(),
        routes=Route.objects.filter(component=component),
        stop=stop,
        what=f"Component {component.name}",
    )


def _remove(*, deployments, routes, stop, what: str) -> None:
    """Take the routes out of the ingress, then `stop(runtime)`. Idempotent: when a step
    fails, the active deployments are active again (reconciliation restores what was
    already stopped), the records stay, and the delete can be tried again."""
    active = list(deployments.filter(status=Deployment.ACTIVE).values_list("pk", flat=True))
    # First, so that reconciliation never starts a replacement for what is being removed.
    Deployment.objects.filter(pk__in=active, status=Deployment.ACTIVE).update(status=Deployment.SUPERSEDED)
    try:
        rt = runtime()
        ing = ingress()
        for route in routes:
            if ing.is_up():
                ing.route_delete(route.host)
                for server in ing.servers(slot_name(route.slot)):
                    ing.server_delete(slot_name(route.slot), server.name)
        stop(rt)
    except (RuntimeFailure, IngressError) as exc:
        Deployment.objects.filter(pk__in=active, status=Deployment.SUPERSEDED).update(status=Deployment.ACTIVE)
        detail = f"{what} could not be removed: {exc}. Nothing was deleted; try again."
        raise PlatformError(detail, status_code=503) from None


def health(deployment: Deployment) -> str:
    """How many of the deployment's replicas the ingress (or, without a public endpoint,
    the runtime) sees up, for the Deploy page."""
    if settings.RUNTIME != "docker":
        try:
            rt = runtime()
            state = rt.service_state(service_spec(deployment)) if isinstance(rt, ServiceRuntime) else None
        except RuntimeFailure as exc:
            return f"unknown: {exc}"
        return f"{state.ready}/{state.desired} replicas ready in the cluster" if state else ""
    total = len(deployment.replicas)
    route = Route.objects.filter(component=deployment.component, environment=deployment.environment).first()
    ing = ingress()
    if route is not None and _public_endpoint(deployment.release.descriptor) and ing.is_up():
        up = {s.name for s in ing.servers(slot_name(route.slot)) if s.up}
        return f"{len(set(_servers_of(deployment)) & up)}/{total} replicas up in the ingress"
    running = {r.id for r in runtime().replicas(deployment=str(deployment.pk))}
    return f"{sum(1 for r in deployment.replicas if r['id'] in running)}/{total} replicas running"


def runtime_log_pairs(*, deployment: Deployment, since: float | None) -> list[tuple[str, str, str]]:
    """(replica name, runtime stamp, line) of each of the deployment's replicas, unredacted:
    read them through `deployments.runtime_logs`."""
    rt = runtime()
    if isinstance(rt, ServiceRuntime):
        return rt.service_logs(service_spec(deployment), since=since)
    return [(replica.name, stamp, line) for replica in _replicas_of(deployment) for stamp, line in rt.logs(replica, since=since)]


def _orphaned(deployment: Deployment, reason: str) -> None:
    """A rollout whose worker died (choreo_site.runs' reaper): resume it or cleanly fail it.

    If the new replicas already serve (their servers are in the ingress and the old ones
    are gone), the switch happened: the deployment becomes active. Otherwise its replicas
    and servers are removed, and it fails with the reason; the old version keeps serving.
    """
    deployment = _load(deployment.pk)
    rt = runtime()
    if isinstance(rt, ServiceRuntime):
        if _is_task(deployment):  # nothing of it runs yet: its executions start from an active one
            runs.fail(KIND, deployment, reason, note="The active version stays.")
        else:
            _orphaned_service(deployment, reason, rt)
        return
    route = Route.objects.filter(component=deployment.component, environment=deployment.environment).first()
    ing = ingress()
    servers = {s.name for s in ing.servers(slot_name(route.slot))} if route is not None and ing.is_up() else set()
    mine = set(_servers_of(deployment)) & servers
    old = deployment.replaces
    old_serving = old is not None and bool(set(_servers_of(old)) & servers)
    if mine and not old_serving:
        if runs.finish(KIND, deployment, Deployment.ACTIVE):
            _retire_replaced(deployment)
            if old is not None:
                for replica in _replicas_of(old):
                    rt.replica_stop(replica, grace=settings.ROLLOUT_STOP_GRACE)
            writer = LogWriter(deployment.log_stream)
            writer.line("==> The worker stopped after the switch; the new version serves: deployment resumed as active")
            writer.end(Deployment.ACTIVE)
        return
    if route is not None:
        for name in mine:
            ing.server_delete(slot_name(route.slot), name)
    for replica in rt.replicas(deployment=str(deployment.pk)):
        rt.replica_stop(replica, grace=1)
    runs.fail(KIND, deployment, reason, note="Its replicas were removed; the active version keeps serving.")


def _orphaned_service(deployment: Deployment, reason: str, rt: ServiceRuntime) -> None:
    """`_orphaned` on a runtime that rolls out itself: active if the cluster completed the
    rollout of this very deployment, else the previous version is applied again."""
    spec = service_spec(deployment)
    old = deployment.replaces
    previous = service_spec(old) if old is not None and not _is_task(old) else None
    if rt.service_state(spec).serving:
        if runs.finish(KIND, deployment, Deployment.ACTIVE):
            _retire_replaced(deployment)
            writer = LogWriter(deployment.log_stream)
            writer.line("==> The worker stopped after the cluster completed the rollout: deployment resumed as active")
            writer.end(Deployment.ACTIVE)
        return
    rt.service_revert(spec, previous=previous, log=LogWriter(deployment.log_stream).line)
    runs.fail(KIND, deployment, reason, note="The previous version was applied again and kept serving.")


def _enqueue_again(deployment: Deployment) -> None:
    from choreo_site.queues import default_queue
    from deployments import jobs

    default_queue().enqueue(jobs.deployment_rollout, deployment.pk, job_id=deployment.job_id, job_timeout=1800)


KIND = runs.Kind(
    name="rollout",
    model=Deployment,
    queued=Deployment.PENDING,
    running=Deployment.ROLLING_OUT,
    succeeded=Deployment.ACTIVE,
    failed=Deployment.FAILED,
    final=Deployment.FINAL,
    expected=(RolloutFailed, RuntimeFailure, IngressError),
    job_id=lambda deployment: deployment.job_id,
    enqueue=_enqueue_again,
    readable=permissions.check_view,
    on_orphan=_orphaned,
    ended=_ended,
)
