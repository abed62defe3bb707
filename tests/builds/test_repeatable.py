"""Same commit, same inputs → the same image digest, on two instances with empty data
directories. Instance A is this test process; instance B is a whole platform started with
`manage.py up` in a fresh data directory, with its own database and registry, and with
the Engine's build cache turned off so every step really runs again."""

import os
import signal

import pytest
import requests

from builds.models import Build
from builds.services import build_start, component_create
from environments.services import project_create
from tests.conftest import MANAGE, free_port, run_build_jobs, start_process, wait_http

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("registry_server", "base_images"),
    pytest.mark.slow,
    pytest.mark.once,
]


@pytest.fixture
def instance_b(tmp_path):
    data = tmp_path / "instance-b"
    web, reg = free_port(), free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(data),
        "WEB_PORT": str(web),
        "REGISTRY_PORT": str(reg),
        "INGRESS_PORT": str(free_port()),
        "DATABASE_URL": f"sqlite:///{data}/db.sqlite3",
        "ADMIN_PASSWORD": "instance-b-password",
        "BUILD_USE_CACHE": "0",
        "BUILD_CONCURRENCY": "1",
        "DEMO": "0",
    }
    proc = start_process([*MANAGE, "up"], env, tmp_path / "instance-b.log")
    try:
        wait_http(f"http://127.0.0.1:{web}/healthz", timeout=90, proc=proc)
        token = requests.post(
            f"http://127.0.0.1:{web}/api/auth/token/", json={"username": "admin", "password": "instance-b-password"}, timeout=10
        ).json()["token"]
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        session.base = f"http://127.0.0.1:{web}/api"
        session.registry_port = reg
        yield session
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except Exception:
            os.killpg(proc.pid, signal.SIGKILL)
        assert (data / "admin-password").exists() is False  # ADMIN_PASSWORD was given


def repository_files(kind: str) -> dict[str, str] | None:
    """The default repository (a Dockerfile), or a source build's application (no Dockerfile)."""
    if kind == "dockerfile":
        return None
    from tests.builds.test_source_builds import FLASK_APP, SERVICE, fixture

    app = {"python": {"requirements.txt": "flask==3.0.3\ngunicorn==22.0.0\n", "app.py": FLASK_APP}}.get(kind) or fixture(kind)
    return {".choreo/component.yaml": SERVICE, **app}


@pytest.mark.parametrize("kind", ["dockerfile", "python", "node", "go"])
def test_two_instances_build_the_same_digest(make_repo, instance_b, kind):
    repo = make_repo(repository_files(kind))
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    build_start(component=component)
    run_build_jobs()
    a = Build.objects.get()
    assert a.status == Build.SUCCEEDED, a.error

    b = instance_b
    assert b.post(f"{b.base}/projects/", json={"name": "shop"}).status_code == 201
    created = b.post(f"{b.base}/projects/shop/components/", json={"name": "web", "repository": str(repo.path)})
    assert created.status_code == 201, created.text
    built = b.post(f"{b.base}/projects/shop/components/web/builds/?wait=1", json={}, timeout=320)
    assert built.status_code == 200, built.text
    body = built.json()
    assert body["status"] == "succeeded", body["error"]
    assert body["reused"] is False
    assert body["digest"] == a.digest
    assert body["image"] == f"127.0.0.1:{b.registry_port}/shop/web@{a.digest}"
    logs = b.get(f"{b.base}/builds/{body['id']}/logs/").text
    assert "Using cache" not in logs
