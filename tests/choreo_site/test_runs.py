"""The run lifecycle (choreo_site.runs) on its own, with build rows and no Docker: the claim,
the watchdog (heartbeat, cancel, timeout), the mapping of errors, the final update and the
reaper. Fast, so that a mutation run can afford them for every mutant."""

import dataclasses
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from rq.job import Job

from builds import pipeline
from builds.models import Build, Component
from choreo_site import runs
from choreo_site.errors import PlatformError
from choreo_site.logstream import read_text, stream_final_status
from choreo_site.queues import builds_queue
from environments.services import project_create

pytestmark = pytest.mark.django_db(transaction=True)
KIND = pipeline.KIND


@pytest.fixture
def component():
    return Component.objects.create(project=project_create(name="shop"), name="web", repository="/nonexistent")


def queued(component, **fields) -> Build:
    return Build.objects.create(component=component, commit="a" * 40, **fields)


def load(pk: int) -> Build:
    return Build.objects.get(pk=pk)


def execute(build: Build, body) -> str:
    return runs.execute(KIND, build.pk, body, load=load)


def test_a_queued_run_is_claimed_run_and_ended(component):
    build = queued(component)
    seen = {}

    def body(run, writer, watchdog):
        seen["row"] = Build.objects.get(pk=run.pk)
        writer.line("working")

    assert execute(build, body) == Build.SUCCEEDED
    claimed = seen["row"]
    assert claimed.status == Build.RUNNING and claimed.worker == runs.worker_identity()
    assert claimed.started_at is not None and claimed.heartbeat_at == claimed.started_at
    build.refresh_from_db()
    assert build.status == Build.SUCCEEDED and build.error == "" and build.finished_at >= build.started_at
    assert read_text(build.log_stream) == "working\n==> Build succeeded.\n"
    assert stream_final_status(build.log_stream) == Build.SUCCEEDED


@pytest.mark.parametrize("status", [Build.RUNNING, Build.CANCELLED, Build.SUCCEEDED, Build.FAILED])
def test_a_run_no_longer_queued_is_not_claimed(component, status):
    build = queued(component, status=status, worker="other:1")
    called = []
    assert execute(build, lambda *args: called.append(args)) == status
    assert called == []
    build.refresh_from_db()
    assert (build.status, build.worker, build.started_at, read_text(build.log_stream)) == (status, "other:1", None, "")


def test_a_missing_run_is_missing(component):
    assert runs.execute(KIND, 999_999, lambda *args: None, load=load) == "missing"


def test_an_expected_error_fails_the_run_with_its_message(component):
    build = queued(component)

    def body(run, writer, watchdog):
        raise PlatformError("path 'x' does not exist at commit aaaa.")

    assert execute(build, body) == Build.FAILED
    build.refresh_from_db()
    assert build.error == "path 'x' does not exist at commit aaaa."
    assert read_text(build.log_stream).endswith("==> FAILED: path 'x' does not exist at commit aaaa.\n")


def test_an_unexpected_error_fails_the_run_as_internal(component, caplog):
    build = queued(component)

    def body(run, writer, watchdog):
        raise ZeroDivisionError("division by zero")

    assert execute(build, body) == Build.FAILED
    build.refresh_from_db()
    assert build.error == "Internal error: ZeroDivisionError: division by zero"
    assert f"build {build.pk} failed unexpectedly" in [record.getMessage() for record in caplog.records]


def test_the_final_update_leaves_a_run_someone_else_ended(component):
    build = queued(component)

    def body(run, writer, watchdog):
        Build.objects.filter(pk=run.pk).update(status=Build.FAILED, error="ended elsewhere")

    assert execute(build, body) == Build.FAILED
    build.refresh_from_db()
    assert build.error == "ended elsewhere"
    assert stream_final_status(build.log_stream) == Build.FAILED
    assert read_text(build.log_stream) == ""  # not "==> Build succeeded."


def test_an_error_after_the_body_ended_its_run_is_logged_as_such_and_changes_nothing(component):
    """A rollout ends its deployment `active` once the new version serves, then stops the
    old replicas: a failure there is logged, and is not a FAILED line in an active run."""
    build = queued(component)

    def body(run, writer, watchdog):
        assert runs.finish(KIND, run, Build.SUCCEEDED)
        raise ZeroDivisionError("division by zero")

    assert execute(build, body) == Build.SUCCEEDED
    build.refresh_from_db()
    assert build.status == Build.SUCCEEDED and build.error == ""
    error = "Internal error: ZeroDivisionError: division by zero"
    assert read_text(build.log_stream) == f"==> Error after it ended as succeeded: {error}\n"
    assert stream_final_status(build.log_stream) == Build.SUCCEEDED


