"""One lifecycle for the platform's long runs: a build, a rollout, a task's execution.
Each keeps its own table and names its own statuses (the row is the truth); this module
is how any of them is claimed, kept alive, watched, ended and reaped.

    queued ──claim──▶ running ──end──▶ succeeded / failed / cancelled (each kind's names)
      │                  │
      │                  └── its worker died, or sent no heartbeat: failed by the reaper
      └── its job was lost: enqueued again by the reaper

Every status change is a conditional update from the status it starts at, so a cancel,
the watchdog, the reaper and the job itself never race into a wrong state, and a late or
duplicated job finds nothing to claim.

- `execute()` is the runner a job calls: claim, heartbeat, cancel and timeout watchdog,
  log writer, expected errors (their message) against unexpected ones ("Internal error"),
  the final update, the end of the log stream.
- `reap_orphans()` is the reaper, a housekeeping chore run by every worker at start and by
  the scheduler: a running run whose worker process on this host is gone, or whose
  heartbeat is older than RUN_HEARTBEAT_TIMEOUT (a worker on another host), is failed with
  the reason, after its kind cleaned up; a queued one whose job Redis lost is enqueued again.
- `register()` is the one registration of a kind: the runner, the reaper and the log
  streams (`choreo_site.logstream`) all read it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from choreo_site import housekeeping, logstream
from choreo_site.logstream import LogWriter
from choreo_site.redaction import redact

log = logging.getLogger(__name__)

# How long a run that ended waits for its watchdog to stop (it wakes twice a second, so
# only a watchdog stuck in a query takes longer); a stuck one is a daemon, left behind.
WATCHDOG_JOIN = 5.0


class Aborted(Exception):
    """The run was cancelled or timed out (raised between steps, or by what it waits on)."""


@dataclass(frozen=True)
class Kind:
    name: str  # also its log streams' prefix: "build" → "build-12"
    model: type
    queued: str
    running: str
    succeeded: str
    failed: str
    final: tuple[str, ...]  # every status the run does not leave
    expected: tuple[type[BaseException], ...]  # failures whose message is for the user as it is
    job_id: Callable[[Any], str]
    enqueue: Callable[[Any], None]  # put a queued run's job on its queue again
    readable: Callable  # logstream: may this user read the run's log?
    cancelled: str | None = None  # None: runs of this kind cannot be cancelled
    timeout_setting: str = ""  # the setting that limits a run's time from its claim, if any
    timeout_of: Callable[[Any], float] | None = None  # or each run's own limit, in seconds
    timed_out: str | None = None  # the status of a run over its time (else `failed`)
    # Called once a run has ended (by its job or by the reaper), with its final status.
    ended: Callable[[Any, str], None] | None = None
    success_line: str = ""
    # A dead run, instead of being failed plainly: clean up, resume or fail it (with `fail`).
    on_orphan: Callable[[Any, str], None] | None = None


_kinds: dict[str, Kind] = {}


def register(kind: Kind) -> None:
    _kinds[kind.name] = kind
    logstream.register_stream_kind(kind.name, model=kind.model, final_statuses=kind.final, readable=kind.readable)
    housekeeping.register(reap_orphans)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def process_gone(worker: str) -> bool:
    """Whether the worker process `host:pid` is gone (known only on this host)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie is dead too
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


class Watchdog(threading.Thread):
    """Writes the run's heartbeat, and aborts it on cancel or timeout (checked twice a second)."""

    def __init__(self, kind: Kind, pk: int, timeout: float = 0, limit: str = ""):
        super().__init__(name=f"{kind.name}-{pk}-watchdog", daemon=True)
        self.kind, self.pk = kind, pk
        self.timeout, self.limit = timeout, limit  # seconds (0: none), and what set them
        self.started = time.monotonic()
        self.stopped = threading.Event()
        self.abort_reason = ""
        self.cancelled = False
        self.timed_out = False
        self.target = None  # something with .abort(reason) the run is waiting on, if any

    def run(self) -> None:
        rows = self.kind.model.objects.filter(pk=self.pk)
        last_beat = time.monotonic()
        try:
            while not self.stopped.wait(0.5):
                if self.kind.cancelled and rows.filter(cancel_requested=True).exists():
                    self._abort("Cancelled by a user.", cancelled=True)
                elif self.timeout and time.monotonic() - self.started > self.timeout:
                    self.timed_out = True
                    self._abort(f"Timed out after {self.timeout:g}s ({self.limit}).")
                if time.monotonic() - last_beat >= settings.RUN_HEARTBEAT_INTERVAL:
                    rows.filter(status=self.kind.running).update(heartbeat_at=timezone.now())
                    last_beat = time.monotonic()
        finally:
            close_old_connections()

    def _abort(self, reason: str, cancelled: bool = False) -> None:
        if self.abort_reason:
            return
        self.abort_reason, self.cancelled = reason, cancelled
        if self.target is not None:
            self.target.abort(reason)

    def check(self) -> None:
        """Between steps: stop here if the run was cancelled or timed out."""
        if self.abort_reason:
            raise Aborted(self.abort_reason)


