"""A worker killed in the middle of a build leaves the build failed with a reason."""

import os
import signal
import time

import pytest

from builds.models import Build
from builds.services import build_start, component_create
from choreo_site.logstream import read_text
from environments.services import project_create
from tests.conftest import MANAGE, start_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images")]


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(what)


def test_killed_worker_leaves_the_build_failed_not_running(make_repo, platform_env, tmp_path):
    repo = make_repo(
        {
            ".choreo/component.yaml": "schemaVersion: 1\ntype: service\n",
            "Dockerfile": "FROM choreo/busybox:1\nRUN echo working && sleep 300\n",
        }
    )
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    build = build_start(component=component)
    worker = start_process([*MANAGE, "rqworker", "builds"], platform_env, tmp_path / "worker.log")
    try:
        wait_for(lambda: "working" in read_text(build.log_stream), what="the build to start its RUN step")
        build.refresh_from_db()
        assert build.status == Build.RUNNING
        # Like the OOM killer or a power cut: the worker and its work horse (the forked
        # process running the build, in a session of its own) die at once.
        horse = int(build.worker.rpartition(":")[2])
        assert horse != worker.pid
        os.killpg(worker.pid, signal.SIGKILL)
        os.kill(horse, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
    time.sleep(0.5)
    build.refresh_from_db()
    assert build.status == Build.RUNNING  # nobody has noticed yet

    # The next worker to start cleans up before taking jobs.
    restarted = start_process([*MANAGE, "rqworker", "builds", "--burst"], platform_env, tmp_path / "worker2.log")
    assert restarted.wait(60) == 0, (tmp_path / "worker2.log").read_text()
    build.refresh_from_db()
    assert build.status == Build.FAILED
    assert "stopped: it was killed or crashed" in build.error
    assert "FAILED: The worker running this build" in read_text(build.log_stream)
    assert build.finished_at is not None


def test_scheduler_also_reaps_and_requeues_lost_jobs(make_repo, platform_env, tmp_path):
    import django_rq
    from django.conf import settings
    from django.utils import timezone

    repo = make_repo()
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    build = build_start(component=component)
    # Redis lost the job (flushed, or restarted without persistence).
    django_rq.get_queue(settings.BUILDS_QUEUE).empty()
    Build.objects.filter(pk=build.pk).update(created_at=timezone.now() - timezone.timedelta(minutes=5))
    run = start_process([*MANAGE, "scheduler", "--once"], platform_env, tmp_path / "scheduler.log")
    assert run.wait(60) == 0, (tmp_path / "scheduler.log").read_text()
    assert build.job_id in django_rq.get_queue(settings.BUILDS_QUEUE).job_ids
