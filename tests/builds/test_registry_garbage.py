"""Issue 10, low finding: deleting a project left its images in the registry, where a project
made later under the same name would find them, and nothing ever freed their blobs.

Now a project's deletion deletes its manifests, and the registry's garbage is collected on
a schedule, between builds: with a build running it waits, and builds wait for it."""

import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache

from builds import registry
from builds.models import Build, Component
from builds.services import (
    COLLECTION_KEY,
    build_start,
    component_create,
    registry_collect,
    registry_collect_due,
    registry_collection_wait,
)
from environments.services import project_create, project_delete
from tests.conftest import run_build_jobs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images")]


def storage_bytes() -> int:
    blobs = Path(settings.DATA_DIR) / "registry" / "storage" / "docker" / "registry" / "v2" / "blobs"
    return sum(path.stat().st_size for path in blobs.rglob("data"))


def built(make_repo, name: str) -> Build:
    component = component_create(project=project_create(name=name), name="web", repository=str(make_repo().path))
    build_start(component=component)
    run_build_jobs()
    build = Build.objects.get(component=component)
    assert build.status == Build.SUCCEEDED
    return build


def config_digest(build: Build) -> str:
    import json

    dxf = registry._client(build.component.registry_repository)
    return json.loads(dxf.get_manifest(build.digest))["config"]["digest"]


def test_deleting_a_project_deletes_its_images_and_collection_frees_their_blobs(make_repo):
    build = built(make_repo, "alpha")
    repository, blob = build.component.registry_repository, config_digest(build)
    before = storage_bytes()

    project_delete(project=build.component.project)
    assert not registry.manifest_exists(repository, build.digest)
    assert registry.list_tags(repository) == []

    # A project made again under the same name finds nothing of the old one's.
    component_create(project=project_create(name="alpha"), name="web", repository=str(make_repo().path))
    assert not registry.manifest_exists(repository, build.digest)

    summary = registry_collect()
    assert not summary.startswith("skipped"), summary
    assert not registry.blob_available(repository, blob)
    assert storage_bytes() < before


def test_a_repository_left_without_a_component_is_emptied_by_the_collection(make_repo):
    """As a build that pushed after its project was deleted would leave it."""
    build = built(make_repo, "beta")
    repository = build.component.registry_repository
    Component.objects.filter(pk=build.component.pk).delete()  # the records go, the image stays
    assert registry.manifest_exists(repository, build.digest)
    summary = registry_collect()
    assert "manifest(s) of repositories without a component deleted" in summary and not summary.startswith("0 ")
    assert not registry.manifest_exists(repository, build.digest)


def test_collection_does_not_run_while_a_build_runs(make_repo):
    build = built(make_repo, "gamma")
    Build.objects.filter(pk=build.pk).update(status=Build.RUNNING)
    assert registry_collect() == "skipped: builds are running"
    assert cache.get(COLLECTION_KEY) is None  # builds are not held back by a skipped one


def test_a_build_waits_while_the_garbage_is_collected():
    cache.set(COLLECTION_KEY, "now", timeout=60)
    released = threading.Event()

    def build_step():
        registry_collection_wait()
        released.set()

    thread = threading.Thread(target=build_step)
    thread.start()
    try:
        assert not released.wait(1.5)
    finally:
        cache.delete(COLLECTION_KEY)
    assert released.wait(5)
    thread.join(5)


def test_collection_is_scheduled_once_per_interval(settings):
    import django_rq

    cache.delete("registry-collection-due")
    queue = django_rq.get_queue(settings.BUILDS_QUEUE)
    queue.empty()
    assert registry_collect_due() is True
    assert registry_collect_due() is False
    assert [job.func_name for job in queue.jobs] == ["builds.jobs.registry_collect_run"]
    queue.empty()
    settings.REGISTRY_GC_INTERVAL = 0
    cache.delete("registry-collection-due")
    assert registry_collect_due() is False


def test_an_external_registry_is_left_alone(settings):
    """Its repositories may be another platform's: nothing is purged or collected there."""
    settings.REGISTRY_EMBEDDED = False
    cache.delete("registry-collection-due")
    assert registry_collect().startswith("skipped: the registry is external")
    assert registry_collect_due() is False


def test_collecting_a_registry_nothing_was_pushed_to_yet_is_not_an_error(settings, tmp_path):
    # On a new platform's first collection the registry has no repositories directory,
    # and Distribution's collector fails on that.
    from builds.registry import collect_garbage, embedded_config

    settings.DATA_DIR = tmp_path
    embedded_config(tmp_path, port=5999)
    assert collect_garbage(timeout=60) == "nothing stored yet"


def test_a_collection_holds_builds_back_by_a_lease_it_renews_and_a_killed_worker_lets_go(monkeypatch, platform_env, tmp_path):
    """A worker killed mid-collection held every build back for 3 × REGISTRY_GC_TIMEOUT (90
    minutes by default): its hold is now a lease, renewed while it collects."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from builds import services

    # A slow collection (its collector stands in for a large registry's) outlives the lease.
    monkeypatch.setattr(services, "COLLECTION_LEASE", 1.2)

    def slow(timeout, tick):
        for _ in range(6):
            time.sleep(0.5)
            tick()
        return "slow"

    monkeypatch.setattr(registry, "collect_garbage", slow)
    held = []
    collecting = threading.Thread(target=lambda: held.append(registry_collect()))
    collecting.start()
    time.sleep(2.5)
    assert cache.get(COLLECTION_KEY) is not None  # renewed past its 1.2 s
    collecting.join()
    assert held and held[0].endswith("slow") and cache.get(COLLECTION_KEY) is None

    # A worker killed while it collects: builds wait for its lease to run out, no longer.
    script = tmp_path / "collect.py"
    script.write_text(
        "import django; django.setup()\n"
        "import time\n"
        "from builds import registry, services\n"
        "services.COLLECTION_LEASE = 2\n"
        "registry.collect_garbage = lambda timeout, tick: time.sleep(60)\n"
        "services.registry_collect()\n"
    )
    env = {**platform_env, "DJANGO_SETTINGS_MODULE": "choreo_site.settings", "PYTHONPATH": os.getcwd()}
    worker = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        deadline = time.monotonic() + 30
        while cache.get(COLLECTION_KEY) is None:
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.1)
        assert worker.poll() is None  # killed while it holds builds back
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    killed = time.monotonic()
    registry_collection_wait()
    assert 0.5 < time.monotonic() - killed < 4  # held until its 2 s lease ran out, no longer

    # A lost hold stops the collection rather than sweep while builds push.
    monkeypatch.setattr(registry, "collect_garbage", lambda timeout, tick: (cache.delete(COLLECTION_KEY), tick()))
    with pytest.raises(registry.RegistryError, match="lost its hold on builds"):
        registry_collect()