def _wait_for_abort(run, writer, watchdog):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        watchdog.check()
        time.sleep(0.05)
    raise AssertionError("never aborted")


def test_a_cancel_request_aborts_the_run(component):
    build = queued(component)

    def cancel_soon():
        time.sleep(0.3)
        Build.objects.filter(pk=build.pk).update(cancel_requested=True)

    threading.Thread(target=cancel_soon).start()
    started = time.monotonic()
    assert execute(build, _wait_for_abort) == Build.CANCELLED
    assert time.monotonic() - started < 5
    build.refresh_from_db()
    assert build.error == "Cancelled by a user."
    assert read_text(build.log_stream).endswith("==> CANCELLED: Cancelled by a user.\n")


def test_the_timeout_fails_the_run_and_aborts_what_it_waits_on(component, settings):
    settings.BUILD_TIMEOUT = 1
    build = queued(component)
    aborted = []

    class Target:
        def abort(self, reason):
            aborted.append(reason)

    def body(run, writer, watchdog):
        watchdog.target = Target()
        _wait_for_abort(run, writer, watchdog)

    assert execute(build, body) == Build.FAILED
    build.refresh_from_db()
    assert build.error == "Timed out after 1s (BUILD_TIMEOUT)." and aborted == [build.error]


def test_a_kind_without_a_timeout_or_cancel_is_never_aborted(component, settings):
    kind = dataclasses.replace(KIND, timeout_setting="", cancelled=None)
    build = queued(component)
    settings.BUILD_TIMEOUT = 1

    settings.RUN_HEARTBEAT_INTERVAL = 0

    def body(run, writer, watchdog):
        Build.objects.filter(pk=run.pk).update(cancel_requested=True)
        time.sleep(1.6)
        watchdog.check()

    assert runs.execute(kind, build.pk, body, load=load) == Build.SUCCEEDED
    build.refresh_from_db()
    assert build.heartbeat_at > build.started_at  # its watchdog ran all along


def test_a_running_run_beats(component, settings):
    settings.RUN_HEARTBEAT_INTERVAL = 0
    build = queued(component)
    beats = []

    def body(run, writer, watchdog):
        for _ in range(3):
            time.sleep(0.6)
            beats.append(Build.objects.get(pk=run.pk).heartbeat_at)

    assert execute(build, body) == Build.SUCCEEDED  # BUILD_TIMEOUT is far away
    build.refresh_from_db()
    assert beats[0] > build.started_at and beats[2] > beats[0]


def test_no_beat_before_the_interval(component, settings):
    settings.RUN_HEARTBEAT_INTERVAL = 3600
    build = queued(component)
    assert execute(build, lambda run, writer, watchdog: time.sleep(1.2)) == Build.SUCCEEDED
    build.refresh_from_db()
    assert build.heartbeat_at == build.started_at  # the claim's, and no other


def test_executing_one_run_claims_only_that_one(component):
    build, other = queued(component), queued(component)
    seen = []
    assert execute(build, lambda run, writer, watchdog: seen.append(Build.objects.get(pk=other.pk))) == Build.SUCCEEDED
    assert (seen[0].status, seen[0].worker, seen[0].started_at) == (Build.QUEUED, "", None)
    other.refresh_from_db()
    assert other.status == Build.QUEUED


def test_a_stored_error_is_redacted_with_the_runs_project_secrets(component):
    from environments.services import config_set

    secret = "project-secret-0123456789"
    config_set(project=component.project, component="web", environment=None, key="TOKEN", value=secret, secret=True)
    build = queued(component)

    def body(run, writer, watchdog):
        raise PlatformError(f"the server said: bad token {secret}")

    assert execute(build, body) == Build.FAILED
    build.refresh_from_db()
    assert build.error == "the server said: bad token ***"
    assert runs.finish(KIND, queued(component, status=Build.RUNNING), Build.FAILED, f"again {secret}")
    assert Build.objects.filter(error="again ***").exists()
    # Another project's secret is that project's business: this run's error keeps the text.
    other = project_create(name="other")
    config_set(project=other, component="web", environment=None, key="TOKEN", value="other-secret-9876543210", secret=True)
    assert runs.finish(KIND, queued(component, status=Build.RUNNING), Build.FAILED, "said other-secret-9876543210")
    assert Build.objects.filter(error="said other-secret-9876543210").exists()


def test_finishing_without_an_error_stores_none(component):
    running = queued(component, status=Build.RUNNING)
    assert runs.finish(KIND, running, Build.SUCCEEDED) is True
    running.refresh_from_db()
    assert (running.status, running.error) == (Build.SUCCEEDED, "") and running.finished_at is not None
    assert runs.finish(KIND, running, Build.FAILED, "late") is False  # no longer running


