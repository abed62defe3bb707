"""Task executions and schedules: every rule about running a task lives here, for the
pages, the API, the scheduler and the workers alike.

- A task runs the deployment that is active in the environment when its execution is
  recorded, with that deployment's configuration; a later deploy never touches it.
- A scheduled task has one `Schedule` per environment it is deployed to, kept in step with
  the active deployment's descriptor (`schedule_sync`). A deploy that keeps the expression
  keeps the next due time: nothing runs twice, nothing is skipped.
- The scheduler (`schedules_tick`) claims a schedule's next due time with a conditional
  update, in the transaction that records the executions for it; the unique constraint on
  (schedule, due time) stands behind it. What was missed while nothing ran is run (the
  newest within the starting deadline) or recorded as skipped with the reason.
- `concurrency` decides a due run while another runs: forbid (recorded skipped), allow,
  replace (the running one is cancelled).
- A failed or timed-out attempt gets a retry while `retries` allow, after a back-off
  doubling from TASK_RETRY_BACKOFF; the retry is recorded when it is due (`retries_tick`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Min
from django.utils import timezone

from builds.descriptor import task_settings
from builds.models import Component
from builds.services import component_deleting
from choreo_site import audit
from choreo_site.errors import Conflict, PlatformError
from choreo_site.queues import enqueue_after_commit, tasks_queue
from deployments.models import Deployment
from environments import approvals, permissions
from environments.models import ApprovalRequest, Environment, Project
from tasks.models import Execution, Schedule
from tasks.timetable import Timetable, missed

log = logging.getLogger(__name__)

TASK_TYPES = ("scheduled-task", "manual-task")
MAX_ARGS = 64
MAX_ARG_LENGTH = 4096


def execution_get(*, pk: int, actor, action: str = permissions.VIEW) -> Execution:
    """An execution by id, if `actor` may do `action` in its project; else 404, like a missing one."""
    rows = Execution.objects.select_related("component__project", "environment", "deployment__release__build")
    return permissions.visible_get(rows, pk=pk, noun="Execution", actor=actor, action=action)


def _active(component: Component, environment: Environment) -> Deployment | None:
    return (
        Deployment.objects.select_related("release__build")
        .filter(component=component, environment=environment, status=Deployment.ACTIVE)
        .first()
    )


def _check_task(component: Component, environment: Environment) -> Deployment:
    """The task's active deployment in the environment, or a 4xx naming why there is none."""
    if environment.project_id != component.project_id:
        raise PlatformError("The environment belongs to another project.", errors={"environment": ["Unknown environment."]})
    if component_deleting(component):
        raise Conflict(f"{component.name} is being deleted.", errors={"component": ["Being deleted."]})
    active = _active(component, environment)
    ctype = active.release.descriptor.get("type") if active else component.type
    if ctype not in TASK_TYPES:
        raise PlatformError(
            f"{component.name} is a {ctype or 'component with no build yet'}: only a scheduled-task or a manual-task runs.",
            errors={"component": [f"Not a task ({ctype or 'no build yet'})."]},
        )
    if active is None:
        raise PlatformError(
            f"{component.name} is not deployed to {environment.name}: deploy it there first.",
            errors={"environment": [f"Not deployed to {environment.name}."]},
        )
    return active


def check_args(args) -> list[str] | None:
    """None (the image's own command), or a list of strings, bounded."""
    if args is None:
        return None
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise PlatformError('args must be a list of strings, such as ["--dry-run"].', errors={"args": ["Must be a list of strings."]})
    if len(args) > MAX_ARGS:
        raise PlatformError(f"args may hold at most {MAX_ARGS} arguments, got {len(args)}.", errors={"args": [f"At most {MAX_ARGS}."]})
    for i, arg in enumerate(args):
        if len(arg) > MAX_ARG_LENGTH or "\x00" in arg:
            raise PlatformError(
                f"args[{i}] must be at most {MAX_ARG_LENGTH} characters, with no NUL.",
                errors={"args": [f"args[{i}] is too long or holds NUL."]},
            )
    return list(args)


def _record(*, component, environment, deployment, trigger, triggered_at, schedule=None, args=None, actor=None, **fields) -> Execution:
    execution = Execution.objects.create(
        component=component,
        environment=environment,
        deployment=deployment,
        schedule=schedule,
        trigger=trigger,
        triggered_at=triggered_at,
        args=args,
        **{"requested_by": actor.get_username() if getattr(actor, "is_authenticated", False) else "", **fields},
    )
    if execution.status == Execution.QUEUED:
        _enqueue(execution)
    return execution


