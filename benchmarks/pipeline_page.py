"""The project's pipeline page with 30 components × 4 environments (every cell deployed,
with history and configuration saved but not deployed), against the project list page.

1. In-process (Django's test client, the whole middleware stack, SQLite): the server time
   (median) and the number of queries of each page, and the pipeline page's queries at 3
   components: they must not grow with the number of components.
2. Through the real web tier (`manage.py up`: HAProxy, gunicorn): time to first byte of
   each page, interleaved, as medians and their ratio.

Usage: .venv/bin/python -m benchmarks.pipeline_page [ROUNDS]
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time

COMPONENTS, ENVIRONMENTS = 30, 4


def populate(components: int = COMPONENTS, environments: int = ENVIRONMENTS, project_name: str = "bench") -> None:
    """Project `project_name` with `components` components deployed in each of its
    `environments` environments (rows only: no container runs)."""
    from builds.models import Build, Component, Image
    from deployments.models import Deployment, Release
    from environments.services import config_set, config_snapshot, environment_create, project_create

    project = project_create(name=project_name)
    for name in ("staging", "preprod", "canary")[: max(environments - 2, 0)]:
        environment_create(project=project, name=name, after=project.environments.order_by("-position").first().name)
    envs = list(project.environments.order_by("position"))
    for n in range(components):
        component = Component.objects.create(project=project, name=f"svc{n:02d}", repository="/nowhere", branch="main", path=".")
        config_set(project=project, component=component.name, environment=None, key="DB_URL", value=f"postgres://db/{n}")
        for position, environment in enumerate(envs):
            config_set(project=project, component=component.name, environment=environment, key="WORKERS", value=str(position + 1))
            for version in range(3):  # two superseded, then the active one
                digest = f"sha256:{n:032d}{position:016d}{version:016d}"
                image = Image.objects.create(
                    component=component, commit=f"{n:040d}", digest=digest, reference=f"r@{digest}", inputs_key=digest
                )
                build = Build.objects.create(
                    component=component,
                    commit=f"{n:040d}",
                    status=Build.SUCCEEDED,
                    image=image,
                    digest=digest,
                    descriptor={"type": "service"},
                )
                release = Release.objects.create(
                    component=component,
                    build=build,
                    image=image,
                    digest=digest,
                    image_reference=image.reference,
                    descriptor={"schemaVersion": 1, "type": "service", "endpoints": [], "configurations": []},
                    config=config_snapshot(project=project, component=component.name),
                    config_hash=digest,
                )
                Deployment.objects.create(
                    component=component,
                    environment=environment,
                    release=release,
                    config=config_snapshot(project=project, component=component.name, environment=environment),
                    status=Deployment.ACTIVE if version == 2 else Deployment.SUPERSEDED,
                )
        # Saved after the deployments: "1 change not deployed" in the first environment.
        config_set(project=project, component=component.name, environment=envs[0], key="FEATURE", value="on")


def in_process(rounds: int) -> None:
    data = tempfile.mkdtemp(prefix="bench-pipeline-")
    os.environ.update({"DATA_DIR": data, "DATABASE_URL": f"sqlite:///{data}/db.sqlite3"})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "choreo_site.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    call_command("migrate", verbosity=0)
    populate(3, ENVIRONMENTS, "small")
    populate(COMPONENTS, ENVIRONMENTS, "bench")
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.create_superuser("root", password="root-password-123"))

    def measure(url: str) -> tuple[float, int, int]:
        client.get(url)  # warm
        queries = []

        def count(execute, sql, params, many, context):
            queries.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            client.get(url)
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000, len(queries), len(response.content)

    print(f"machine: {os.uname().nodename}, {os.cpu_count()} cores; SQLite; median of {rounds} requests, in-process")
    small_ms, small_q, _ = measure("/projects/small/")
    big_ms, big_q, size = measure("/projects/bench/")
    list_ms, list_q, _ = measure("/")
    print(f"pipeline page, {COMPONENTS} components x {ENVIRONMENTS} environments: {big_ms:.1f} ms, {big_q} queries, {size // 1024} KiB")
    print(f"pipeline page, 3 components x {ENVIRONMENTS} environments: {small_ms:.1f} ms, {small_q} queries")
    print(f"project list page: {list_ms:.1f} ms, {list_q} queries")
    print(f"  server time ratio pipeline / project list: {big_ms / list_ms:.2f}x")
    if big_q != small_q:
        raise SystemExit(f"the pipeline page's queries grow with its components: {small_q} at 3, {big_q} at {COMPONENTS}")


def through_web_tier(rounds: int) -> None:
    import requests

    from benchmarks.platform import PASSWORD, platform_shell, running_platform

    with running_platform("bench-pipeline-web-") as (tmp, base, _):
        platform_shell(tmp, f"from benchmarks.pipeline_page import populate; populate({COMPONENTS}, {ENVIRONMENTS}); print('ok')")
        browser = requests.Session()
        login = browser.get(f"{base}/login/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        browser.post(f"{base}/login/", data={"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": token}, timeout=10)

        def first_byte(url: str) -> float:
            started = time.perf_counter()
            with browser.get(url, stream=True, timeout=30) as response:
                assert response.status_code == 200 and "/login/" not in response.url, (url, response.status_code)
                next(response.iter_content(1))
                elapsed = time.perf_counter() - started
                response.content  # noqa: B018  read the rest before the next request
            return elapsed

        pages = {"project list": f"{base}/", "pipeline": f"{base}/projects/bench/"}
        for url in pages.values():
            first_byte(url)  # warm
        times = {name: [] for name in pages}
        for _ in range(rounds):  # interleaved: both see the same machine
            for name, url in pages.items():
                times[name].append(first_byte(url))
        medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
        print(f"through the web tier (HAProxy, gunicorn), median of {rounds} interleaved requests:")
        print(f"  time to first byte: project list {medians['project list']:.1f} ms, pipeline {medians['pipeline']:.1f} ms")
        print(f"  ratio pipeline / project list: {medians['pipeline'] / medians['project list']:.2f}x")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    in_process(count)
    through_web_tier(count)
