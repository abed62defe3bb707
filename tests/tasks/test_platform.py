"""Tasks on the real platform processes: a real scheduler and real task workers, killed
with SIGKILL in the middle of an execution, and two schedulers at once."""

import os
import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from choreo_site.logstream import read_text
from deployments.models import Deployment
from deployments.services import component_config_set, deployment_deploy
from tasks.models import Execution, Schedule
from tests.builds.test_worker_crash import wait_for
from tests.conftest import MANAGE, our_labels, run_default_jobs, start_process
from tests.deployments.test_deploy import build, env
from tests.tasks.conftest import task_descriptor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")]


def deploy(component, **config):
    dev = env(component, "development")
    component_config_set(component=component, environment=dev, key="TOKEN", value="task-secret-value-42", secret=True)
    for key, value in config.items():
        component_config_set(component=component, environment=dev, key=key, value=value)
    deployment = deployment_deploy(component=component, environment=dev, build=build(component))
    run_default_jobs()
    deployment.refresh_from_db()
    assert deployment.status == Deployment.ACTIVE, deployment.error
    return deployment


def stop(*procs):
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_a_real_every_2s_schedule_and_a_manual_run_with_arguments(make_task, api, platform_env, tmp_path):
    component = make_task(task_descriptor(kind="scheduled-task", schedule="@every 2s"))
    deployment = deploy(component)
    schedule = api.get("/api/projects/shop/components/job/schedule/?environment=development").data
    assert schedule["description"] == "Every 2 seconds" and len(schedule["next_runs"]) == 5 and not schedule["paused"]
    scheduler = start_process([*MANAGE, "scheduler"], platform_env, tmp_path / "scheduler.log")
    worker = start_process([*MANAGE, "rqworker", "tasks"], platform_env, tmp_path / "worker.log")
    try:
        wait_for(
            lambda: Execution.objects.filter(trigger="schedule", status="succeeded").count() >= 3, timeout=60, what="three scheduled runs"
        )
        manual = api.post(
            "/api/projects/shop/components/job/executions/?wait=1", {"environment": "development", "args": ["--name", "a b"]}, format="json"
        )
        manual = manual.json()
        assert manual["status"] == "succeeded", manual
    finally:
        stop(scheduler, worker)

    history = api.get("/api/projects/shop/components/job/executions/?environment=development").data
    scheduled = [e for e in history if e["trigger"] == "schedule" and e["status"] != "queued"]
    assert len(scheduled) >= 3
    dues = sorted(e["triggered_at"] for e in scheduled)
    assert len(set(dues)) == len(dues)  # no due time twice
    for e in scheduled:
        assert e["deployment"] == deployment.pk and e["commit"] == deployment.release.build.commit
        if e["status"] == "succeeded":
            assert e["exit_code"] == 0 and e["duration"] is not None
        else:  # a due time that came while the previous run still ran (concurrency: forbid), or
            # one the scheduler reached only after the next was due, on a loaded machine (missed-run policy)
            reasons = ("concurrency: forbid" in e["error"], e["error"].startswith("missed: a later due time"))
            assert e["status"] == "skipped" and any(reasons), e
    log = api.get(f"/api/executions/{manual['id']}/logs/").content.decode()
    assert "args: --name a b" in log and "greeting: hello" in log and "task-secret-value-42" not in log
    count = api.get("/api/projects/shop/components/job/executions/count/?environment=development").data
    assert count == {"count": Execution.objects.exclude(status="skipped").count(), "days": 30} and count["count"] >= 4
    assert "Traceback" not in (tmp_path / "scheduler.log").read_text()


