"""The components and builds API: shapes, rules and bad input. No image is built here."""

import pytest

from builds.models import Build, Component
from tests.conftest import BUSYBOX_DOCKERFILE

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(api):
    api.post("/api/projects/", {"name": "shop"}, format="json")
    return "shop"


def test_create_component_and_read_it(api, project, make_repo):
    repo = make_repo()
    response = api.post(
        f"/api/projects/{project}/components/", {"name": "web", "repository": str(repo.path), "branch": "main"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["webhook_url"].endswith("/hooks/shop/web/")
    assert body["auto_build_on_commit"] is False
    assert "webhook_secret" not in body
    assert api.get(f"/api/projects/{project}/components/web/").json()["repository"] == str(repo.path)
    file_url = api.post(f"/api/projects/{project}/components/", {"name": "web2", "repository": f"file://{repo.path}"}, format="json")
    assert file_url.status_code == 201, file_url.content


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"name": "web", "repository": "/does/not/exist"}, "repository"),
        ({"name": "web", "repository": "relative/path"}, "repository"),
        ({"name": "web", "repository": "--upload-pack=evil"}, "repository"),
        ({"name": "web", "repository": "REPO", "branch": "nope"}, "branch"),
        ({"name": "web", "repository": "REPO", "branch": "a..b"}, "branch"),
        ({"name": "Web", "repository": "REPO"}, "name"),
        ({"name": "web", "repository": "REPO", "path": "../x"}, "path"),
        ({"name": "web", "repository": "REPO", "extra": 1}, "extra"),
        ({"repository": "REPO"}, "name"),
    ],
)
def test_bad_component_input(api, project, make_repo, payload, field):
    repo = make_repo()
    payload = {k: (str(repo.path) if v == "REPO" else v) for k, v in payload.items()}
    response = api.post(f"/api/projects/{project}/components/", payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert not Component.objects.exists()


def test_auto_deploy_needs_auto_build(api, project, make_repo):
    repo = make_repo()
    api.post(f"/api/projects/{project}/components/", {"name": "web", "repository": str(repo.path)}, format="json")
    url = f"/api/projects/{project}/components/web/"
    refused = api.patch(url, {"auto_deploy_on_build": True}, format="json")
    assert refused.status_code == 400
    assert "auto_deploy_on_build" in refused.json()["errors"]
    both = api.patch(url, {"auto_build_on_commit": True, "auto_deploy_on_build": True}, format="json").json()
    assert both["auto_build_on_commit"] and both["auto_deploy_on_build"]
    off = api.patch(url, {"auto_build_on_commit": False}, format="json").json()
    assert off["auto_build_on_commit"] is False and off["auto_deploy_on_build"] is False
    assert api.patch(url, {"auto_build_on_commit": "maybe"}, format="json").status_code == 400


def test_webhook_secret_is_write_only_and_encrypted(api, project, make_repo):
    from django.db import connection

    repo = make_repo()
    api.post(f"/api/projects/{project}/components/", {"name": "web", "repository": str(repo.path)}, format="json")
    secret = "s3cret-marker-0123456789"
    body = api.patch(f"/api/projects/{project}/components/web/", {"webhook_secret": secret}, format="json").json()
    assert body["webhook_secret_set"] is True
    assert secret not in str(body)
    assert Component.objects.get(name="web").webhook_secret == secret  # decrypts
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_secret FROM builds_component")
        stored = cursor.fetchone()[0]
    assert secret.encode() not in (bytes(stored) if not isinstance(stored, str) else stored.encode())
    assert api.patch(f"/api/projects/{project}/components/web/", {"webhook_secret": "short"}, format="json").status_code == 400


def test_start_build_of_unknown_commit_is_refused(api, project, make_repo, django_capture_on_commit_callbacks):
    repo = make_repo()
    api.post(f"/api/projects/{project}/components/", {"name": "web", "repository": str(repo.path)}, format="json")
    url = f"/api/projects/{project}/components/web/builds/"
    for commit, reason in (("deadbeef", "does not exist"), ("not-hex", "not a commit id"), ("12", "not a commit id")):
        response = api.post(url, {"commit": commit}, format="json")
        assert response.status_code == 400, response.content
        assert reason in response.json()["detail"]
        assert "commit" in response.json()["errors"]
    assert not Build.objects.exists()
    with django_capture_on_commit_callbacks() as callbacks:
        queued = api.post(url, {"commit": repo.git("rev-parse", "HEAD")[:8]}, format="json")
    assert queued.status_code == 201
    assert queued.json()["commit"] == repo.git("rev-parse", "HEAD")
    assert queued.json()["status"] == "queued"
    assert len(callbacks) == 1  # enqueued after commit


def test_unknown_component_and_build_are_404(api, project):
    assert api.get(f"/api/projects/{project}/components/nope/").status_code == 404
    assert api.post(f"/api/projects/{project}/components/nope/builds/", {}, format="json").status_code == 404
    assert api.get("/api/builds/999/").status_code == 404
    assert api.get("/api/builds/999/logs/").status_code == 404
    assert api.post("/api/builds/999/cancel/").status_code == 404


def test_cancel_a_queued_build(api, project, make_repo):
    repo = make_repo({".choreo/component.yaml": "schemaVersion: 1\ntype: service\n", "Dockerfile": BUSYBOX_DOCKERFILE})
    api.post(f"/api/projects/{project}/components/", {"name": "web", "repository": str(repo.path)}, format="json")
    build = api.post(f"/api/projects/{project}/components/web/builds/", {}, format="json").json()
    response = api.post(f"/api/builds/{build['id']}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    again = api.post(f"/api/builds/{build['id']}/cancel/")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    assert "Cancelled" in api.get(f"/api/builds/{build['id']}/logs/").content.decode()
