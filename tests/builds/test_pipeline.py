"""The build pipeline against the real Docker Engine, registry and Git, with jobs run by
an in-process RQ worker."""

import io
import re
import subprocess
import threading
import time
import uuid

import docker
import pytest
from django.conf import settings

from builds import registry
from builds.dockerbuild import cache_forget, cache_keep, cache_tag, cache_tags
from builds.models import ApiSpec, Build, Image
from builds.services import build_cancel, build_start, component_create, component_delete
from choreo_site.errors import PlatformError
from choreo_site.logstream import read_text
from environments.services import project_create
from tests.conftest import BUSYBOX_DOCKERFILE, SERVICE_DESCRIPTOR, run_build_jobs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images")]


@pytest.fixture
def component(make_repo):
    repo = make_repo()
    project = project_create(name="shop")
    component = component_create(project=project, name="web", repository=str(repo.path), branch="main")
    component.repo = repo
    return component


def build_and_wait(component, commit=None) -> Build:
    build = build_start(component=component, commit=commit)
    run_build_jobs()
    build.refresh_from_db()
    return build


def test_build_pushes_an_image_by_digest_that_docker_can_pull(component):
    build = build_and_wait(component)
    log = read_text(build.log_stream)
    assert build.status == Build.SUCCEEDED, log
    assert build.digest.startswith("sha256:")
    assert build.image_reference == f"127.0.0.1:{settings.REGISTRY_PORT}/shop/web@{build.digest}"
    assert build.endpoints[0]["name"] == "web"
    assert ApiSpec.objects.get(build=build).content.startswith("openapi: 3.0.3")
    assert re.search(r"Step 4/\d+ : RUN echo built > /www/built.txt", log)
    assert build.commit_message == "first" and build.commit_author == "Test"
    docker.from_env().images.pull(build.image_reference, auth_config=registry.engine_auth(build.image_reference))
    out = subprocess.run(["docker", "run", "--rm", build.image_reference, "cat", "/www/built.txt"], capture_output=True, text=True)
    assert out.stdout == "built\n"
    assert not (settings.WORKSPACE_DIR / f"build-{build.pk}").exists()
    images = subprocess.run(
        ["docker", "images", "-q", f"choreo-build/{settings.INSTANCE_NAMESPACE}:{build.pk}-*"], capture_output=True, text=True
    )
    assert images.stdout.strip() == ""  # the intermediate image is gone


def test_a_code_only_commit_finds_the_build_cache_of_the_images_own_stage(component):
    # Every step before the code's COPY comes from the Engine's cache on the next commit:
    # the component's last image is kept under a tag of its own (builds/dockerbuild.py
    # cache_tag), so removing the build's tag does not take that stage's cache with it.
    dockerfile = "FROM choreo/busybox:1\nRUN echo dependencies > /deps.txt\nCOPY index.html /www/index.html\n"
    component.repo.commit({"Dockerfile": dockerfile}, "deps first")
    first = build_and_wait(component)
    assert first.status == Build.SUCCEEDED, read_text(first.log_stream)
    component.repo.commit({"index.html": "<h1>changed</h1>\n"}, "code only")
    second = build_and_wait(component)
    log = read_text(second.log_stream)
    assert second.status == Build.SUCCEEDED, log
    assert log.split(" : RUN echo dependencies > /deps.txt")[1].splitlines()[1].strip() == "---> Using cache", log
    kept = subprocess.run(["docker", "images", "-q", cache_tag(component.pk)], capture_output=True, text=True).stdout.split()
    assert len(kept) == 1  # the last image only
    component_delete(component=component)
    assert subprocess.run(["docker", "images", "-q", cache_tag(component.pk)], capture_output=True, text=True).stdout.strip() == ""