def _job_timeout(deployment: Deployment | None) -> int:
    """RQ's limit for an execution's job: past the task's own timeout, which the runner enforces."""
    return int(task_settings(deployment.release.descriptor)["timeout"]) + 300 if deployment else 3600


def _enqueue(execution: Execution) -> None:
    from tasks import jobs

    timeout = _job_timeout(execution.deployment)
    enqueue_after_commit(tasks_queue(), jobs.execution_run, execution.pk, job_id=execution.job_id, job_timeout=timeout)


def enqueue_again(execution: Execution) -> None:
    """Put a queued execution's job on the queue again (its job was lost: choreo_site.runs)."""
    from tasks import jobs

    tasks_queue().enqueue(jobs.execution_run, execution.pk, job_id=execution.job_id, job_timeout=_job_timeout(execution.deployment))


@transaction.atomic
def execution_run(*, component: Component, environment: Environment, args=None, actor=None) -> Execution | ApprovalRequest:
    """A manual run, of a manual or a scheduled task, on its active deployment there; in a
    protected environment, a request to run exactly this (environments.approvals)."""
    args = check_args(args)
    # The project first, as every change that may need approval locks it (environments.approvals).
    Project.objects.select_for_update().filter(pk=component.project_id).first()
    active = _check_task(component, environment)
    request = approvals.gate(
        environment=environment,
        component=component.name,
        kind="run",
        payload={"deployment": active.pk, "args": args},
        summary=f"run {component.name} in {environment.name}" + (f" with {args}" if args else ""),
        actor=actor,
    )
    if request is not None:
        return request
    return _manual(component, environment, active, args, actor)


def _manual(component, environment, deployment, args, actor) -> Execution:
    execution = _record(
        component=component,
        environment=environment,
        deployment=deployment,
        trigger=Execution.MANUAL,
        triggered_at=timezone.now(),
        args=args,
        actor=actor,
    )
    audit.record(
        "execution.run",
        project=component.project,
        environment=environment,
        target=f"execution {execution.pk} of {component.name}",
        details={"deployment": deployment.pk, "args": args},
    )
    return execution


@transaction.atomic
def run_approved(request: ApprovalRequest) -> dict:
    """Carry out an approved manual run: the pinned deployment, if it is still the active one."""
    component = Component.objects.filter(project=request.project, name=request.component).first()
    deployment = Deployment.objects.filter(pk=request.payload["deployment"], component=component).first() if component else None
    if deployment is None or deployment.status != Deployment.ACTIVE:
        raise Conflict(
            f"Request {request.pk} can no longer be carried out: the deployment it would run is no longer active.",
            errors={"status": ["gone"]},
        )
    execution = _manual(component, request.environment, deployment, request.payload.get("args"), request.requested_by)
    return {"execution": execution.pk}


def execution_cancel(*, execution: Execution) -> Execution:
    """Cancel a queued execution at once, or ask a running one's worker to stop it."""
    if Execution.objects.filter(pk=execution.pk, status=Execution.QUEUED).update(
        status=Execution.CANCELLED, error="Cancelled by a user before it started.", finished_at=timezone.now()
    ):
        _announce_end(execution, Execution.CANCELLED, "==> CANCELLED before it started")
    elif not Execution.objects.filter(pk=execution.pk, status=Execution.RUNNING).update(cancel_requested=True):
        status = Execution.objects.filter(pk=execution.pk).values_list("status", flat=True).first()
        raise Conflict(
            f"Execution {execution.pk} is {status}: only a queued or running execution can be cancelled.", errors={"status": [status]}
        )
    audit.record(
        "execution.cancel", project=execution.component.project, environment=execution.environment, target=f"execution {execution.pk}"
    )
    execution.refresh_from_db()
    return execution


def component_teardown(*, component: Component) -> None:
    """Before a component is deleted: cancel its queued and running executions (their
    containers go with the component's replicas). Its schedules go with its records."""
    for execution in component.executions.filter(status__in=(Execution.QUEUED, Execution.RUNNING)):
        try:
            execution_cancel(execution=execution)
        except Conflict:  # it ended meanwhile
            pass


