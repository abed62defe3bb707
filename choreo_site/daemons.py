"""The platform's long-running processes, in one list: what `manage.py up` supervises in
the foreground and what the systemd units (`manage.py systemd_units`) run as services.

`prepare` is what comes before either starts them: the checks, migrations, the admin user
and the configuration files the registry, the ingress and the web front read.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass

from django.conf import settings
from django.core.management import call_command

from builds import registry
from choreo_site import health, metrics, webfront
from deployments.ingress import write_config as write_ingress_config


class NotReady(Exception):
    """The platform cannot start: the message is one line naming what and the fix."""


@dataclass(frozen=True)
class Daemon:
    name: str
    argv: list[str]
    log: str | None = None  # a file in DATA_DIR for chatty processes, else the console (or the journal)
    description: str = ""


def daemons() -> list[Daemon]:
    """Every process of the platform, in start order."""
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    found = []
    if settings.REGISTRY_EMBEDDED:
        binary = shutil.which("docker-registry") or shutil.which("registry")
        if binary is None:
            raise NotReady("The registry is not installed: apt-get install docker-registry (or set REGISTRY_URL).")
        config = registry.embedded_config(settings.DATA_DIR, settings.REGISTRY_PORT)
        # The registry logs every 404 of a blob probe as an error: keep that in a file.
        found.append(Daemon("registry", [binary, "serve", str(config)], "registry.log", "the embedded image registry"))
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        raise NotReady("The ingress is not installed: apt-get install haproxy")
    found.append(Daemon("ingress", [haproxy, "-W", "-db", "-f", str(write_ingress_config())], "ingress.log", "the ingress (HAProxy)"))
    web = webfront.commands()
    found.append(Daemon("web-front", web["web-front"], "webfront.log", "the web tier's front (HAProxy)"))
    found.append(Daemon("web", web["web"], None, "pages and the API (gunicorn)"))
    found.append(Daemon("web-async", web["web-async"], None, "WebSockets and long waits (ASGI)"))
    for i in range(settings.BUILD_CONCURRENCY):
        found.append(Daemon(f"build-worker-{i + 1}", [*manage, "rqworker", "builds", "--verbosity", "0"], None, "a build worker"))
    found.append(Daemon("worker", [*manage, "rqworker", "default", "--verbosity", "0"], None, "rollouts"))
    found.append(Daemon("git-worker", [*manage, "rqworker", "git", "--verbosity", "0"], None, "polls and push events (Git)"))
    for i in range(settings.TASK_CONCURRENCY):
        found.append(Daemon(f"task-worker-{i + 1}", [*manage, "rqworker", "tasks", "--verbosity", "0"], None, "task executions"))
    found.append(Daemon("scheduler", [*manage, "scheduler"], None, "the scheduler"))
    return found


def prepare() -> list[Daemon]:
    """Check that the database, Redis and the Docker Engine answer (NotReady naming the
    first that does not), migrate, make sure `admin` exists, start the web processes'
    figures afresh, and write the daemons' configuration files. Returns the daemons."""
    for problem in health.unreachable_dependencies():
        raise NotReady(problem)
    call_command("migrate", interactive=False, verbosity=0)
    call_command("ensure_admin")
    metrics.reset_process_files()
    return daemons()