def test_a_multi_stage_build_keeps_its_last_stages_and_leaves_none_behind(component):
    # The last image of an earlier stage (here, the dependencies') is what the next build's
    # cache needs, and nothing else keeps it: it is kept per component, and the one it
    # replaces is removed instead of piling up untagged, build after build.
    def stages() -> dict[str, str]:
        return {tag: image for tag, image in cache_tags(component.pk).items() if "-stage" in tag}

    dockerfile = (
        "FROM choreo/busybox:1 AS deps\nCOPY deps.txt /deps.txt\nRUN cat /deps.txt > /out.txt\n"
        "FROM choreo/busybox:1\nCOPY --from=deps /out.txt /out.txt\nCOPY index.html /www/index.html\n"
    )
    component.repo.commit({"Dockerfile": dockerfile, "deps.txt": "one\n"}, "two stages")
    first = build_and_wait(component)
    assert first.status == Build.SUCCEEDED, read_text(first.log_stream)
    (first_stage,) = stages().values()
    component.repo.commit({"deps.txt": "two\n"}, "new dependencies")
    second = build_and_wait(component)
    assert second.status == Build.SUCCEEDED, read_text(second.log_stream)
    (second_stage,) = stages().values()
    assert second_stage != first_stage
    gone = subprocess.run(["docker", "image", "inspect", first_stage], capture_output=True, text=True)
    assert gone.returncode != 0, "the replaced stage image is still in the Engine"
    component.repo.commit({"index.html": "<h1>code</h1>\n"}, "code only")
    third = build_and_wait(component)
    log = read_text(third.log_stream)
    assert log.split(" : RUN cat /deps.txt > /out.txt")[1].splitlines()[1].strip() == "---> Using cache", log
    assert stages() == {f"{cache_tag(component.pk)}-stage1": second_stage}
    component_delete(component=component)
    assert cache_tags(component.pk) == {}
    assert subprocess.run(["docker", "image", "inspect", second_stage], capture_output=True).returncode != 0


def test_a_components_cache_never_takes_an_image_another_tag_holds(component):
    # The Engine's cache gives two components (or two platforms on one Engine) the same image
    # for the same steps, and a build in flight holds its image by its own tag only until it
    # is exported. A component replacing its cache must leave such an image alone: removing
    # it broke that other build ("could not export the built image": no such image).
    client = docker.from_env()

    def image(label: str) -> str:
        dockerfile = f"FROM choreo/busybox:1\nLABEL io.choreo.test.cache={label}-{uuid.uuid4().hex}\n".encode()
        return client.images.build(fileobj=io.BytesIO(dockerfile), rm=True)[0].id

    def exists(image_id: str) -> bool:
        return subprocess.run(["docker", "image", "inspect", image_id], capture_output=True).returncode == 0

    other = f"choreo-build/{settings.INSTANCE_NAMESPACE}:other-{uuid.uuid4().hex[:8]}"
    shared, own, later = image("shared"), image("own"), image("later")
    try:
        cache_keep(shared, component.pk)
        client.images.get(shared).tag(*other.split(":"))  # another build made the same image
        cache_keep(own, component.pk)
        assert exists(shared) and other in client.images.get(shared).tags
        assert cache_tags(component.pk) == {cache_tag(component.pk): own}
        # What only the cache held goes with it: the cache does not pile up.
        cache_keep(later, component.pk)
        assert not exists(own)
        cache_forget(component.pk)
        assert not exists(later) and cache_tags(component.pk) == {}
        assert exists(shared)
    finally:
        for leftover in (shared, own, later):
            subprocess.run(["docker", "image", "rm", "--force", leftover], capture_output=True)


def test_rebuild_of_the_same_commit_reuses_the_image(component):
    first = build_and_wait(component)
    tags_before = registry.list_tags("shop/web")
    started = time.monotonic()
    second = build_and_wait(component)
    elapsed = time.monotonic() - started
    assert second.status == Build.SUCCEEDED
    assert second.digest == first.digest
    assert second.reused is True
    assert Image.objects.count() == 1
    assert registry.list_tags("shop/web") == tags_before
    assert "reusing" in read_text(second.log_stream)
    print(f"rebuild of an already built commit: {elapsed:.2f}s")