@pytest.mark.parametrize("sleep", ["3", "120"])
def test_a_restart_while_an_execution_runs_neither_loses_it_nor_runs_it_twice(make_task, api, platform_env, tmp_path, sleep):
    component = make_task()
    deploy(component, SLEEP=sleep)
    scheduler = start_process([*MANAGE, "scheduler"], platform_env, tmp_path / "scheduler.log")
    worker = start_process([*MANAGE, "rqworker", "tasks"], platform_env, tmp_path / "worker.log")
    try:
        created = api.post("/api/projects/shop/components/job/executions/", {"environment": "development"}, format="json").data
        wait_for(lambda: "greeting: hello" in read_text(f"execution-{created['id']}"), timeout=60, what="the task to start")
        execution = Execution.objects.get(pk=created["id"])
        assert execution.status == "running"
        horse = int(execution.worker.rpartition(":")[2])
        for proc in (scheduler, worker):  # a power cut: every platform process at once
            os.killpg(proc.pid, signal.SIGKILL)
        os.kill(horse, signal.SIGKILL)
    finally:
        stop(scheduler, worker)
    if sleep == "3":
        time.sleep(4)  # the task finishes while no platform process runs

    restarted = start_process([*MANAGE, "rqworker", "tasks", "--burst"], platform_env, tmp_path / "worker2.log")
    assert restarted.wait(60) == 0, (tmp_path / "worker2.log").read_text()
    execution.refresh_from_db()
    log = read_text(execution.log_stream)
    if sleep == "3":
        assert (execution.status, execution.exit_code) == ("succeeded", 0), execution.error
        assert "had already exited with code 0" in log
    else:
        assert execution.status == "failed" and "stopped: it was killed or crashed" in execution.error
        assert "Its process was stopped; it is not run again." in log
    assert log.count("==> Run ") == 1 and Execution.objects.count() == 1
    import docker

    assert docker.from_env().containers.list(all=True, filters={"label": our_labels(execution=execution.pk)}) == []


TICKER = """
import time
from tasks import services
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    services.schedules_tick()
    time.sleep(0.05)
"""


def test_two_schedulers_at_once_never_start_the_same_due_time_twice(make_task, platform_env, tmp_path):
    component = make_task(task_descriptor(kind="scheduled-task", schedule="@every 1s", task="{concurrency: allow}"))
    dev = env(component, "development")
    deploy(component)
    for n in range(4):  # four more schedules, on the same deployment's rows
        other = make_task(task_descriptor(kind="scheduled-task", schedule="@every 1s", task="{concurrency: allow}"), name=f"job{n}")
        active = Deployment.objects.get(component=component, status=Deployment.ACTIVE)
        Deployment.objects.create(component=other, environment=dev, release=active.release, status=Deployment.ACTIVE)
        from tasks.services import schedule_sync

        schedule_sync(component=other, environment=dev)
    started = timezone.now()
    # Both lead at once: they share no lock, only the database.
    tickers = [
        start_process([*MANAGE, "shell", "-c", TICKER.format(seconds=8)], platform_env, tmp_path / f"ticker{i}.log") for i in range(2)
    ]
    for i, ticker in enumerate(tickers):
        assert ticker.wait(60) == 0, (tmp_path / f"ticker{i}.log").read_text()
    for i in range(2):
        assert "Traceback" not in (tmp_path / f"ticker{i}.log").read_text()
    for schedule in Schedule.objects.all():
        dues = list(Execution.objects.filter(schedule=schedule).order_by("triggered_at").values_list("triggered_at", flat=True))
        assert len(dues) >= 6, dues
        assert len(set(dues)) == len(dues)
        assert all(later - earlier == timedelta(seconds=1) for earlier, later in zip(dues, dues[1:])), dues  # none missed
        assert dues[0] <= started + timedelta(seconds=2)


def test_a_deploy_never_stops_a_running_execution_and_a_cancel_through_the_api_does(make_task, api, platform_env, tmp_path):
    component = make_task()
    first = deploy(component, SLEEP="6")
    worker = start_process([*MANAGE, "rqworker", "tasks"], platform_env, tmp_path / "worker.log")
    try:
        made = api.post("/api/projects/shop/components/job/executions/", {"environment": "development"}, format="json").data
        wait_for(lambda: "greeting: hello" in read_text(f"execution-{made['id']}"), timeout=60, what="the task to start")
        second = deploy(component, SLEEP="600", GREETING="second")  # a new deployment while it runs
        assert second.pk != first.pk
        wait_for(lambda: Execution.objects.get(pk=made["id"]).is_final, timeout=60, what="the first execution")
        finished = Execution.objects.get(pk=made["id"])
        assert (finished.status, finished.exit_code, finished.deployment_id) == ("succeeded", 0, first.pk)

        slow = api.post("/api/projects/shop/components/job/executions/", {"environment": "development"}, format="json").data
        assert slow["deployment"] == second.pk
        wait_for(lambda: "greeting: second" in read_text(f"execution-{slow['id']}"), timeout=60, what="the second execution")
        cancelling = api.post(f"/api/executions/{slow['id']}/cancel/")
        assert cancelling.status_code == 200 and cancelling.data["status"] == "running"  # its worker stops it
        wait_for(lambda: Execution.objects.get(pk=slow["id"]).is_final, timeout=30, what="the cancel")
        cancelled = Execution.objects.get(pk=slow["id"])
        assert cancelled.status == "cancelled" and cancelled.error == "Cancelled by a user." and cancelled.duration < 20
    finally:
        stop(worker)