def component_running(*, component: Component) -> list[str]:
    """What deleting the component stops, for its confirmation: schedules and runs."""
    found = [
        f"the schedule {s.expression} ({s.timezone}) in {s.environment.name}"
        for s in component.schedules.select_related("environment").order_by("environment__position")
    ]
    runs = component.executions.filter(status__in=(Execution.QUEUED, Execution.RUNNING)).count()
    if runs:
        found.append(f"{runs} queued or running execution{'s' if runs > 1 else ''}, cancelled")
    return found


def _announce_end(execution: Execution, status: str, line: str) -> None:
    from choreo_site.logstream import LogWriter

    writer = LogWriter(execution.log_stream)
    writer.line(line)
    writer.end(status)


def executions_of(*, component: Component, environment: Environment | None = None):
    rows = Execution.objects.filter(component=component).select_related("environment", "deployment__release__build")
    return rows.filter(environment=environment) if environment is not None else rows


def execution_count(*, component: Component, environment: Environment | None = None, days: int = 30) -> int:
    """Executions that ran (skipped ones are not runs) in the last `days` days."""
    since = timezone.now() - timedelta(days=days)
    return (
        executions_of(component=component, environment=environment)
        .filter(triggered_at__gte=since)
        .exclude(status=Execution.SKIPPED)
        .count()
    )


# Schedules


def schedule_get(*, component: Component, environment: Environment) -> Schedule:
    _check_task(component, environment)
    schedule = Schedule.objects.filter(component=component, environment=environment).first() or schedule_sync(
        component=component, environment=environment
    )
    if schedule is None:
        raise PlatformError(
            f"{component.name} is a manual-task: it has no schedule; run it with a manual run.",
            errors={"component": ["A manual-task has no schedule."]},
        )
    return schedule


def schedule_pause(*, schedule: Schedule, paused: bool) -> Schedule:
    """Pause (nothing is recorded while paused), or resume from the next due time after
    now (what was due while paused is not replayed)."""
    if not isinstance(paused, bool):
        raise PlatformError("paused must be true or false.", errors={"paused": ["Must be true or false."]})
    now = timezone.now()
    if paused:
        Schedule.objects.filter(pk=schedule.pk).update(paused=True)
    else:
        following = Timetable(schedule.expression, schedule.timezone).after(now)
        Schedule.objects.filter(pk=schedule.pk, paused=True).update(paused=False, next_due=following)
    audit.record(
        "schedule.pause" if paused else "schedule.resume",
        project=schedule.component.project,
        environment=schedule.environment,
        target=f"schedule of {schedule.component.name}",
    )
    schedule.refresh_from_db()
    return schedule


def upcoming(schedule: Schedule, count: int = 5, now: datetime | None = None) -> list[datetime]:
    if schedule.paused:
        return []
    now = now or timezone.now()
    timetable = Timetable(schedule.expression, schedule.timezone)
    first = schedule.next_due if schedule.next_due and schedule.next_due > now else timetable.after(now)
    return [first, *timetable.upcoming(first, count - 1)]


def describe(schedule: Schedule) -> str:
    return Timetable(schedule.expression, schedule.timezone).describe()


def schedule_sync(*, component: Component, environment: Environment, now: datetime | None = None) -> Schedule | None:
    """Make the schedule follow the active deployment there: made when a scheduled task is
    first deployed, moved to the new expression when a deploy changes it (from the next due
    time after now), kept as it is otherwise, removed when no scheduled task is active."""
    now = now or timezone.now()
    active = _active(component, environment)
    descriptor = active.release.descriptor if active else {}
    if descriptor.get("type") != "scheduled-task":
        rolling = Deployment.objects.filter(
            component=component, environment=environment, status__in=(Deployment.PENDING, Deployment.ROLLING_OUT)
        )
        if active is None and rolling.exists():
            return Schedule.objects.filter(component=component, environment=environment).first()  # decided when it ends
        Schedule.objects.filter(component=component, environment=environment).delete()
        return None
    expression, tz = descriptor["schedule"], descriptor.get("timezone") or "UTC"
    schedule = Schedule.objects.filter(component=component, environment=environment).first()
    if schedule is None:
        try:
            with transaction.atomic():
                return Schedule.objects.create(
                    component=component,
                    environment=environment,
                    expression=expression,
                    timezone=tz,
                    next_due=Timetable(expression, tz).after(now),
                )
        except IntegrityError:  # made meanwhile by another process
            return Schedule.objects.get(component=component, environment=environment)
    if (schedule.expression, schedule.timezone) != (expression, tz):
        Schedule.objects.filter(pk=schedule.pk, expression=schedule.expression, timezone=schedule.timezone).update(
            expression=expression, timezone=tz, next_due=Timetable(expression, tz).after(now)
        )
        schedule.refresh_from_db()
    return schedule