def test_without_cache_the_same_commit_gives_the_same_digest(component, settings):
    first = build_and_wait(component)
    Image.objects.all().delete()  # forget it, so the pipeline builds again from scratch
    settings.BUILD_USE_CACHE = False
    second = build_and_wait(component)
    assert second.reused is False
    assert second.digest == first.digest


def test_newest_image_per_commit_is_kept(make_repo, settings):
    repo = make_repo(
        {
            ".choreo/component.yaml": "schemaVersion: 1\ntype: service\n",
            "Dockerfile": "FROM choreo/busybox:1\nRUN cat /proc/sys/kernel/random/uuid > /id\n",
        }
    )
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    first = build_and_wait(component)
    Image.objects.update(inputs_key="changed-inputs")  # e.g. a new base image: not reusable
    settings.BUILD_USE_CACHE = False  # nor would the Engine's build cache be, FROM a new base
    second = build_and_wait(component)
    assert first.digest != second.digest  # the Dockerfile is not reproducible
    assert list(Image.objects.values_list("digest", flat=True)) == [second.digest]
    assert not registry.manifest_exists("shop/web", first.digest)
    assert registry.manifest_exists("shop/web", second.digest)
    assert f"deleted the older image {first.digest}" in read_text(second.log_stream)


def test_failing_dockerfile_fails_the_build_and_pushes_nothing(make_repo):
    repo = make_repo(
        {
            ".choreo/component.yaml": "schemaVersion: 1\ntype: service\n",
            "Dockerfile": "FROM choreo/busybox:1\nRUN echo step one\nRUN exit 3\nRUN echo never\n",
        }
    )
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    tags_before = registry.list_tags("shop/web")
    build = build_and_wait(component)
    log = read_text(build.log_stream)
    assert build.status == Build.FAILED
    assert re.search(r"Step 3/\d+ : RUN exit 3", log)
    assert "returned a non-zero code: 3" in build.error
    assert build.digest == "" and build.image is None
    assert not Image.objects.exists()
    assert registry.list_tags("shop/web") == tags_before


def test_failed_build_never_replaces_an_image(component):
    good = build_and_wait(component)
    component.repo.commit({"Dockerfile": "FROM choreo/busybox:1\nRUN false\n"}, "break it")
    bad = build_and_wait(component)
    assert bad.status == Build.FAILED
    assert registry.manifest_exists("shop/web", good.digest)
    assert list(Image.objects.values_list("digest", flat=True)) == [good.digest]


@pytest.mark.parametrize(
    "files, message",
    [
        (
            {".choreo/component.yaml": "schemaVersion: 1\ntype: service\nreplicas: lots\n"},
            ".choreo/component.yaml: replicas: must be an integer",
        ),
        ({".choreo/component.yaml": None}, ".choreo/component.yaml: not found at commit"),
        (
            {".choreo/component.yaml": SERVICE_DESCRIPTOR + "build: { dockerfile: docker/Dockerfile }\n"},
            "build.dockerfile: docker/Dockerfile does not exist",
        ),
        # No Dockerfile and nothing a source build recognises (builds/source.py).
        ({"Dockerfile": None, "index.html": None}, "no Dockerfile, and no source build recognised: looked for Dockerfile, then python"),
        ({"openapi.yaml": None}, "endpoints.web.schemaFile: openapi.yaml does not exist"),
    ],
)
def test_bad_descriptor_or_files_fail_the_build_with_the_reason(component, files, message):
    component.repo.commit(files, "break")
    build = build_and_wait(component)
    assert build.status == Build.FAILED
    assert message in build.error
    assert message in read_text(build.log_stream)
    assert not Image.objects.exists()


