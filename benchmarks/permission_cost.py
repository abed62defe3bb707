"""What the permission checks cost: the project list and a component's deployment list for
a user who is a member of 10 projects out of 1,000, against a superuser, side by side in
one run, with the number of queries each request makes.

In a fresh data directory (SQLite), through Django's test client and the whole stack of
middleware, authentication and views; no worker or Docker is needed: the deployments are
rows. Usage: .venv/bin/python -m benchmarks.permission_cost [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

DATA = tempfile.mkdtemp(prefix="bench-permissions-")
os.environ.update({"DATA_DIR": DATA, "DATABASE_URL": f"sqlite:///{DATA}/db.sqlite3"})
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "choreo_site.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

PROJECTS, MEMBER_OF, DEPLOYMENTS = 1000, 10, 20


def populate():
    from django.contrib.auth.models import User

    from builds.models import Build, Component, Image
    from deployments.models import Deployment, Release
    from environments.models import Environment, Membership, Project

    member = User.objects.create_user("member", password="member-password-123")
    root = User.objects.create_superuser("root", password="root-password-123")
    others = [User(username=f"user{i}") for i in range(200)]
    User.objects.bulk_create(others)
    others = list(User.objects.filter(username__startswith="user"))
    projects = Project.objects.bulk_create([Project(name=f"p{i:04d}") for i in range(PROJECTS)])
    projects = list(Project.objects.order_by("name"))
    Environment.objects.bulk_create(
        [Environment(project=p, name=name, position=i) for p in projects for i, name in enumerate(("development", "production"))]
    )
    Component.objects.bulk_create([Component(project=p, name="web", repository="/nowhere", branch="main", path=".") for p in projects])
    memberships = [
        Membership(project=p, user=others[(i + j) % len(others)], role="developer") for i, p in enumerate(projects) for j in range(3)
    ]
    memberships += [Membership(project=p, user=member, role="developer") for p in projects[:MEMBER_OF]]
    Membership.objects.bulk_create(memberships)
    component = Component.objects.get(project=projects[0], name="web")
    environment = Environment.objects.get(project=projects[0], name="development")
    image = Image.objects.create(component=component, commit="a" * 40, digest="sha256:" + "b" * 64, reference="r", inputs_key="k")
    build = Build.objects.create(component=component, commit="a" * 40, status=Build.SUCCEEDED, image=image, descriptor={"type": "service"})
    release = Release.objects.create(
        component=component,
        build=build,
        image=image,
        digest=image.digest,
        image_reference="r",
        descriptor={"type": "service"},
        config_hash="h",
    )
    Deployment.objects.bulk_create(
        [Deployment(component=component, environment=environment, release=release, status="superseded") for _ in range(DEPLOYMENTS)]
    )
    return member, root, projects[0].name


def measure(client: Client, url: str, rounds: int) -> tuple[float, int]:
    client.get(url)  # warm
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.content[:200])
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.get(url)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, len(queries)


def main(rounds: int) -> None:
    call_command("migrate", verbosity=0)
    member, root, first = populate()
    clients = {}
    for name, user in (("member of 10", member), ("superuser", root)):
        client = Client(HTTP_HOST="127.0.0.1")  # an allowed host
        client.force_login(user)
        clients[name] = client
    print(f"machine: {os.uname().nodename}, {os.cpu_count()} cores; {PROJECTS} projects, SQLite; median of {rounds} requests")
    for label, url in (
        ("project list, API", "/api/projects/"),
        ("project list, page", "/"),
        ("deployment list, API", f"/api/projects/{first}/components/web/deployments/"),
    ):
        figures = {name: measure(client, url, rounds) for name, client in clients.items()}
        (m_ms, m_q), (s_ms, s_q) = figures["member of 10"], figures["superuser"]
        note = "" if "deployment" in label else f" (the superuser's list has {PROJECTS} projects, the member's {MEMBER_OF})"
        print(f"{label}: member of 10 {m_ms:.2f} ms, {m_q} queries; superuser {s_ms:.2f} ms, {s_q} queries{note}")
        print(f"  ratio member / superuser: {m_ms / s_ms:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
