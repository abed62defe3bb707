"""Security findings about what a repository's files can make the platform do (issue 10).
Each test reproduces the attack against the real pipeline, Engine, registry and Git."""

import os
from pathlib import Path

import pytest
from django.conf import settings

from builds.models import Build
from builds.services import build_start, component_create
from choreo_site.logstream import read_text
from environments.services import project_create
from tests.conftest import BUSYBOX_DOCKERFILE, SERVICE_DESCRIPTOR, run_build_jobs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images")]

# Every name the pipeline writes, now or before this fix, inside or beside the workspace.
WRITTEN_NAMES = [".image.tar", "image.tar", "src", "oci", "config.json", "layer-0.tar.gz", "layer-1.tar.gz", "build-1-oci"]
SOURCE = {
    ".choreo/component.yaml": SERVICE_DESCRIPTOR,
    "Dockerfile": BUSYBOX_DOCKERFILE,
    "index.html": "<h1>hi</h1>\n",
    "openapi.yaml": "openapi: 3.0.3\ninfo: {title: web, version: '1'}\npaths: {}\n",
}


def commit_with_links(repo, links: dict[str, str]) -> str:
    for name, content in SOURCE.items():
        (repo.path / name).parent.mkdir(parents=True, exist_ok=True)
        (repo.path / name).write_text(content)
    for name, target in links.items():
        path = repo.path / name
        if path.is_symlink() or path.exists():
            path.unlink()
        os.symlink(target, path)
    return repo.commit({}, "links")


def build(repo) -> Build:
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    build_start(component=component)
    run_build_jobs()
    return Build.objects.get(component=component)


@pytest.fixture
def sentinels(tmp_path):
    directory = tmp_path / "sentinels"
    directory.mkdir()
    for name in WRITTEN_NAMES:
        (directory / name).write_text("sentinel\n")
    return directory


def assert_untouched(directory: Path) -> None:
    for name in WRITTEN_NAMES:
        path = directory / name
        assert path.is_file() and path.read_text() == "sentinel\n", f"{path} was changed"
    assert sorted(p.name for p in directory.iterdir()) == sorted(WRITTEN_NAMES), "a file was created through a link"


def test_build_overwrites_no_host_file_through_an_absolute_link(make_repo, sentinels):
    repo = make_repo({"README": "x\n"})
    commit_with_links(repo, {name: str(sentinels / name) for name in WRITTEN_NAMES})
    result = build(repo)
    assert result.status == Build.FAILED
    assert "a link to an absolute path" in result.error and "the platform does not check out such files" in result.error
    assert "a link to an absolute path" in read_text(result.log_stream)
    assert_untouched(sentinels)
    assert not (settings.WORKSPACE_DIR / f"build-{result.pk}").exists()


def test_build_overwrites_no_host_file_through_a_relative_link_that_climbs_out(make_repo, sentinels):
    repo = make_repo({"README": "x\n"})
    climb = "../" * (len(settings.WORKSPACE_DIR.parts) + 3)
    commit_with_links(repo, {name: climb + str(sentinels / name).lstrip("/") for name in WRITTEN_NAMES})
    result = build(repo)
    assert result.status == Build.FAILED
    assert "a link that points outside the repository" in result.error
    assert_untouched(sentinels)


def test_links_inside_the_repository_named_like_the_pipeline_files_build_and_stay_links(make_repo):
    """Links that stay inside the checkout are ordinary content: the build succeeds, and the
    pipeline's own files are written beside the checkout, not through them."""
    repo = make_repo({"README": "x\n"})
    commit_with_links(repo, {name: "index.html" for name in WRITTEN_NAMES})
    result = build(repo)
    assert result.status == Build.SUCCEEDED, result.error
    assert (repo.path / "index.html").read_text() == SOURCE["index.html"]