def test_the_reaper_fails_runs_whose_worker_died_or_went_silent_and_leaves_live_ones(component, settings):
    now = timezone.now()
    stale = now - timedelta(seconds=settings.RUN_HEARTBEAT_TIMEOUT + 1)
    dead_here = queued(component, status=Build.RUNNING, worker=f"{runs.worker_identity().rpartition(':')[0]}:999999", heartbeat_at=now)
    silent = queued(component, status=Build.RUNNING, worker="elsewhere:1", heartbeat_at=stale)
    never_beat = queued(component, status=Build.RUNNING, worker="elsewhere:2", heartbeat_at=None)
    hung_here = queued(component, status=Build.RUNNING, worker=runs.worker_identity(), heartbeat_at=stale)
    alive_here = queued(component, status=Build.RUNNING, worker=runs.worker_identity(), heartbeat_at=now)
    # Its pid is no process on this host, which says nothing about the other host's.
    alive_there = queued(component, status=Build.RUNNING, worker="elsewhere:999999", heartbeat_at=now)
    (settings.WORKSPACE_DIR / f"build-{silent.pk}").mkdir(parents=True)

    reaped = runs.reap_orphans()

    assert sorted(reaped) == sorted(f"build-{b.pk}" for b in (dead_here, silent, never_beat, hung_here))
    for build, reason in (
        (hung_here, f"The worker running this build ({hung_here.worker}) sent no heartbeat for {settings.RUN_HEARTBEAT_TIMEOUT}s."),
        (dead_here, f"The worker running this build ({dead_here.worker}) stopped: it was killed or crashed."),
        (silent, f"The worker running this build (elsewhere:1) sent no heartbeat for {settings.RUN_HEARTBEAT_TIMEOUT}s."),
        (never_beat, f"The worker running this build (elsewhere:2) sent no heartbeat for {settings.RUN_HEARTBEAT_TIMEOUT}s."),
    ):
        build.refresh_from_db()
        assert (build.status, build.error) == (Build.FAILED, reason) and build.finished_at is not None
        assert read_text(build.log_stream) == f"==> FAILED: {reason}\n"
    assert not (settings.WORKSPACE_DIR / f"build-{silent.pk}").exists()
    # A fresh heartbeat, from this host's live process or from another host: untouched.
    for build in (alive_here, alive_there):
        build.refresh_from_db()
        assert build.status == Build.RUNNING and build.error == ""
    assert runs.reap_orphans() == []


def test_the_reaper_does_not_fail_a_run_that_ended_meanwhile(component, settings):
    silent = queued(component, status=Build.RUNNING, worker="elsewhere:1", heartbeat_at=None)
    assert runs.fail(KIND, Build.objects.get(pk=silent.pk), "first") is True
    assert runs.fail(KIND, Build.objects.get(pk=silent.pk), "second") is False
    taken = queued(component, status=Build.RUNNING, worker="elsewhere:2")
    moved = Build.objects.get(pk=taken.pk)
    Build.objects.filter(pk=taken.pk).update(worker="elsewhere:3")
    assert runs.fail(KIND, moved, "stale view") is False
    assert Build.objects.get(pk=silent.pk).error == "first" and Build.objects.get(pk=taken.pk).status == Build.RUNNING


def test_the_reaper_enqueues_again_a_queued_run_whose_job_was_lost(component):
    connection = builds_queue().connection
    old = timezone.now() - timedelta(seconds=31)
    lost = queued(component)
    Build.objects.filter(pk=lost.pk).update(created_at=old)
    recent = queued(component)  # its job may still be on its way
    assert not Job.exists(lost.job_id, connection=connection)

    runs.reap_orphans()

    assert Job.exists(lost.job_id, connection=connection)
    assert not Job.exists(recent.job_id, connection=connection)
    builds_queue().empty()


def test_registering_a_kind_is_all_the_reaper_the_log_streams_and_housekeeping_need(component, monkeypatch, django_user_model):
    from choreo_site import housekeeping, logstream

    monkeypatch.setattr(runs, "_kinds", {})
    monkeypatch.setattr(logstream, "_stream_kinds", {})
    monkeypatch.setattr(housekeeping, "_chores", [])
    trial = dataclasses.replace(KIND, name="trial")
    runs.register(trial)
    runs.register(trial)  # once is enough: registering again changes nothing

    ended = queued(component, status=Build.SUCCEEDED)
    assert stream_final_status(f"trial-{ended.pk}") == Build.SUCCEEDED  # its log streams: rows and final statuses
    with pytest.raises(LookupError):  # and who may read them: not someone outside the project
        logstream.stream_check_reader(f"trial-{ended.pk}", django_user_model.objects.create_user("outsider"))
    orphan = queued(component, status=Build.RUNNING, worker="elsewhere:1", heartbeat_at=None)
    housekeeping.run_all()  # the reaper, as a housekeeping chore, over the kinds registered
    orphan.refresh_from_db()
    assert orphan.status == Build.FAILED and "sent no heartbeat" in orphan.error
    assert runs.reap_orphans() == []