def schedules_sync_all() -> int:
    """The periodic check behind the rollouts' own: every environment running a scheduled
    task has its schedule, with the active descriptor's expression, and no schedule
    outlives its task. Compares in two queries; syncs only what differs."""
    wanted = {
        (c, e): (expression, tz or "UTC")
        for c, e, expression, tz in Deployment.objects.filter(
            status=Deployment.ACTIVE, release__descriptor__type="scheduled-task"
        ).values_list("component_id", "environment_id", "release__descriptor__schedule", "release__descriptor__timezone")
    }
    have = {
        (c, e): (expression, tz)
        for c, e, expression, tz in Schedule.objects.values_list("component_id", "environment_id", "expression", "timezone")
    }
    differ = {pair for pair in wanted.keys() | have.keys() if wanted.get(pair) != have.get(pair)}
    components = Component.objects.in_bulk({c for c, _ in differ})
    environments = Environment.objects.in_bulk({e for _, e in differ})
    for component_id, environment_id in differ:
        schedule_sync(component=components[component_id], environment=environments[environment_id])
    return len(differ)


def schedules_tick(now: datetime | None = None) -> int:
    """Record what is due on every unpaused schedule; returns how many executions were
    recorded. One transaction, a savepoint per schedule (one that fails is logged and
    tried again next tick), and one Redis round trip to enqueue what runs. Safe to run in
    any number of schedulers at once."""
    now = now or timezone.now()
    due = list(Schedule.objects.filter(paused=False, next_due__lte=now).select_related("component", "environment"))
    if not due:
        return 0
    components = {s.component_id for s in due}
    actives = {
        (d.component_id, d.environment_id): d
        for d in Deployment.objects.filter(status=Deployment.ACTIVE, component_id__in=components).select_related("release")
    }
    busy = set(
        Execution.objects.filter(component_id__in=components, status__in=(Execution.QUEUED, Execution.RUNNING)).values_list(
            "component_id", "environment_id"
        )
    )
    recorded, to_run = 0, []
    with transaction.atomic(), audit.acting("schedule", "schedule"):
        for schedule in due:
            pair = (schedule.component_id, schedule.environment_id)
            try:
                with transaction.atomic():
                    made = _fire(schedule, now, actives.get(pair), busy=pair in busy)
            except Exception:  # one broken schedule must not stop the others
                log.exception("schedule %s could not be handled", schedule.pk)
                continue
            recorded += len(made)
            to_run += [e for e in made if e.status == Execution.QUEUED]
    _enqueue_many(to_run)
    return recorded


def next_wake() -> datetime | None:
    """The earliest time the scheduler has something to do (a due time, or a retry)."""
    times = [
        Schedule.objects.filter(paused=False).aggregate(at=Min("next_due"))["at"],
        Execution.objects.filter(retry_at__isnull=False).aggregate(at=Min("retry_at"))["at"],
    ]
    return min((t for t in times if t is not None), default=None)


def _fire(schedule: Schedule, now: datetime, active: Deployment | None, *, busy: bool) -> list[Execution]:
    """Claim the schedule's due times up to now and record an execution for each."""
    timetable = Timetable(schedule.expression, schedule.timezone)
    task = task_settings(active.release.descriptor if active else {})
    decisions, following = missed(timetable, schedule.next_due, now, task["startingDeadline"])
    claimed = Schedule.objects.filter(pk=schedule.pk, paused=False, next_due=schedule.next_due).update(next_due=following)
    if not claimed:
        return []  # another scheduler took it, or it was paused or changed meanwhile
    rows = []
    for decision in decisions:
        if not decision.run:
            outcome = _skipped(decision.reason)
        elif active is None:
            outcome = _skipped("not deployed here")
        else:
            outcome = _concurrency(schedule, task, busy)
        rows.append(
            Execution(
                component=schedule.component,
                environment=schedule.environment,
                schedule=schedule,
                deployment=active,
                trigger=Execution.SCHEDULE,
                triggered_at=decision.at,
                **outcome,
            )
        )
    return Execution.objects.bulk_create(rows)


