"""State changes of releases and deployments: deploy, promote, roll back, tear down.
Pages, the API, auto deploy and commands call these; the rollout itself runs as an RQ job
(`deployments.jobs.deployment_rollout`)."""

from __future__ import annotations

import hashlib
import json

from django.conf import settings
from django.db import transaction

from builds.models import Build, Component
from builds.services import build_auto_deploy_refused, component_deleting
from choreo_site import audit
from choreo_site.errors import Conflict, PlatformError
from choreo_site.queues import default_queue, enqueue_after_commit
from deployments import configurables
from deployments.models import Deployment, Release, Route
from environments import approvals, permissions
from environments.models import ApprovalRequest, ConfigValue, Environment, Project
from environments.services import config_delete, config_list, config_set, config_snapshot


def _config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _independent_snapshot(component: Component) -> dict[str, int]:
    """The component's environment-independent configuration now, as version ids."""
    return config_snapshot(project=component.project, component=component.name)


def _environment_snapshot(component: Component, environment: Environment) -> dict[str, int]:
    return config_snapshot(project=component.project, component=component.name, environment=environment)


def host_for(component: Component, environment: Environment) -> str:
    return f"{component.name}.{environment.name}.{component.project.name}.{settings.INGRESS_DOMAIN}"


def urls_for(deployment: Deployment) -> list[str]:
    public = [e for e in deployment.release.descriptor.get("endpoints", []) if e["visibility"] == "public"]
    if not public:
        return []
    port = "" if settings.INGRESS_PORT == 80 else f":{settings.INGRESS_PORT}"
    return [f"http://{host_for(deployment.component, deployment.environment)}{port}{public[0]['basePath']}"]


def deployment_get(*, pk: int, actor, action: str = permissions.VIEW) -> Deployment:
    """A deployment by id, if `actor` may do `action` in its project; else 404, like a
    missing one. `actor=None` is the platform itself."""
    rows = Deployment.objects.select_related("component__project", "environment", "release")
    return permissions.visible_get(rows, pk=pk, noun="Deployment", actor=actor, action=action)


def deployment_active(*, component: Component, environment: Environment) -> Deployment | None:
    return component.deployments.filter(environment=environment, status=Deployment.ACTIVE).select_related("release").first()


def _release_for(build: Build) -> Release:
    config = _independent_snapshot(build.component)
    release, _ = Release.objects.get_or_create(
        build=build,
        config_hash=_config_hash(config),
        defaults={
            "component": build.component,
            "image": build.image,
            "digest": build.digest,
            "image_reference": build.image_reference,
            "descriptor": build.descriptor,
            "config": config,
        },
    )
    return release


def _check_deployable(component: Component, environment: Environment) -> None:
    if environment.project_id != component.project_id:
        raise PlatformError("The environment belongs to another project.", errors={"environment": ["Unknown environment."]})
    if component_deleting(component):
        raise Conflict(f"{component.name} is being deleted.", errors={"component": ["Being deleted."]})
    busy = component.deployments.filter(environment=environment, status__in=(Deployment.PENDING, Deployment.ROLLING_OUT)).first()
    if busy is not None:
        raise Conflict(
            f"Deployment {busy.pk} to {environment.name} is still {busy.status}; wait for it to finish.", errors={"environment": ["Busy."]}
        )


def _lock(component: Component) -> None:
    """Lock the project, then the component: the order every change to a project's
    deployments, configuration and approval requests takes (environments.approvals)."""
    Project.objects.select_for_update().filter(pk=component.project_id).first()
    Component.objects.select_for_update().filter(pk=component.pk).first()


def _checked_create(*, component, environment, release, config, kind, actor, action, summary, rollback_of=None):
    """Refuse, naming each key, when a configurable the release declares would be missing
    or invalid with `config` in the environment; else deploy now, or, in a protected
    environment, ask for approval of exactly this release and these configuration versions
    (environments.approvals)."""
    configurables.require(
        release.descriptor, configurables.merged(release.config, config), action=action, environment_name=environment.name
    )
    payload = {"release": release.pk, "config": config, "rollback_of": rollback_of.pk if rollback_of else None}
    request = approvals.gate(environment=environment, component=component.name, kind=kind, payload=payload, summary=summary, actor=actor)
    if request is not None:
        return request
    return _create(component=component, environment=environment, release=release, config=config, kind=kind, rollback_of=rollback_of)


