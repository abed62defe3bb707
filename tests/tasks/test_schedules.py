"""The scheduler's rules against an injected clock, on real database rows: due times
claimed once, concurrency policies, pause and resume, retries, and deploys that keep or
move a schedule."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from builds.models import Build, Image
from builds.services import component_create
from deployments.models import Deployment, Release
from environments.services import project_create
from tasks import services
from tasks.models import Execution, Schedule

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def deploy(make_repo):
    """deploy(schedule=..., task=...) makes `shop/job` active in development with that
    descriptor (rows only: these tests are about the scheduler, not the runtime)."""
    project = project_create(name="shop")
    component = component_create(project=project, name="job", repository=str(make_repo().path))
    environment = project.environments.get(name="development")
    counter = iter(range(100))

    def make(schedule="@every 1m", tz="UTC", task=None, kind="scheduled-task"):
        n = next(counter)
        descriptor = {"schemaVersion": 1, "type": kind, "schedule": schedule if kind == "scheduled-task" else None, "timezone": tz}
        descriptor["task"] = {"timeout": 3600.0, "retries": 0, "concurrency": "forbid", "startingDeadline": 600.0, **(task or {})}
        image = Image.objects.create(component=component, commit=f"{n:040d}", digest=f"sha256:{n:064d}", reference="r", inputs_key=str(n))
        build = Build.objects.create(component=component, commit=f"{n:040d}", status=Build.SUCCEEDED, image=image, descriptor=descriptor)
        release = Release.objects.create(
            component=component,
            build=build,
            image=image,
            digest=image.digest,
            image_reference="r",
            descriptor=descriptor,
            config_hash=str(n),
        )
        Deployment.objects.filter(component=component, environment=environment, status=Deployment.ACTIVE).update(
            status=Deployment.SUPERSEDED
        )
        deployment = Deployment.objects.create(component=component, environment=environment, release=release, status=Deployment.ACTIVE)
        return deployment, services.schedule_sync(component=component, environment=environment, now=T0)

    make.component, make.environment = component, environment
    return make


def executions(**filters):
    return list(
        Execution.objects.filter(**filters).order_by("triggered_at", "id").values_list("trigger", "triggered_at", "status", "error")
    )


def test_each_due_time_is_recorded_once_however_often_the_scheduler_ticks(deploy):
    deployment, schedule = deploy("@every 1m")
    assert schedule.next_due == T0 + timedelta(minutes=1)
    for seconds in (30, 60, 60.1, 61, 90, 119):
        services.schedules_tick(T0 + timedelta(seconds=seconds))
    recorded = Execution.objects.get()
    assert (recorded.trigger, recorded.triggered_at, recorded.deployment_id, recorded.status) == (
        "schedule",
        T0 + timedelta(minutes=1),
        deployment.pk,
        "queued",
    )
    Schedule.objects.filter(pk=schedule.pk).update(next_due=T0 + timedelta(minutes=1))  # a scheduler that read an old next_due
    with pytest.raises(Exception, match="UNIQUE|unique"):
        Execution.objects.create(
            component=deploy.component,
            environment=deploy.environment,
            schedule=schedule,
            trigger="schedule",
            triggered_at=T0 + timedelta(minutes=1),
        )


def test_forbid_skips_a_due_run_while_one_runs_and_allow_runs_both(deploy):
    deploy("@every 1m", task={"concurrency": "forbid"})
    services.schedules_tick(T0 + timedelta(minutes=1))
    services.schedules_tick(T0 + timedelta(minutes=2))
    (_, _, first, _), (_, _, second, reason) = executions()
    assert (first, second) == ("queued", "skipped") and "was still running (concurrency: forbid)" in reason

    Execution.objects.all().delete()
    deploy("@every 1m", task={"concurrency": "allow"})
    services.schedules_tick(T0 + timedelta(minutes=3))
    services.schedules_tick(T0 + timedelta(minutes=4))
    assert [status for _, _, status, _ in executions()] == ["queued", "queued"]


def test_replace_cancels_what_runs_and_runs_the_due_one(deploy):
    deploy("@every 1m", task={"concurrency": "replace"})
    services.schedules_tick(T0 + timedelta(minutes=1))
    running = Execution.objects.get()
    Execution.objects.filter(pk=running.pk).update(status=Execution.RUNNING)
    queued = Execution.objects.create(
        component=deploy.component, environment=deploy.environment, trigger="manual", triggered_at=T0 + timedelta(seconds=70)
    )
    services.schedules_tick(T0 + timedelta(minutes=2))
    running.refresh_from_db()
    queued.refresh_from_db()
    assert running.cancel_requested and running.status == "running"  # its worker stops it (tests/tasks/test_executions.py)
    assert queued.status == "cancelled" and "Replaced by a newer due run" in queued.error
    assert Execution.objects.get(triggered_at=T0 + timedelta(minutes=2)).status == "queued"


def test_after_downtime_missed_due_times_are_recorded_and_only_the_newest_in_the_deadline_runs(deploy):
    deploy("@every 1m", task={"startingDeadline": 90.0, "concurrency": "allow"})
    services.schedules_tick(T0 + timedelta(minutes=4, seconds=10))
    recorded = executions()
    assert [(at, status) for _, at, status, _ in recorded] == [
        (T0 + timedelta(minutes=1), "skipped"),
        (T0 + timedelta(minutes=2), "skipped"),
        (T0 + timedelta(minutes=3), "skipped"),
        (T0 + timedelta(minutes=4), "queued"),
    ]
    assert all("runs instead" in reason for *_, reason in recorded[:3])
    # With a shorter deadline (a new deploy; the schedule keeps its next due time), the
    # newest due time is too late as well, and nothing runs.
    deploy("@every 1m", task={"startingDeadline": 30.0, "concurrency": "allow"})
    services.schedules_tick(T0 + timedelta(minutes=8, seconds=45))
    later = [(status, reason) for _, at, status, reason in executions() if at > T0 + timedelta(minutes=4)]
    assert [status for status, _ in later] == ["skipped"] * 4
    assert "reached it 45s late, past the starting deadline (30s)" in later[-1][1]


def test_a_paused_schedule_records_nothing_and_resuming_does_not_replay(deploy):
    _, schedule = deploy("@every 1m")
    services.schedule_pause(schedule=schedule, paused=True)
    services.schedules_tick(T0 + timedelta(minutes=10))
    assert executions() == []
    now = timezone.now()
    resumed = services.schedule_pause(schedule=Schedule.objects.get(), paused=False)
    assert not resumed.paused and now < resumed.next_due <= now + timedelta(minutes=1)
    services.schedules_tick(now)
    assert executions() == []


def test_a_deploy_keeps_the_next_due_time_unless_the_schedule_changes(deploy):
    _, schedule = deploy("@every 1m")
    services.schedules_tick(T0 + timedelta(minutes=1))
    kept_due = Schedule.objects.get().next_due
    _, again = deploy("@every 1m")  # a new version with the same schedule
    assert again.pk == schedule.pk and again.next_due == kept_due
    services.schedules_tick(T0 + timedelta(minutes=1, seconds=30))
    assert len(executions()) == 1  # the due time that ran is not run again
    _, moved = deploy("0 3 * * *", tz="Europe/Berlin")
    assert (moved.expression, moved.timezone) == ("0 3 * * *", "Europe/Berlin") and moved.next_due == datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    deploy(kind="manual-task")
    assert not Schedule.objects.exists()


def test_a_failed_attempt_is_retried_with_back_off_until_retries_run_out(deploy, settings):
    settings.TASK_RETRY_BACKOFF = 10
    deployment, _ = deploy("@every 1h", task={"retries": 2})
    services.schedules_tick(T0 + timedelta(hours=1))
    first = Execution.objects.get()
    Execution.objects.filter(pk=first.pk).update(status=Execution.FAILED, finished_at=timezone.now())
    services.retry_plan(first, Execution.FAILED)
    first.refresh_from_db()
    assert first.retry_at is not None
    assert services.retries_tick(first.retry_at - timedelta(seconds=1)) == 0
    assert services.retries_tick(first.retry_at) == 1 and services.retries_tick(first.retry_at) == 0
    second = Execution.objects.get(retry_of=first)
    assert (second.trigger, second.attempt, second.deployment_id, second.status) == ("retry", 2, deployment.pk, "queued")
    Execution.objects.filter(pk=second.pk).update(status=Execution.TIMED_OUT)
    services.retry_plan(second, Execution.TIMED_OUT)
    second.refresh_from_db()
    assert (second.retry_at - timezone.now()).total_seconds() > 15  # 20 s: the back-off doubles
    services.retries_tick(second.retry_at)
    third = Execution.objects.get(retry_of=second)
    services.retry_plan(third, Execution.FAILED)
    third.refresh_from_db()
    assert third.attempt == 3 and third.retry_at is None  # retries: 2 are spent
    cancelled = Execution.objects.create(
        component=deploy.component, environment=deploy.environment, deployment=deployment, trigger="manual", triggered_at=T0
    )
    services.retry_plan(cancelled, Execution.CANCELLED)
    cancelled.refresh_from_db()
    assert cancelled.retry_at is None  # a cancel is not a failure


def test_the_30_day_count_and_retention(deploy, settings):
    settings.EXECUTION_RETENTION_DAYS = 90
    deploy("@every 1m")
    now = timezone.now()
    for days, status in ((1, "succeeded"), (29, "failed"), (31, "succeeded"), (2, "skipped"), (91, "succeeded")):
        Execution.objects.create(
            component=deploy.component,
            environment=deploy.environment,
            trigger="manual",
            triggered_at=now - timedelta(days=days),
            status=status,
        )
    assert services.execution_count(component=deploy.component, environment=deploy.environment) == 2
    assert services.execution_count(component=deploy.component, days=60) == 3
    assert services.executions_prune() == 1 and Execution.objects.count() == 4


def test_a_redeploy_keeps_a_paused_schedule_paused(deploy):
    deployment, schedule = deploy("@every 1m")
    services.schedule_pause(schedule=schedule, paused=True)
    # Mid-rollout: the new deployment is pending and, for a moment, nothing is active.
    Deployment.objects.filter(pk=deployment.pk).update(status=Deployment.SUPERSEDED)
    Deployment.objects.create(component=deploy.component, environment=deploy.environment, release=deployment.release)
    assert services.schedules_sync_all() == 1
    assert Schedule.objects.get().paused  # not deleted and made again, unpaused
    Deployment.objects.filter(status=Deployment.PENDING).delete()
    deploy("@every 1m")
    assert Schedule.objects.get().paused and Schedule.objects.get().pk == schedule.pk


def test_a_retry_is_recorded_once_even_when_the_end_of_an_attempt_is_told_twice(deploy):
    deployment, _ = deploy("@every 1h", task={"retries": 3})
    failed = Execution.objects.create(
        component=deploy.component,
        environment=deploy.environment,
        deployment=deployment,
        trigger="manual",
        triggered_at=T0,
        status="failed",
    )
    services.retry_plan(failed, Execution.FAILED)
    failed.refresh_from_db()
    assert services.retries_tick(failed.retry_at) == 1
    services.retry_plan(failed, Execution.FAILED)  # a worker woken after the reaper ended its attempt
    failed.refresh_from_db()
    assert failed.retry_at is None and Execution.objects.filter(retry_of=failed).count() == 1
    # Even if a second retry time is written by hand, the tick records nothing and clears it.
    Execution.objects.filter(pk=failed.pk).update(retry_at=T0)
    assert services.retries_tick(T0) == 0
    assert Execution.objects.get(pk=failed.pk).retry_at is None and Execution.objects.filter(retry_of=failed).count() == 1