def test_the_watchdog_beats_on_while_a_cancelled_run_winds_down(component, settings):
    """A run slow to stop (a container taking its time) must not look dead to the reaper."""
    settings.RUN_HEARTBEAT_INTERVAL = 0
    build = queued(component)
    beats = []

    def body(run, writer, watchdog):
        assert watchdog.daemon  # nor can a stuck watchdog keep its worker from exiting
        Build.objects.filter(pk=run.pk).update(cancel_requested=True)
        deadline = time.monotonic() + 10
        while not watchdog.abort_reason and time.monotonic() < deadline:
            time.sleep(0.05)
        beats.append(Build.objects.get(pk=run.pk).heartbeat_at)
        time.sleep(1.2)
        beats.append(Build.objects.get(pk=run.pk).heartbeat_at)
        watchdog.check()

    assert execute(build, body) == Build.CANCELLED
    assert beats[1] > beats[0]


def test_a_run_that_ended_waits_for_a_stuck_watchdog_only_so_long(component, monkeypatch):
    """Its job returns, and its worker takes the next one, even when the watchdog is stuck
    (in a query that hangs): for WATCHDOG_JOIN, shortened here, and not a moment longer."""
    release = threading.Event()
    monkeypatch.setattr(runs, "WATCHDOG_JOIN", 0.3)
    monkeypatch.setattr(runs.Watchdog, "run", lambda self: release.wait(20))
    build = queued(component)
    waited = []

    def body(run, writer, watchdog):
        waited.append(watchdog)

    started = time.monotonic()
    try:
        assert execute(build, body) == Build.SUCCEEDED
        assert time.monotonic() - started < 5
        assert waited[0].is_alive()  # still stuck: the run did not wait it out
    finally:
        release.set()
    waited[0].join(5)
    # And a watchdog that stops as it should is waited for: it is gone when the run returns.
    monkeypatch.undo()
    assert execute(queued(component), body) == Build.SUCCEEDED and not waited[1].is_alive()


def test_a_run_s_own_time_limit_leaves_it_alone_within_and_times_it_out_past_it(component):
    """A kind whose runs each have their own limit (a task's timeout), and a status of its
    own for a run over it; a cancel still stops such a run."""
    from tasks.execution import KIND as EXECUTION
    from tasks.models import Execution

    ended, limits = [], {}
    kind = dataclasses.replace(EXECUTION, timeout_of=lambda run: limits[run.pk], ended=lambda run, status: ended.append((run.pk, status)))
    development = component.project.environments.get(name="development")

    def execution(limit: float) -> Execution:
        run = Execution.objects.create(component=component, environment=development, trigger=Execution.MANUAL, triggered_at=timezone.now())
        limits[run.pk] = limit
        return run

    def busy_for(run, writer, watchdog):
        until = time.monotonic() + 0.8
        while time.monotonic() < until:
            watchdog.check()
            time.sleep(0.05)

    def cancelled(run, writer, watchdog):
        Execution.objects.filter(pk=run.pk).update(cancel_requested=True)
        _wait_for_abort(run, writer, watchdog)

    def load(pk):
        return Execution.objects.get(pk=pk)

    within, over, cancel = execution(3), execution(1), execution(20)
    assert runs.execute(kind, within.pk, busy_for, load=load) == Execution.SUCCEEDED
    assert runs.execute(kind, over.pk, _wait_for_abort, load=load) == Execution.TIMED_OUT
    over.refresh_from_db()
    assert over.error == "Timed out after 1s (its timeout)."
    assert runs.execute(kind, cancel.pk, cancelled, load=load) == Execution.CANCELLED
    # The kind is told, once each.
    assert ended == [(within.pk, Execution.SUCCEEDED), (over.pk, Execution.TIMED_OUT), (cancel.pk, Execution.CANCELLED)]


def test_live_readers_are_told_the_run_s_final_status(component):
    from tests.conftest import live_reader

    build = queued(component)
    told = live_reader(build.log_stream)
    assert execute(build, lambda run, writer, watchdog: writer.line("working")) == Build.SUCCEEDED
    assert told() == Build.SUCCEEDED