@transaction.atomic
def deployment_approved(request: ApprovalRequest) -> dict:
    """Carry out an approved deploy, promotion or rollback: the pinned release and
    configuration versions, checked again as at request time."""
    component = Component.objects.filter(project=request.project, name=request.component).first()
    release = Release.objects.filter(pk=request.payload["release"], component=component).first() if component else None
    if release is None:
        raise Conflict(f"Request {request.pk} can no longer be carried out: its component or release is gone.", errors={"status": ["gone"]})
    _lock(component)
    _check_deployable(component, request.environment)
    rollback_of = (
        component.deployments.filter(pk=request.payload.get("rollback_of")).first() if request.payload.get("rollback_of") else None
    )
    configurables.require(
        release.descriptor,
        configurables.merged(release.config, request.payload["config"]),
        action=request.summary,
        environment_name=request.environment.name,
    )
    deployment = _create(
        component=component,
        environment=request.environment,
        release=release,
        config=request.payload["config"],
        kind=request.kind,
        rollback_of=rollback_of,
    )
    return {"deployment": deployment.pk}


def _create(*, component, environment, release, config, kind, rollback_of=None) -> Deployment:
    deployment = Deployment.objects.create(
        component=component,
        environment=environment,
        release=release,
        config=config,
        kind=kind,
        replaces=deployment_active(component=component, environment=environment),
        rollback_of=rollback_of,
    )
    from deployments import jobs

    details = {"build": release.build_id, "digest": release.digest, "config": config}  # key: version, never a value
    if rollback_of is not None:
        details["rollback_of"] = rollback_of.pk
    target = f"deployment {deployment.pk} of {component.name}"
    audit.record(f"deployment.{kind}", project=component.project, environment=environment, target=target, details=details)
    enqueue_after_commit(default_queue(), jobs.deployment_rollout, deployment.pk, job_id=deployment.job_id, job_timeout=1800)
    return deployment


@transaction.atomic
def deployment_deploy(
    *,
    component: Component,
    environment: Environment | None = None,
    build: Build | None = None,
    kind: str = Deployment.DEPLOY,
    actor=None,
) -> Deployment | ApprovalRequest:
    """Deploy a build (default: the newest succeeded) to an environment (default: the first).

    Without a build and with a deployment active there, redeploys (`_redeploy`). Refuses, naming each key, when a configurable
    the build declares would be missing or invalid there. Enqueues the rollout after commit.
    """
    _lock(component)
    environment = environment or component.project.environments.order_by("position").first()
    _check_deployable(component, environment)
    active = deployment_active(component=component, environment=environment) if build is None else None
    if active is not None:
        return _redeploy(component=component, environment=environment, active=active, kind=kind, actor=actor)
    if build is None:
        build = component.builds.filter(status=Build.SUCCEEDED).order_by("-created_at").first()
        if build is None:
            raise PlatformError(
                f"{component.name} has no successful build to deploy: build it first.", errors={"build": ["No successful build."]}
            )
    if build.component_id != component.pk:
        raise PlatformError(f"Build {build.pk} is not a build of {component.name}.", errors={"build": ["Another component's build."]})
    if build.status != Build.SUCCEEDED or build.image_id is None:
        raise PlatformError(
            f"Build {build.pk} is {build.status}: only a succeeded build can be deployed.", errors={"build": [f"Build is {build.status}."]}
        )
    return _checked_create(
        component=component,
        environment=environment,
        release=_release_for(build),
        config=_environment_snapshot(component, environment),
        kind=kind,
        actor=actor,
        action=f"deploy build {build.pk} to {environment.name}",
        summary=f"deploy build {build.pk} of {component.name} to {environment.name}",
    )


