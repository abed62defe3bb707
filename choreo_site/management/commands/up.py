"""`manage.py up`: migrate, make sure `admin` exists, then run the whole platform in the
foreground: the registry, the ingress (HAProxy), web (ASGI: HTTP and WebSockets), build
and default workers and the scheduler. Unless DEMO=0, run the main job once on the sample in `examples/`.

Ctrl-C or SIGTERM stops the platform's own processes (never the Docker Engine). A
process that dies is started again, with a back-off.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from builds import registry
from builds.dockerbuild import BuildStepError, engine_version
from deployments.ingress import write_config as write_ingress_config

HEALTH_TIMEOUT = 90


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
        try:
            version = engine_version()
        except BuildStepError as exc:
            raise CommandError(f"{exc}. Start it (make up does: dockerd &) and try again.") from None
        self.stdout.write(f"Docker Engine {version}")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("ensure_admin")
        children = self._children()
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            for child in children:
                self._start(child)
            self._wait_healthy(children, lambda: stopping)
            self.stdout.write(self.style.SUCCESS(f"Platform up: {settings.PUBLIC_URL}/ (user admin)"))
            if not (no_demo or os.environ.get("DEMO", "1") == "0") and not stopping:
                demo = subprocess.Popen([sys.executable, "manage.py", "demo"], cwd=settings.BASE_DIR)
            else:
                demo = None
            while not stopping:
                for child in children:
                    self._supervise(child)
                time.sleep(0.5)
        finally:
            if demo is not None and demo.poll() is None:
                demo.terminate()
            self._stop_all(children)
        self.stdout.write("Platform stopped. (The Docker Engine and what it runs keep running.)")

    def _children(self) -> list[Child]:
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        children = []
        if settings.REGISTRY_EMBEDDED:
            binary = shutil.which("docker-registry") or shutil.which("registry")
            if binary is None:
                raise CommandError("The registry is not installed: apt-get install docker-registry (or set REGISTRY_URL).")
            config = registry.embedded_config(settings.DATA_DIR, settings.REGISTRY_PORT)
            # The registry logs every 404 of a blob probe as an error: keep that in a file.
            children.append(Child("registry", [binary, "serve", str(config)], log="registry.log"))
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            raise CommandError("The ingress is not installed: apt-get install haproxy")
        children.append(Child("ingress", [haproxy, "-W", "-db", "-f", str(write_ingress_config())], log="ingress.log"))
        daphne = [
            *(sys.executable, "-m", "daphne", "-b", settings.WEB_HOST, "-p", str(settings.WEB_PORT)),
            *("--access-log", str(settings.DATA_DIR / "access.log"), "choreo_site.asgi:application"),
        ]
        children.append(Child("web", daphne))
        for i in range(settings.BUILD_CONCURRENCY):
            children.append(Child(f"build-worker-{i + 1}", [*manage, "rqworker", "builds", "--verbosity", "0"]))
        children.append(Child("worker", [*manage, "rqworker", "default", "--verbosity", "0"]))
        children.append(Child("scheduler", [*manage, "scheduler"]))
        return children

    def _start(self, child: Child) -> None:
        output = open(settings.DATA_DIR / child.log, "ab") if child.log else None
        child.proc = subprocess.Popen(child.argv, cwd=settings.BASE_DIR, start_new_session=True, stdout=output, stderr=output)
        child.started_at = time.monotonic()
        self.stdout.write(f"started {child.name} (pid {child.proc.pid})")

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
        self.stderr.write(f"{child.name} exited with {code}; starting it again in {delay}s")

    def _wait_healthy(self, children: list[Child], stopping) -> None:
        url = f"http://{settings.WEB_HOST}:{settings.WEB_PORT}/healthz"
        deadline = time.monotonic() + HEALTH_TIMEOUT
        last = ""
        while time.monotonic() < deadline and not stopping():
            for child in children:
                self._supervise(child)
            try:
                response = requests.get(url, timeout=2)
                if response.status_code == 200:
                    return
                last = response.text
            except requests.RequestException as exc:
                last = str(exc)
            time.sleep(0.5)
        if not stopping():
            raise CommandError(f"The platform did not become healthy in {HEALTH_TIMEOUT}s: {last}")

    def _stop_all(self, children: list[Child]) -> None:
        running = [c for c in children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            child.proc.terminate()
        deadline = time.monotonic() + 15
        for child in running:
            try:
                child.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
