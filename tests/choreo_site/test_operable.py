"""What an operator looks at: /metrics, the API's root, schema and docs page, the read-only
admin pages of releases, deployments, routes, schedules and executions, and the protected Redis."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from builds.models import Build, Image
from builds.services import build_start, component_create
from deployments.models import Deployment, Release, Route
from environments.services import config_set, project_create
from tests.conftest import run_build_jobs


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("registry_server", "base_images")
def test_metrics_need_a_token_and_count_a_build_with_its_duration(api, make_repo):
    assert APIClient().get("/metrics").status_code == 401
    component = component_create(project=project_create(name="shop"), name="web", repository=str(make_repo().path))
    before = samples(api.get("/metrics").content.decode())
    assert before.get(("choreo_builds_total", (("status", "succeeded"),)), 0) == 0
    assert before[("choreo_build_duration_seconds_count", ())] == 0

    build_start(component=component)
    run_build_jobs()
    assert Build.objects.get().status == Build.SUCCEEDED

    response = api.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    after = samples(response.content.decode())
    assert after[("choreo_builds_total", (("status", "succeeded"),))] == 1
    assert after[("choreo_build_duration_seconds_count", ())] == 1
    assert after[("choreo_build_duration_seconds_sum", ())] > 0
    assert after[("choreo_build_duration_seconds_bucket", (("le", "+Inf"),))] == 1
    # HTTP requests by status (django-prometheus), RQ queues (django-rq), the ingress.
    assert after[("django_http_responses_total_by_status_total", (("status", "401"),))] >= 1
    assert any(name == "rq_jobs" for name, _ in after)
    assert after[("choreo_ingress_routes", ())] == 0
    assert ("choreo_rollout_duration_seconds_count", ()) in after


@pytest.mark.django_db
def test_schema_needs_a_token_and_the_api_root_lists_the_endpoints(api):
    anonymous = APIClient()
    assert anonymous.get("/api/schema/").status_code == 401
    assert anonymous.get("/api/").status_code == 401
    assert api.get("/api/schema/").status_code == 200
    body = api.get("/api/").json()
    assert body["docs"].endswith("/api/docs/") and body["schema"].endswith("/api/schema/")
    paths = {e["path"]: e["methods"] for e in body["endpoints"]}
    assert paths["/api/projects/"] == ["GET", "POST"]
    assert "POST" in paths["/api/projects/{project}/components/{component}/deploy/"]


@pytest.mark.django_db
def test_the_docs_page_is_for_logged_in_users_and_serves_its_own_assets(client, logged_in):
    assert client.get("/api/docs/").status_code == 302
    html = logged_in.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower() and "https://" not in html
    assert "/api/docs/" in logged_in.get("/").content.decode()  # the top navigation


@pytest.mark.django_db
def test_admin_shows_releases_deployments_routes_and_executions_read_only_without_secrets(logged_in, admin_user, make_repo):
    project = project_create(name="shop")
    component = component_create(project=project, name="web", repository=str(make_repo().path))
    development = project.environments.get(name="development")
    config_set(project=project, component="web", environment=development, key="DB_PASSWORD", value="s3cret-in-admin", secret=True)
    build = Build.objects.create(component=component, commit="a" * 40, status=Build.SUCCEEDED)
    image = Image.objects.create(component=component, commit="a" * 40, digest="sha256:" + "1" * 64, reference="r@sha256:1")
    release = Release.objects.create(
        component=component, build=build, image=image, digest=image.digest, image_reference=image.reference, descriptor={}, config_hash="x"
    )
    deployment = Deployment.objects.create(
        component=component, environment=development, release=release, status=Deployment.FAILED, error="replica said s3cret-in-admin"
    )
    route = Route.objects.create(component=component, environment=development, host="web.development.shop.localhost", slot=1)
    for model, obj in (("release", release), ("deployment", deployment), ("route", route)):
        listing = logged_in.get(f"/admin/deployments/{model}/")
        assert listing.status_code == 200
        page = logged_in.get(f"/admin/deployments/{model}/{obj.pk}/change/")
        assert page.status_code == 200
        html = page.content.decode()
        assert "s3cret-in-admin" not in html + listing.content.decode()
        assert 'name="_save"' not in html  # view only
        assert logged_in.get(f"/admin/deployments/{model}/add/").status_code == 403
        assert logged_in.post(f"/admin/deployments/{model}/{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    assert "replica said ***" in logged_in.get(f"/admin/deployments/deployment/{deployment.pk}/change/").content.decode()
    assert Deployment.objects.filter(pk=deployment.pk).exists()

    from tasks.models import Execution

    execution = Execution.objects.create(
        component=component,
        environment=development,
        deployment=deployment,
        trigger="manual",
        triggered_at=deployment.created_at,
        args=["--password", "s3cret-in-admin"],
        status="failed",
        error="task said s3cret-in-admin",
    )
    for url in ("/admin/tasks/execution/", f"/admin/tasks/execution/{execution.pk}/change/", "/admin/tasks/schedule/"):
        page = logged_in.get(url)
        assert page.status_code == 200 and "s3cret-in-admin" not in page.content.decode()
    assert "task said ***" in logged_in.get(f"/admin/tasks/execution/{execution.pk}/change/").content.decode()
    assert logged_in.post(f"/admin/tasks/execution/{execution.pk}/delete/", {"post": "yes"}).status_code == 403


def test_a_local_user_cannot_use_the_redis_that_make_up_started():
    password_file = settings.REDIS_PASSWORD_FILE
    if not password_file.exists():
        pytest.skip(f"this machine's Redis was not started by make up ({password_file} is missing)")
    stat = password_file.stat()
    assert stat.st_uid == 0 and stat.st_mode & 0o077 == 0, oct(stat.st_mode)
    as_nobody = ["runuser", "-u", "nobody", "--"]
    read = subprocess.run([*as_nobody, "cat", str(password_file)], capture_output=True, text=True)
    assert read.returncode != 0 and "Permission denied" in read.stderr
    write = subprocess.run(
        [*as_nobody, "redis-cli", "-h", "127.0.0.1", "-p", "6379", "SET", "choreo-test-intruder", "x"], capture_output=True, text=True
    )
    assert "NOAUTH" in write.stdout + write.stderr
    # With the password, the same command works: the refusal above was the password's doing.
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, password=password_file.read_text().strip(), db=15)
    assert client.get("choreo-test-intruder") is None
    assert client.ping()


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()  # PEP 503


def _pins(path: Path) -> dict[str, str]:
    """name → version of each `name==version` line (continuations and hashes skipped)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip().rstrip("\\").strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            pins[_normal(name.split("[", 1)[0])] = version.split(";")[0].strip()
    return pins