def _is_first(environment: Environment) -> bool:
    return not environment.project.environments.filter(position__lt=environment.position).exists()


def _redeploy_independent(component: Component, environment: Environment, active: Deployment) -> dict[str, int]:
    """The environment-independent configuration a redeploy runs with: as it is now in the
    first environment (the set-up area, where it enters releases), and as promoted in a
    higher one (so a redeploy there never brings what was not promoted)."""
    return _independent_snapshot(component) if _is_first(environment) else active.release.config


def _redeploy(*, component, environment, active, kind, actor) -> Deployment | ApprovalRequest:
    """The active image again, with the configuration saved since (`config_not_deployed`)."""
    release = _release_for(active.release.build) if _is_first(environment) else active.release
    return _checked_create(
        component=component,
        environment=environment,
        release=release,
        config=_environment_snapshot(component, environment),
        kind=kind,
        actor=actor,
        action=f"redeploy {component.name} in {environment.name}",
        summary=f"redeploy build {release.build_id} of {component.name} in {environment.name}",
    )


def config_not_deployed(*, component: Component, environment: Environment, active: Deployment) -> list[str]:
    """The keys a redeploy would add, remove or change: configuration saved but not running."""
    now = configurables.merged(_redeploy_independent(component, environment, active), _environment_snapshot(component, environment))
    return configurables.changed_keys(configurables.merged(active.release.config, active.config), now)


def deployment_changes(*, current: Deployment | None, release: Release, config: dict[str, int]) -> dict:
    """What replacing `current` with `release` and `config` changes: the digest, and the
    configuration keys (by fingerprint, never by value)."""
    new = configurables.merged(release.config, config)
    old = configurables.merged(current.release.config, current.config) if current else {}
    return {
        "digest": {"current": current.release.digest if current else None, "new": release.digest},
        "changes_image": current is None or current.release.digest != release.digest,
        "configuration": configurables.changes(old, new),
    }


def _promotion_target(component: Component, source: Environment, target: Environment) -> Deployment:
    if target.position <= source.position:
        raise PlatformError(
            f"Cannot promote from {source.name} to {target.name}: promotion goes up the order "
            f"({', '.join(e.name for e in component.project.environments.order_by('position'))}).",
            errors={"to": ["Not a higher environment."]},
        )
    active = deployment_active(component=component, environment=source)
    if active is None:
        raise PlatformError(f"Nothing is deployed in {source.name} to promote.", errors={"from": ["No active deployment."]})
    return active


def promotion_preview(*, component: Component, source: Environment, target: Environment) -> dict:
    """What a promotion would change in the target: digest, configuration keys (by their
    fingerprints, never values), and the configurables the target would be missing."""
    active = _promotion_target(component, source, target)
    config = _environment_snapshot(component, target)
    changes = deployment_changes(current=deployment_active(component=component, environment=target), release=active.release, config=config)
    missing = configurables.problems(active.release.descriptor, configurables.merged(active.release.config, config))
    return {
        "from": source.name,
        "to": target.name,
        "build": active.release.build_id,
        "digest": {"current": changes["digest"]["current"], "promoted": active.release.digest},
        "changes_image": changes["changes_image"],
        "configuration": changes["configuration"],
        "missing_configurables": [{"key": key, "reasons": reasons} for key, reasons in sorted(missing.items())],
    }


@transaction.atomic
def deployment_promote(*, component: Component, source: Environment, target: Environment, actor=None) -> Deployment | ApprovalRequest:
    """Deploy the release active in `source` to the higher `target`: same digest, same
    environment-independent configuration, the target's own configuration. Never rebuilds.
    Refuses, naming each key, when the target lacks a configurable the release needs."""
    _lock(component)
    active = _promotion_target(component, source, target)
    _check_deployable(component, target)
    return _checked_create(
        component=component,
        environment=target,
        release=active.release,
        config=_environment_snapshot(component, target),
        kind=Deployment.PROMOTE,
        actor=actor,
        action=f"promote from {source.name} to {target.name}",
        summary=f"promote build {active.release.build_id} of {component.name} from {source.name} to {target.name}",
    )


