"""The server-rendered pages: login, projects, the Build page and build details.
Every button is a POST form that calls the same service as the API."""

import pytest
from django.test import Client

from builds.models import Build, Component
from tests.conftest import messages_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def component(api, make_repo):
    repo = make_repo()
    api.post("/api/projects/", {"name": "shop"}, format="json")
    api.post("/api/projects/shop/components/", {"name": "web", "repository": str(repo.path)}, format="json")
    component = Component.objects.get()
    component.repo = repo
    return component


def test_pages_need_login():
    client = Client()
    for path in ("/", "/projects/shop/", "/projects/shop/components/web/build/"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")
    assert client.get("/login/").status_code == 200


def test_login_with_the_form(admin_user):
    client = Client()
    bad = client.post("/login/", {"username": "admin", "password": "nope"})
    assert "did not match" in bad.content.decode()
    good = client.post("/login/", {"username": "admin", "password": "admin-password-for-tests"})
    assert good.status_code == 302


def test_create_project_from_the_page_and_refusal_shows_reason(logged_in):
    response = logged_in.post("/projects/new", {"name": "Not Valid"}, follow=True)
    assert any("not a valid name" in m for m in messages_of(response))
    response = logged_in.post("/projects/new", {"name": "shop"}, follow=True)
    assert response.request["PATH_INFO"] == "/projects/shop/"
    assert "development" in response.content.decode()


def test_create_component_refusal_names_the_problem(logged_in, api, tmp_path):
    api.post("/api/projects/", {"name": "shop"}, format="json")
    missing = str(tmp_path / "nope")  # under LOCAL_REPOSITORY_ROOTS, but no repository
    response = logged_in.post("/projects/shop/components/new", {"name": "web", "repository": missing, "branch": "main"}, follow=True)
    assert any("cannot be read" in m for m in messages_of(response))
    response = logged_in.post("/projects/shop/components/new", {"name": "web", "repository": "/nope", "branch": "main"}, follow=True)
    assert any("outside the directories this platform builds from" in m for m in messages_of(response))
    assert not Component.objects.exists()


def test_build_page_lists_commits_and_starts_builds(logged_in, component, django_capture_on_commit_callbacks):
    second = component.repo.commit({"index.html": "v2\n"}, "second change")
    page = logged_in.get("/projects/shop/components/web/build/")
    html = page.content.decode()
    assert "Build Latest" in html and "Auto Build on Commit" in html
    assert "second change" in html and second[:12] in html
    with django_capture_on_commit_callbacks(execute=False):
        response = logged_in.post("/projects/shop/components/web/build/start", {"commit": second}, follow=True)
    build = Build.objects.get()
    assert build.commit == second
    assert response.request["PATH_INFO"] == f"/projects/shop/components/web/builds/{build.pk}/"
    assert f"Build {build.pk} of {second[:12]} queued." in messages_of(response)
    assert "build-" in response.content.decode()  # the live log element names its stream
    rows = logged_in.get("/projects/shop/components/web/build/rows").content.decode()
    assert f"#{build.pk}" in rows and "queued" in rows


def test_build_of_unknown_commit_shows_reason_on_the_page(logged_in, component):
    response = logged_in.post("/projects/shop/components/web/build/start", {"commit": "abcdef12"}, follow=True)
    assert any("commit abcdef12 does not exist" in m for m in messages_of(response))
    assert not Build.objects.exists()


def test_auto_build_toggle(logged_in, component):
    logged_in.post("/projects/shop/components/web/build/auto", {"enabled": "on"})
    assert Component.objects.get().auto_build_on_commit is True
    logged_in.post("/projects/shop/components/web/build/auto", {})
    assert Component.objects.get().auto_build_on_commit is False


def test_forms_are_csrf_protected(admin_user, component):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post("/projects/shop/components/web/build/start", {}).status_code == 403
    assert not Build.objects.exists()


def test_unknown_objects_are_404_on_pages(logged_in, component):
    assert logged_in.get("/projects/nope/").status_code == 404
    assert logged_in.get("/projects/shop/components/nope/build/").status_code == 404
    assert logged_in.get("/projects/shop/components/web/builds/999/").status_code == 404


def test_building_a_commit_already_under_way_returns_that_build(logged_in, api, component, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        first = api.post("/api/projects/shop/components/web/builds/", {}, format="json")
        again = api.post("/api/projects/shop/components/web/builds/", {}, format="json")
        page = logged_in.post("/projects/shop/components/web/build/start", {}, follow=True)
    assert first.status_code == 201 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert Build.objects.count() == 1
    assert f"is already being built: build {first.json()['id']} (queued)." in " ".join(messages_of(page))
    Build.objects.update(status=Build.FAILED, error="step 2 failed: exit code 1")
    with django_capture_on_commit_callbacks(execute=False):
        rebuilt = api.post("/api/projects/shop/components/web/builds/", {}, format="json")
    assert rebuilt.status_code == 201 and Build.objects.count() == 2  # a finished commit may be built again


def test_the_build_list_and_a_finished_build_without_javascript(logged_in, component):
    from choreo_site.logstream import LogWriter

    failed = Build.objects.create(component=component, commit="a" * 40, status=Build.FAILED, error="step 2 failed: exit code 1")
    writer = LogWriter(failed.log_stream)
    writer.line("Step 1/2 : FROM choreo/busybox:1")
    writer.end(Build.FAILED)
    rows = logged_in.get("/projects/shop/components/web/build/rows").content.decode()
    assert "step 2 failed: exit code 1" in rows and "<time datetime=" in rows and " ago</time>" in rows
    detail = logged_in.get(f"/projects/shop/components/web/builds/{failed.pk}/").content.decode()
    assert "Step 1/2 : FROM choreo/busybox:1" in detail  # the stored log, rendered by the server
    assert "Finished: failed" in detail and "Connecting" not in detail and "logs.js" not in detail
    assert f"/api/builds/{failed.pk}/logs/" in detail and 'id="deploy-this-build"' not in detail
    Build.objects.filter(pk=failed.pk).update(status=Build.SUCCEEDED, error="")
    assert 'id="deploy-this-build"' in logged_in.get(f"/projects/shop/components/web/builds/{failed.pk}/").content.decode()
