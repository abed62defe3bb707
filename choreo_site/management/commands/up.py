"""`manage.py up`: run the whole platform in the foreground.

In order:
1. refuse at once if another `up` runs on the same DATA_DIR (naming its pid);
2. check that the database, Redis and the Docker Engine answer, and exit non-zero with one
   line naming the first that does not, and the fix, before starting anything;
3. migrate, make sure `admin` exists;
4. start the registry, the ingress (HAProxy), the web tier (a front, gunicorn's WSGI
   workers, the ASGI server), the build, default and Git workers and the scheduler;
5. print "Platform up" once /healthz is ok, or stop everything and exit non-zero naming the
   failing check when it is not within UP_HEALTH_TIMEOUT;
6. unless DEMO=0, run the main job once on the sample in `examples/`.

Ctrl-C, SIGTERM and SIGHUP stop the platform's own processes (never the Docker Engine or
Redis). However `up` ends, SIGKILL and crashes included, the kernel stops every process it
started (choreo_site.processes). A process that dies is started again, with a back-off.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from django.conf import settings
from django.core.management.base import BaseCommand

from builds.dockerbuild import engine_version
from choreo_site import processes
from choreo_site.daemons import NotReady, prepare

STOP_GRACE = 15


@dataclass
class Child:
    name: str
    argv: list[str]
    log: str | None = None  # a file in DATA_DIR for chatty children, else the console
    proc: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)


class Command(BaseCommand):
    help = "Run the platform in the foreground."

    def add_arguments(self, parser):
        parser.add_argument("--no-demo", action="store_true", help="Do not run the demo (same as DEMO=0).")

    def handle(self, *args, no_demo=False, **options):
        self.stopping = False
        try:
            lock = _lock_data_dir()
            children = [Child(d.name, d.argv, d.log) for d in prepare()]
        except NotReady as exc:
            self.stderr.write(str(exc))
            sys.exit(1)
        self._say(f"Docker Engine {engine_version()}; database and Redis answer")

        def stop(signum, frame):
            self.stopping = True

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, stop)
        demo = None
        try:
            for child in children:
                self._start(child)
            problem = self._wait_healthy(children)
            if problem:
                self.stderr.write(f"The platform did not become healthy within {settings.UP_HEALTH_TIMEOUT}s: {problem}")
                self._stop_all(children)
                sys.exit(1)
            if not self.stopping:
                self._say(self.style.SUCCESS(f"Platform up: {settings.PUBLIC_URL}/ (user admin)"))
            if not (no_demo or os.environ.get("DEMO", "1") == "0") and not self.stopping:
                demo = subprocess.Popen(
                    [sys.executable, "manage.py", "demo"], cwd=settings.BASE_DIR, preexec_fn=processes.child_of_this_process()
                )
            while not self.stopping:
                for child in children:
                    self._supervise(child)
                time.sleep(0.5)
        finally:
            if demo is not None and demo.poll() is None:
                demo.terminate()
            self._stop_all(children)
            lock.close()
        self._say("Platform stopped. (The Docker Engine, Redis and what they run keep running.)")

    def _say(self, line: str, error: bool = False) -> None:
        """Print a line; a terminal that went away (SIGHUP, a closed pipe) means stop."""
        try:
            (self.stderr if error else self.stdout).write(line)
        except OSError:
            self.stopping = True

    def _start(self, child: Child) -> None:
        if child.log:
            with open(settings.DATA_DIR / child.log, "ab") as output:
                child.proc = subprocess.Popen(
                    child.argv, cwd=settings.BASE_DIR, stdout=output, stderr=output, preexec_fn=processes.child_of_this_process()
                )
        else:
            child.proc = subprocess.Popen(child.argv, cwd=settings.BASE_DIR, preexec_fn=processes.child_of_this_process())
        child.started_at = time.monotonic()
        self._say(f"started {child.name} (pid {child.proc.pid})")

    def _supervise(self, child: Child) -> None:
        if child.proc is None or child.proc.poll() is None:
            if child.proc is None and time.monotonic() >= child.next_start:
                self._start(child)
            return
        code = child.proc.returncode
        child.proc = None
        child.restarts = child.restarts + 1 if time.monotonic() - child.started_at < 30 else 1
        delay = min(2**child.restarts, 60)
        child.next_start = time.monotonic() + delay
        self._say(f"{child.name} exited with {code}; starting it again in {delay}s", error=True)

    def _wait_healthy(self, children: list[Child]) -> str:
        """Wait for /healthz to answer 200. Returns what is wrong when it never does."""
        url = f"http://{settings.WEB_HOST}:{settings.WEB_PORT}/healthz"
        deadline = time.monotonic() + settings.UP_HEALTH_TIMEOUT
        last = "the web server does not answer"
        while time.monotonic() < deadline and not self.stopping:
            for child in children:
                self._supervise(child)
            try:
                # /healthz itself waits up to 2 s for a registry that does not answer.
                response = requests.get(url, timeout=5)
                if response.status_code == 200:
                    return ""
                failing = {k: v for k, v in response.json().get("checks", {}).items() if v != "ok"}
                last = "; ".join(f"{k}: {v}" for k, v in failing.items()) or f"/healthz answered {response.status_code}"
            except (requests.RequestException, ValueError) as exc:
                last = f"the web server does not answer at {url} ({type(exc).__name__})"
            time.sleep(0.5)
        return "" if self.stopping else last

    def _stop_all(self, children: list[Child]) -> None:
        """SIGTERM every child, give them STOP_GRACE seconds, then SIGKILL what is left of
        each one's process group."""
        running = [c for c in children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            child.proc.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for child in running:
            try:
                child.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(child.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.proc.wait()


def _lock_data_dir():
    """Hold DATA_DIR/up.pid locked while `up` runs. The kernel drops the lock when the
    process ends, however it ends, so a stale file never blocks a start."""
    path = Path(settings.DATA_DIR) / "up.pid"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "unknown"
        handle.close()
        raise NotReady(f"Another `up` (pid {pid}) is running on {settings.DATA_DIR}: stop it first, or use another DATA_DIR.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