# What a rollback may repeat: a deployment that ran in the environment and was replaced there.
REPLACED = (Deployment.SUPERSEDED, Deployment.ROLLED_BACK)


def rollback_candidates(*, component: Component, environment: Environment):
    """The deployments a rollback may repeat: those that ran in the environment and were
    replaced there (a rolled-back one only when asked for by id)."""
    return component.deployments.filter(environment=environment, status__in=REPLACED)


def _differs(deployment: Deployment, active: Deployment) -> bool:
    return deployment.release_id != active.release_id or deployment.config != active.config


def rollback_offered(*, active: Deployment, deployment: Deployment) -> bool:
    """Whether the pages offer "Roll back to this" for a deployment of the active one's
    environment: a candidate that differs from what runs now. (A POST naming any candidate
    is honoured: repeating what runs is a redeploy, not an error.)"""
    return deployment.status in REPLACED and _differs(deployment, active)


def rollback_target(*, component: Component, environment: Environment, active: Deployment) -> Deployment | None:
    """The default target (SPEC): the newest earlier deployment there that became active,
    differs from the active one, and was not itself rolled back. So pressing Rollback twice
    goes further back instead of bringing the rolled-back version again."""
    earlier = rollback_candidates(component=component, environment=environment).filter(
        status=Deployment.SUPERSEDED, created_at__lt=active.created_at
    )
    for deployment in earlier.order_by("-created_at", "-pk").iterator(chunk_size=20):
        if _differs(deployment, active):
            return deployment
    return None


@transaction.atomic
def deployment_rollback(
    *, component: Component, environment: Environment, to: int | None = None, actor=None
) -> Deployment | ApprovalRequest:
    """Repeat an earlier deployment exactly: its release (image and environment-independent
    configuration) and its environment's configuration, secret versions included. Default:
    `rollback_target`."""
    _lock(component)
    active = deployment_active(component=component, environment=environment)
    if active is None:
        raise PlatformError(f"Nothing is deployed in {environment.name} to roll back.", errors={"environment": ["No active deployment."]})
    if to is not None:
        target = rollback_candidates(component=component, environment=environment).filter(pk=to).first()
        if target is None:
            raise PlatformError(
                f"Deployment {to} is not an earlier deployment of {component.name} in {environment.name}.",
                errors={"to": ["Not an earlier deployment here."]},
            )
    else:
        target = rollback_target(component=component, environment=environment, active=active)
        if target is None:
            raise PlatformError(
                f"There is no earlier deployment in {environment.name} to roll back to: none that ran there differs from "
                f"deployment {active.pk} without having been rolled back.",
                errors={"environment": ["No history."]},
            )
    _check_deployable(component, environment)
    return _checked_create(
        component=component,
        environment=environment,
        release=target.release,
        config=target.config,
        kind=Deployment.ROLLBACK,
        rollback_of=target,
        actor=actor,
        action=f"roll back {environment.name} to deployment {target.pk}",
        summary=f"roll {component.name} in {environment.name} back to deployment {target.pk}",
    )


def route_ensure(*, component: Component, environment: Environment) -> Route:
    """The ingress slot of a component in an environment, taking a free one if needed."""
    with transaction.atomic():
        route = Route.objects.select_for_update().filter(component=component, environment=environment).first()
        if route is not None:
            return route
        used = set(Route.objects.values_list("slot", flat=True))
        free = next((i for i in range(settings.INGRESS_SLOTS) if i not in used), None)
        if free is None:
            raise PlatformError(
                f"The ingress has no free slot (INGRESS_SLOTS={settings.INGRESS_SLOTS}): raise it and restart the platform."
            )
        return Route.objects.create(component=component, environment=environment, host=host_for(component, environment), slot=free)