def execute(kind: Kind, pk: int, body: Callable[[Any, LogWriter, Watchdog], None], load: Callable[[int], Any]) -> str:
    """Run a queued run: `body(run, writer, watchdog)` does the work and returns when it
    succeeded, or raises. Returns the final status. A run that is no longer queued (taken by
    another worker, cancelled meanwhile, a duplicated job) is left as it is."""
    now = timezone.now()
    claimed = kind.model.objects.filter(pk=pk, status=kind.queued).update(
        status=kind.running, started_at=now, heartbeat_at=now, worker=worker_identity()
    )
    if claimed != 1:
        return kind.model.objects.filter(pk=pk).values_list("status", flat=True).first() or "missing"
    run = load(pk)
    writer = LogWriter(run.log_stream)
    if kind.timeout_of is not None:
        watchdog = Watchdog(kind, pk, kind.timeout_of(run), "its timeout")
    elif kind.timeout_setting:
        watchdog = Watchdog(kind, pk, getattr(settings, kind.timeout_setting), kind.timeout_setting)
    else:
        watchdog = Watchdog(kind, pk)
    watchdog.start()
    status, error = kind.failed, ""
    try:
        body(run, writer, watchdog)
        status = kind.succeeded
    except Aborted as exc:
        status = kind.failed
        if watchdog.cancelled and kind.cancelled:
            status = kind.cancelled
        elif watchdog.timed_out and kind.timed_out:
            status = kind.timed_out
        error = str(exc)
    except kind.expected as exc:
        error = str(exc)
    except Exception as exc:  # an unexpected failure still ends the run, with its reason
        log.exception("%s %s failed unexpectedly", kind.name, pk)
        error = f"Internal error: {exc.__class__.__name__}: {exc}"
    finally:
        watchdog.stopped.set()
    # The body may have ended its run itself (a rollout, once the new version serves), or
    # someone else may have: what went wrong after that does not change how it ended.
    ended_as = kind.model.objects.filter(pk=pk).exclude(status=kind.running).values_list("status", flat=True).first()
    # The error may quote the run's output: the log writer and `finish` redact it.
    if error:
        writer.line(f"==> Error after it ended as {ended_as}: {error}" if ended_as else f"==> {status.upper()}: {error}")
    elif kind.success_line and not ended_as:
        writer.line(kind.success_line)
    finish(kind, run, status, error)
    status = kind.model.objects.filter(pk=pk).values_list("status", flat=True).first() or status
    writer.end(status)
    watchdog.join(timeout=WATCHDOG_JOIN)
    if kind.ended is not None:
        kind.ended(run, status)
    return status


def finish(kind: Kind, run, status: str, error: str = "", **where) -> bool:
    """End a running run (conditionally: only if it still runs). The error is stored redacted."""
    return (
        kind.model.objects.filter(pk=run.pk, status=kind.running, **where).update(
            status=status, error=redact(error, owner=run), finished_at=timezone.now()
        )
        == 1
    )


def fail(kind: Kind, run, reason: str, note: str = "") -> bool:
    """Fail a run its worker left, if nobody ended it meanwhile; write why and end its log."""
    if not finish(kind, run, kind.failed, reason, worker=run.worker):
        return False
    writer = LogWriter(run.log_stream)
    writer.line(f"==> FAILED: {reason}{' ' + note if note else ''}")
    writer.end(kind.failed)
    log.warning("%s %s failed: %s", kind.name, run.pk, reason)
    if kind.ended is not None:
        kind.ended(run, kind.failed)
    return True


def reap_orphans() -> list[str]:
    """Fail the runs whose worker died; enqueue again the queued runs whose job was lost."""
    from rq.job import Job

    from choreo_site.queues import default_queue

    now = timezone.now()
    stale = now - timedelta(seconds=settings.RUN_HEARTBEAT_TIMEOUT)
    connection = default_queue().connection
    reaped = []
    for kind in list(_kinds.values()):
        for run in kind.model.objects.filter(status=kind.running):
            gone = process_gone(run.worker)
            if not gone and run.heartbeat_at is not None and run.heartbeat_at > stale:
                continue
            reason = (
                f"The worker running this {kind.name} ({run.worker}) stopped: it was killed or crashed."
                if gone
                else f"The worker running this {kind.name} ({run.worker}) sent no heartbeat for {settings.RUN_HEARTBEAT_TIMEOUT}s."
            )
            if kind.on_orphan is not None:
                try:
                    kind.on_orphan(run, reason)
                except Exception:  # one run's policy failing must not stop the round for the others
                    log.exception("%s %s: its orphan policy failed; failing it as it is", kind.name, run.pk)
                    fail(kind, run, reason)
            else:
                fail(kind, run, reason)
            reaped.append(f"{kind.name}-{run.pk}")
        for run in kind.model.objects.filter(status=kind.queued, created_at__lt=now - timedelta(seconds=30)):
            if not Job.exists(kind.job_id(run), connection=connection):
                log.warning("%s %s was queued but its job is gone; enqueueing it again", kind.name, run.pk)
                kind.enqueue(run)
    return reaped
