"""One execution of a task, as a job runs it (choreo_site.runs): start the task's process
from its deployment's image with that deployment's configuration, stream its output into
the execution's log, and record its exit code.

The process runs through the runtime interface (`Runtime.once_start`), so another runtime
can run it as a Job. A cancel or the task's `timeout` stops it (SIGTERM, then SIGKILL).
A deploy never touches a running execution: it runs the deployment it was recorded with.

When the worker dies while the task runs, the reaper finds the task's process by its
label: if it had already exited, its exit code is recorded; if it still runs, it is
stopped and the execution fails with the reason. Either way it is never run twice.
"""

from __future__ import annotations

import json
import secrets

from django.conf import settings

from builds.descriptor import task_settings
from choreo_site import runs
from choreo_site.logstream import LogWriter
from deployments import rollout
from deployments.runtimes import RuntimeFailure
from environments import permissions
from tasks import services
from tasks.models import Execution


class TaskFailed(Exception):
    """The task ran and failed (a non-zero exit code), or could not run."""


def run(execution_id: int) -> str:
    """Run a queued execution; returns its final status."""
    return runs.execute(KIND, execution_id, _run, load=_load)


def _load(pk: int) -> Execution:
    return Execution.objects.select_related("component__project", "environment", "deployment__release__build").get(pk=pk)


def _run(execution: Execution, writer: LogWriter, watchdog: runs.Watchdog) -> None:
    deployment = execution.deployment
    if deployment is None:
        raise TaskFailed("the deployment it was to run no longer exists")
    release = deployment.release
    spec = rollout.container_spec(
        deployment,
        name=f"{settings.INSTANCE_NAMESPACE}-x{execution.pk}-{secrets.token_hex(3)}",
        labels={"execution": str(execution.pk)},
    )
    commit = release.build.commit[:12] or "?"
    attempt = f", attempt {execution.attempt}" if execution.attempt > 1 else ""
    where = f"{execution.environment.name} (deployment {deployment.pk}, commit {commit}; {execution.trigger}{attempt})"
    header = f"==> Run {release.image_reference} in {where}\n"
    if execution.args is not None:
        header += f"==> Arguments: {json.dumps(execution.args)}\n"
    writer.write(header)  # one write: one insert
    watchdog.check()
    # The runtime's own deadline is a last resort, for when no worker is left to stop it:
    # the watchdog's comes first, and says so in the execution's own words.
    once = rollout.runtime().once_start(spec, args=execution.args, timeout=_timeout(execution) + RUNTIME_DEADLINE_MARGIN)
    try:
        watchdog.target = once
        watchdog.check()  # cancelled or timed out before the target was known
        code = once.wait(writer.write)
        writer.flush()
        Execution.objects.filter(pk=execution.pk).update(exit_code=code)
        watchdog.check()
        if code != 0:
            raise TaskFailed(f"exited with code {code}")
        writer.line("==> exited with code 0")
    finally:
        once.remove()


RUNTIME_DEADLINE_MARGIN = 30  # seconds


def _timeout(execution: Execution) -> float:
    return task_settings(execution.deployment.release.descriptor)["timeout"] if execution.deployment else 3600.0


def _orphaned(execution: Execution, reason: str) -> None:
    """Its worker died: record what its process did, or stop the process and fail it."""
    found = rollout.runtime().once_find(execution=str(execution.pk))
    exited = [(once, code) for once, code in found if code is not None]
    if exited and len(exited) == len(found):
        code = exited[0][1]
        status = Execution.SUCCEEDED if code == 0 else Execution.FAILED
        error = "" if code == 0 else f"exited with code {code}"
        Execution.objects.filter(pk=execution.pk, status=Execution.RUNNING, worker=execution.worker).update(exit_code=code)
        if runs.finish(KIND, execution, status, error, worker=execution.worker):
            writer = LogWriter(execution.log_stream)
            writer.line(f"==> {reason} The task had already exited with code {code}; its later output is not in this log.")
            writer.end(status)
            services.retry_plan(execution, status)
    else:
        for once, _ in found:
            once.abort(reason)
        runs.fail(KIND, execution, reason, note="Its process was stopped; it is not run again.")
    for once, _ in found:
        once.remove()


KIND = runs.Kind(
    name="execution",
    model=Execution,
    queued=Execution.QUEUED,
    running=Execution.RUNNING,
    succeeded=Execution.SUCCEEDED,
    failed=Execution.FAILED,
    cancelled=Execution.CANCELLED,
    timed_out=Execution.TIMED_OUT,
    final=Execution.FINAL,
    expected=(TaskFailed, RuntimeFailure),
    job_id=lambda execution: execution.job_id,
    enqueue=services.enqueue_again,
    readable=permissions.check_view,
    timeout_of=_timeout,
    ended=services.retry_plan,
    on_orphan=_orphaned,
)
