"""Issue 10, finding 13: any user could build any directory on the host that root can
read. Local repositories are allowed only under LOCAL_REPOSITORY_ROOTS, links resolved,
and never inside the data directory."""

import os
import shutil
import subprocess

import pytest
from django.conf import settings

from builds.models import Build, Component
from builds.services import build_start, component_create
from choreo_site.errors import PlatformError
from environments.services import project_create
from tests.conftest import run_build_jobs

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(api):
    return project_create(name="shop")


def create(api, repository: str):
    return api.post("/api/projects/shop/components/", {"name": "web", "repository": repository}, format="json")


def test_the_platforms_own_source_cannot_be_built(api, project):
    for repository in (str(settings.BASE_DIR), f"file://{settings.BASE_DIR}", "/", "/etc"):
        response = create(api, repository)
        assert response.status_code == 400, repository
        assert "LOCAL_REPOSITORY_ROOTS" in response.json()["errors"]["repository"][0]
    assert not Component.objects.exists()


def test_another_projects_mirror_in_the_data_directory_cannot_be_built(api, project, make_repo):
    mirror = settings.DATA_DIR / "git" / "someone-elses.git"
    shutil.rmtree(mirror, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(make_repo().path), str(mirror)], check=True)
    try:
        response = create(api, str(mirror))
        assert response.status_code == 400
        assert "inside the platform's data directory" in response.json()["detail"]
    finally:
        shutil.rmtree(mirror)


def test_a_link_under_an_allowed_root_is_followed_before_the_check(api, project, tmp_path):
    link = tmp_path / "innocent"
    os.symlink(settings.BASE_DIR, link)
    response = create(api, str(link))
    assert response.status_code == 400
    assert "outside the directories this platform builds from" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("registry_server", "base_images")
def test_a_repository_swapped_for_a_link_after_creation_is_not_read(make_repo):
    repo = make_repo()
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    build_start(component=component)  # queued while the repository was what it claimed
    shutil.rmtree(repo.path)
    os.symlink(settings.BASE_DIR, repo.path)
    run_build_jobs()
    build = Build.objects.get()
    assert build.status == Build.FAILED
    assert "outside the directories this platform builds from" in build.error
    with pytest.raises(PlatformError, match="outside the directories this platform builds from"):
        build_start(component=component)


def test_a_repository_under_an_allowed_root_works(api, project, make_repo):
    assert create(api, str(make_repo().path)).status_code == 201