def auto_deploy(*, build_id: int) -> Deployment | None:
    """After a successful automatic build: deploy it to the first environment when the
    component has Auto Deploy on Build on."""
    build = Build.objects.select_related("component__project").get(pk=build_id)
    component = build.component
    if build.trigger == Build.MANUAL or not (component.auto_build_on_commit and component.auto_deploy_on_build):
        return None
    try:
        return deployment_deploy(component=component, build=build, kind=Deployment.AUTO)
    except PlatformError as exc:
        # The pipeline stops here, before any rollout; the build keeps the reason.
        build_auto_deploy_refused(build=build, reason=exc.detail)
        return None


def environment_in_use(*, environment: Environment) -> bool:
    """Whether anything is deployed, being deployed or routed in the environment."""
    live = (Deployment.PENDING, Deployment.ROLLING_OUT, Deployment.ACTIVE)
    return environment.deployments.filter(status__in=live).exists() or environment.routes.exists()


def environment_teardown(*, environment: Environment) -> None:
    """Stop and remove every replica, network and route of the environment."""
    from deployments import rollout

    busy = environment.deployments.filter(status__in=(Deployment.PENDING, Deployment.ROLLING_OUT)).first()
    if busy is not None:
        raise Conflict(
            f"Deployment {busy.pk} to {environment.name} is still {busy.status}; wait for it to finish.", errors={"environment": ["Busy."]}
        )
    rollout.environments_remove(project=environment.project, environments=[environment], what=f"Environment {environment.name}")


def component_delete_check(*, component: Component) -> None:
    """A component is not deleted while it rolls out: the rollout would start replicas
    after the teardown stopped them."""
    busy = component.deployments.filter(status__in=(Deployment.PENDING, Deployment.ROLLING_OUT)).select_related("environment").first()
    if busy is not None:
        raise Conflict(
            f"{component.name} is rolling out (deployment {busy.pk} to {busy.environment.name} is {busy.status}): "
            "wait for it to finish, then delete.",
            errors={"component": ["Rolling out."]},
        )


def component_teardown(*, component: Component) -> None:
    """Stop and remove every replica and route of the component."""
    from deployments import rollout

    rollout.component_remove(component=component)


def component_running(*, component: Component) -> list[str]:
    """What deleting the component stops, per environment, for its confirmation."""
    found = []
    active = component.deployments.filter(status=Deployment.ACTIVE).select_related("environment")
    for deployment in active.order_by("environment__position"):
        found.append(f"deployment #{deployment.pk} in {deployment.environment.name} ({len(deployment.replicas)} replica(s))")
    for route in component.routes.select_related("environment").order_by("environment__position"):
        found.append(f"the route {route.host}")
    return found


def project_teardown(*, project: Project) -> None:
    """Stop and remove every replica, network and route the project has."""
    from deployments import rollout

    rollout.project_remove(project=project)


def component_config_set(
    *,
    component: Component,
    environment: Environment | None,
    key: str,
    value: str | int | float | bool | bytes,
    secret: bool = False,
    is_file: bool = False,
    filename: str = "",
    actor=None,
) -> ConfigValue | ApprovalRequest:
    """Set a component's configuration value, environment-independent when `environment`
    is None, checked against the configurable its newest build declares for `key`.
    Running deployments keep their values; the next deployment gets this one."""
    if environment is not None and environment.project_id != component.project_id:
        raise PlatformError("The environment belongs to another project.", errors={"environment": ["Unknown environment."]})
    return config_set(
        project=component.project,
        component=component.name,
        environment=environment,
        key=key,
        value=value,
        secret=secret,
        is_file=is_file,
        filename=filename,
        declared=configurables.declared_for(component).get(key),
        actor=actor,
    )


def component_config_delete(*, component: Component, environment: Environment | None, key: str, actor=None) -> ApprovalRequest | None:
    return config_delete(project=component.project, component=component.name, environment=environment, key=key, actor=actor)


def component_config(*, component: Component, environment: Environment | None) -> list[ConfigValue]:
    return config_list(project=component.project, component=component.name, environment=environment)
