"""The project's pipeline at a glance: what runs where, what is saved but not deployed, and
what promoting would change, for every component in every environment.

Read in a fixed number of queries, whatever the number of components and environments:
environments, components, the deployments that matter (active, under way, the newest
failure), configuration (current values and the versions the active deployments hold),
and pending approval requests. The rules are the services': `configurables.problems`
says what a promotion would miss, and a promotion's changes are counted as
`services.promotion_preview` counts them (by fingerprint, never by value).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Max

from deployments import configurables
from deployments.ingress import ingress
from deployments.ingress.haproxy import IngressError, slot_name
from deployments.models import Deployment, Route
from environments.models import ApprovalRequest, ConfigValue, Environment, Project


@dataclass
class Cell:
    environment: Environment
    active: Deployment | None = None
    under_way: Deployment | None = None  # pending or rolling out
    failed: Deployment | None = None  # the newest deployment, when it failed after the active one
    undeployed: list[str] = field(default_factory=list)  # keys saved since the active deployment
    health: str = ""
    pending: list[ApprovalRequest] = field(default_factory=list)


@dataclass
class Step:
    """Promoting from one environment to the next."""

    source: Environment
    target: Environment
    changes_image: bool = False
    changed_keys: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return not self.changes_image and not self.changed_keys


@dataclass
class Row:
    component: object
    cells: list[Cell]
    steps: list[Step | None]  # steps[i] goes from cells[i] to cells[i + 1]; None when nothing is there to promote

    @property
    def columns(self) -> list[tuple[Cell, Step | None]]:
        """Each cell with the promotion that follows it (None after the last)."""
        return list(zip(self.cells, [*self.steps, None], strict=True))


@dataclass
class Pipeline:
    environments: list[Environment]
    rows: list[Row]


def pipeline(project: Project) -> Pipeline:
    environments = list(project.environments.order_by("position"))
    components = list(project.components.order_by("name"))
    deployments = list(
        Deployment.objects.filter(
            component__project=project, status__in=(Deployment.ACTIVE, Deployment.PENDING, Deployment.ROLLING_OUT)
        ).select_related("release__build")
    )
    newest_failed = (
        Deployment.objects.filter(component__project=project, status=Deployment.FAILED)
        .values("component_id", "environment_id")
        .annotate(last=Max("pk"))
        .values_list("last", flat=True)
    )
    failures = {
        (d.component_id, d.environment_id): d
        for d in Deployment.objects.filter(pk__in=list(newest_failed)).select_related("release__build")
    }
    active = {(d.component_id, d.environment_id): d for d in deployments if d.status == Deployment.ACTIVE}
    under_way = {(d.component_id, d.environment_id): d for d in deployments if d.status != Deployment.ACTIVE}

    # Configuration: every current value of the project, and every version an active deployment holds.
    current = list(ConfigValue.objects.filter(project=project, current=True))
    held_ids = {pk for d in active.values() for pk in [*d.release.config.values(), *d.config.values()]} - {v.pk for v in current}
    versions = {v.pk: v for v in current} | ConfigValue.objects.in_bulk(list(held_ids))
    scopes: dict[tuple[str, int | None], dict[str, ConfigValue]] = {}
    for value in current:
        scopes.setdefault((value.component, value.environment_id), {})[value.key] = value

    pending: dict[tuple[str, int], list[ApprovalRequest]] = {}
    for request in ApprovalRequest.objects.filter(project=project, status=ApprovalRequest.PENDING).select_related("requested_by"):
        pending.setdefault((request.component, request.environment_id), []).append(request)

    serving = _ingress_health(project, active)
    rows = []
    for component in components:
        independent = scopes.get((component.name, None), {})
        cells, steps = [], []
        for position, environment in enumerate(environments):
            pair = (component.pk, environment.pk)
            cell = Cell(environment, active=active.get(pair), under_way=under_way.get(pair))
            cell.pending = pending.get((component.name, environment.pk), [])
            failure = failures.get(pair)
            if failure is not None and (cell.active is None or failure.pk > cell.active.pk):
                cell.failed = failure
            if cell.active is not None:
                # As services.config_not_deployed: the environment-independent values enter a
                # release in the first environment; higher ones get them by promotion.
                base = independent if position == 0 else _pick(cell.active.release.config, versions)
                now = {**base, **scopes.get((component.name, environment.pk), {})}
                deployed = _held(cell.active, versions)
                cell.undeployed = configurables.changed_keys(deployed, now)
                cell.health = serving.get(pair) or f"{len(cell.active.replicas)} replica(s)"
            cells.append(cell)
        for source, target in zip(cells, cells[1:], strict=False):
            if source.active is None:
                steps.append(None)
                continue
            new = {**_pick(source.active.release.config, versions), **scopes.get((component.name, target.environment.pk), {})}
            old = _held(target.active, versions) if target.active else {}
            steps.append(
                Step(
                    source.environment,
                    target.environment,
                    changes_image=target.active is None or target.active.release.digest != source.active.release.digest,
                    changed_keys=configurables.changed_keys(old, new),
                    missing=sorted(configurables.problems(source.active.release.descriptor, new)),
                )
            )
        rows.append(Row(component, cells, steps))
    return Pipeline(environments, rows)


def _pick(snapshot: dict[str, int], versions: dict[int, ConfigValue]) -> dict[str, ConfigValue]:
    return {key: versions[pk] for key, pk in snapshot.items() if pk in versions}


def _held(deployment: Deployment, versions: dict[int, ConfigValue]) -> dict[str, ConfigValue]:
    """The values a deployment runs with (its release's, then its environment's)."""
    return {**_pick(deployment.release.config, versions), **_pick(deployment.config, versions)}


def _ingress_health(project: Project, active: dict[tuple[int, int], Deployment]) -> dict[tuple[int, int], str]:
    """'2/2 up in the ingress' per routed component environment, from one look per route."""
    ing = ingress()
    if not ing.is_up():
        return {}
    found = {}
    for route in Route.objects.filter(component__project=project):
        deployment = active.get((route.component_id, route.environment_id))
        if deployment is None:
            continue
        mine = {r.get("server") for r in deployment.replicas if r.get("server")}
        try:
            up = {s.name for s in ing.servers(slot_name(route.slot)) if s.up}
        except IngressError:
            continue
        found[(route.component_id, route.environment_id)] = f"{len(mine & up)}/{len(deployment.replicas)} up in the ingress"
    return found
