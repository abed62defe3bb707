"""Issue 10, finding 11: a build step saw no memory or process limit and allocated 1.5 GiB.
Each build step now runs with BUILD_MEMORY (no swap beyond it), BUILD_CPUS and, shared by
the builds running at once, BUILD_PIDS processes."""

import docker
import pytest

from builds.models import Build
from builds.services import build_start, component_create
from choreo_site.logstream import read_text
from environments.services import project_create
from tests.conftest import run_build_jobs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images")]


def build_of(make_repo, dockerfile: str) -> Build:
    repo = make_repo({".choreo/component.yaml": "schemaVersion: 1\ntype: service\n", "Dockerfile": dockerfile})
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    build_start(component=component)
    run_build_jobs()
    return Build.objects.get()


def test_a_step_sees_its_limits(make_repo, settings):
    settings.BUILD_MEMORY = 96 * 1024**2
    settings.BUILD_CPUS = 0.5
    settings.BUILD_USE_CACHE = False  # the step must run, not come from an earlier build of the same Dockerfile
    build = build_of(
        make_repo,
        "FROM choreo/busybox:1\nRUN cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
        " /sys/fs/cgroup/pids/pids.max\n",
    )
    assert build.status == Build.SUCCEEDED, build.error
    log = read_text(build.log_stream)
    assert str(96 * 1024**2) in log and "50000" in log


def test_a_step_that_exceeds_its_memory_fails_the_build_with_out_of_memory(make_repo, settings):
    settings.BUILD_MEMORY = 64 * 1024**2
    # busybox sort keeps a whole line in memory: 256 MiB of zeros is one line.
    build = build_of(make_repo, "FROM choreo/busybox:1\nRUN head -c 268435456 /dev/zero | sort > /dev/null\n")
    assert build.status == Build.FAILED
    assert "out of memory" in build.error and "BUILD_MEMORY" in build.error
    assert "out of memory" in read_text(build.log_stream)
    assert docker.from_env().ping()  # the Engine, and the host, carry on


def test_a_step_cannot_fork_past_the_process_limit(make_repo, settings):
    settings.BUILD_PIDS = 40
    build = build_of(make_repo, "FROM choreo/busybox:1\nRUN for i in $(seq 1 100); do sleep 2 & done; wait\n")
    assert "can't fork" in read_text(build.log_stream)