def _skipped(reason: str) -> dict:
    return {"status": Execution.SKIPPED, "error": reason[:1000], "finished_at": timezone.now()}


def _concurrency(schedule: Schedule, task: dict, busy: bool) -> dict:
    """What a due run becomes while another execution of the task runs there."""
    policy = task["concurrency"]
    if policy == "allow" or not busy:
        return {}
    running = Execution.objects.filter(
        component=schedule.component, environment=schedule.environment, status__in=(Execution.QUEUED, Execution.RUNNING)
    )
    if policy == "forbid":
        ids = ", ".join(str(pk) for pk in running.values_list("pk", flat=True)[:5])
        return _skipped(f"execution {ids} was still running (concurrency: forbid)") if ids else {}
    for execution in running:  # replace
        if Execution.objects.filter(pk=execution.pk, status=Execution.QUEUED).update(
            status=Execution.CANCELLED, error="Replaced by a newer due run (concurrency: replace).", finished_at=timezone.now()
        ):
            transaction.on_commit(
                lambda execution=execution: _announce_end(execution, Execution.CANCELLED, "==> CANCELLED: replaced by a newer due run")
            )
        else:
            Execution.objects.filter(pk=execution.pk, status=Execution.RUNNING).update(cancel_requested=True)
    return {}


def _enqueue_many(executions: list[Execution]) -> None:
    """Enqueue executions whose rows are committed, in one Redis round trip."""
    from rq import Queue

    from tasks import jobs

    if not executions:
        return
    tasks_queue().enqueue_many(
        [Queue.prepare_data(jobs.execution_run, (e.pk,), job_id=e.job_id, timeout=_job_timeout(e.deployment)) for e in executions]
    )


# Retries


def retry_plan(execution: Execution, status: str) -> None:
    """After an attempt ended: when it failed or timed out and `retries` allow another,
    note when the retry is due (back-off doubling from TASK_RETRY_BACKOFF, at most an hour)."""
    if status not in (Execution.FAILED, Execution.TIMED_OUT) or execution.deployment_id is None:
        return
    if Execution.objects.filter(retry_of=execution).exists():  # told twice (a worker woken after the reaper)
        return
    deployment = Deployment.objects.filter(pk=execution.deployment_id).select_related("release").first()
    retries = task_settings(deployment.release.descriptor)["retries"] if deployment else 0
    if execution.attempt > retries:
        return
    delay = min(settings.TASK_RETRY_BACKOFF * 2 ** (execution.attempt - 1), 3600)
    Execution.objects.filter(pk=execution.pk, retry_at__isnull=True).update(retry_at=timezone.now() + timedelta(seconds=delay))


def retries_tick(now: datetime | None = None) -> int:
    """Record (and enqueue) each retry that is due; claimed like a schedule's due time."""
    now = now or timezone.now()
    recorded = 0
    for failed in Execution.objects.filter(retry_at__lte=now).select_related("component", "environment", "deployment__release"):
        with transaction.atomic():
            if not Execution.objects.filter(pk=failed.pk, retry_at=failed.retry_at).update(retry_at=None):
                continue
            try:
                with transaction.atomic(), audit.acting("schedule", "schedule"):
                    _record(
                        component=failed.component,
                        environment=failed.environment,
                        deployment=failed.deployment,
                        trigger=Execution.RETRY,
                        triggered_at=failed.retry_at,
                        args=failed.args,
                        attempt=failed.attempt + 1,
                        retry_of=failed,
                        requested_by=failed.requested_by,
                    )
            except IntegrityError:  # its one retry exists already: the claim above still clears retry_at
                continue
            recorded += 1
    return recorded


def executions_prune(now: datetime | None = None) -> int:
    """Delete finished executions (and their logs) older than EXECUTION_RETENTION_DAYS."""
    from choreo_site.models import LogLine

    cutoff = (now or timezone.now()) - timedelta(days=settings.EXECUTION_RETENTION_DAYS)
    old = Execution.objects.filter(triggered_at__lt=cutoff, status__in=Execution.FINAL)
    ids = list(old.values_list("pk", flat=True)[:5000])
    if not ids:
        return 0
    LogLine.objects.filter(stream__in=[f"execution-{pk}" for pk in ids]).delete()
    Execution.objects.filter(pk__in=ids).delete()
    return len(ids)