def _wanted(path: Path) -> dict[str, str]:
    """The pins of a requirements file and of those it includes with `-r`."""
    pins = _pins(path)
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            pins |= _wanted(path.parent / line[3:].strip())
    return pins


LOCKS = [
    ("requirements.txt", "requirements.lock"),
    ("requirements-dev.txt", "requirements-dev.lock"),
    ("requirements-mutate.txt", "requirements-mutate.lock"),
]


@pytest.mark.parametrize("requirements, lock", LOCKS)
def test_every_requirement_is_in_the_lock_file_with_hashes(requirements, lock):
    root = settings.BASE_DIR
    wanted = _wanted(root / requirements)
    locked = _pins(root / lock)
    missing = {name: version for name, version in wanted.items() if locked.get(name) != version}
    assert not missing, f"{lock} lacks {missing}: run make lock"
    lines = (root / lock).read_text().splitlines()
    unhashed = [line for i, line in enumerate(lines) if "==" in line and not line.startswith("#") and "--hash=sha256:" not in lines[i + 1]]
    assert not unhashed, f"pins without a hash in {lock}: {unhashed}"


def test_what_is_installed_is_what_the_lock_file_says():
    root = settings.BASE_DIR
    locked = _pins(root / "requirements-dev.lock")
    frozen = subprocess.run([os.path.join(root, ".venv/bin/pip"), "freeze", "--all"], capture_output=True, text=True, check=True).stdout
    installed = {}
    for line in frozen.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            installed[_normal(name)] = version
    wrong = {name: (version, installed.get(name)) for name, version in locked.items() if installed.get(name) != version}
    assert not wrong, f"installed packages differ from the lock file (locked, installed): {wrong}"