def test_component_path_inside_a_monorepo(make_repo):
    repo = make_repo(
        {
            "services/web/.choreo/component.yaml": SERVICE_DESCRIPTOR,
            "services/web/Dockerfile": BUSYBOX_DOCKERFILE,
            "services/web/index.html": "hi\n",
            "services/web/openapi.yaml": "openapi: 3.0.3\n",
            "README": "monorepo\n",
        }
    )
    component = component_create(project=project_create(name="mono"), name="web", repository=f"file://{repo.path}", path="services/web/")
    assert component.path == "services/web"
    build = build_and_wait(component)
    assert build.status == Build.SUCCEEDED, build.error
    # A path that is not there is refused when the component is made, not at its first build…
    with pytest.raises(PlatformError, match="path 'services/nope' does not exist at commit"):
        component_create(project=component.project, name="gone", repository=str(repo.path), path="services/nope")
    # …and a build of a commit that removed it fails, naming it.
    gone = ("services/web/.choreo/component.yaml", "services/web/Dockerfile", "services/web/index.html", "services/web/openapi.yaml")
    repo.commit(dict.fromkeys(gone))
    failed = build_and_wait(component)
    assert "path 'services/web' does not exist" in failed.error


def test_cancel_a_running_build_stops_it(make_repo):
    repo = make_repo(
        {
            ".choreo/component.yaml": "schemaVersion: 1\ntype: service\n",
            "Dockerfile": "FROM choreo/busybox:1\nRUN echo started && sleep 120\n",
        }
    )
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    build = build_start(component=component)
    cancelled_at = []

    def cancel_once_started():
        from django.db import connection

        deadline = time.monotonic() + 60
        while "started" not in read_text(build.log_stream) and time.monotonic() < deadline:
            time.sleep(0.2)
        build_cancel(build=build)
        cancelled_at.append(time.monotonic())
        connection.close()

    canceller = threading.Thread(target=cancel_once_started)
    canceller.start()
    run_build_jobs()  # the worker runs in this (main) thread, as RQ requires
    finished_at = time.monotonic()
    canceller.join()
    build.refresh_from_db()
    assert build.status == Build.CANCELLED
    assert finished_at - cancelled_at[0] < 30  # not the 120 s of the RUN step
    assert "Cancelled by a user" in read_text(build.log_stream)


def test_build_timeout_fails_the_build(make_repo, settings):
    settings.BUILD_TIMEOUT = 3
    repo = make_repo(
        {".choreo/component.yaml": "schemaVersion: 1\ntype: service\n", "Dockerfile": "FROM choreo/busybox:1\nRUN sleep 120\n"}
    )
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    build = build_and_wait(component)
    assert build.status == Build.FAILED
    assert "Timed out after 3s" in build.error


def test_branch_deleted_after_component_creation(component):
    component.repo.git("branch", "-m", "main", "trunk")
    with pytest.raises(Exception, match="branch 'main' does not exist"):
        build_start(component=component)
    assert not Build.objects.exists()


def test_a_job_for_a_build_no_longer_queued_does_nothing(component):
    """A late or duplicated job (the build was cancelled meanwhile, or another worker runs
    it) must not claim it: the build keeps its status and nothing is built."""
    from builds import pipeline

    cancelled = build_start(component=component)
    build_cancel(build=cancelled)
    cancelled.refresh_from_db()
    assert cancelled.status == Build.CANCELLED
    logs = {cancelled.pk: read_text(cancelled.log_stream)}
    assert pipeline.run(cancelled.pk) == Build.CANCELLED

    elsewhere = build_start(component=component)
    Build.objects.filter(pk=elsewhere.pk).update(status=Build.RUNNING, worker="other-host:4242")
    logs[elsewhere.pk] = read_text(elsewhere.log_stream)
    assert pipeline.run(elsewhere.pk) == Build.RUNNING

    for build, status in ((cancelled, Build.CANCELLED), (elsewhere, Build.RUNNING)):
        build.refresh_from_db()
        assert build.status == status and build.image is None and not build.digest
        assert read_text(build.log_stream) == logs[build.pk]
    assert Build.objects.get(pk=elsewhere.pk).worker == "other-host:4242"
    assert not Image.objects.exists()
