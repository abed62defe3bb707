import subprocess
import time

import pytest


@pytest.fixture(autouse=True)
def quick_stops(settings):
    settings.ROLLOUT_STOP_GRACE = 1  # busybox httpd as PID 1 ignores SIGTERM


@pytest.fixture
def component(make_repo):
    """shop/web: a static site that answers its version (test_deploy's DESCRIPTOR and
    SERVING), removed with whatever it runs when the test ends."""
    from builds.services import component_create
    from environments.models import Project
    from environments.services import project_create, project_delete
    from tests.deployments.test_deploy import DESCRIPTOR, SERVING

    repo = make_repo({".choreo/component.yaml": DESCRIPTOR.replace("STARTUP", "20s"), "Dockerfile": SERVING, "index.html": "v1\n"})
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    component.repo = repo
    yield component
    for leftover in Project.objects.filter(name="shop"):  # stop what the test left running
        project_delete(project=leftover)


@pytest.fixture(scope="module")
def ingress(tmp_path_factory):
    """A HAProxy of the module's own, with the platform's configuration (4 slots of 3 servers)."""
    from deployments.ingress.haproxy import HAProxyIngress, config_text
    from tests.conftest import free_port

    tmp = tmp_path_factory.mktemp("ingress")
    port = free_port()
    socket_path = tmp / "admin.sock"
    (tmp / "hosts.map").write_text("")
    (tmp / "haproxy.cfg").write_text(
        config_text(bind="127.0.0.1", port=port, socket_path=socket_path, map_file=tmp / "hosts.map", slots=4, servers_per_slot=3)
    )
    proc = subprocess.Popen(["haproxy", "-W", "-db", "-f", str(tmp / "haproxy.cfg")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ingress = HAProxyIngress(socket_path, tmp / "hosts.map")
    deadline = time.monotonic() + 10
    while not ingress.is_up():
        assert time.monotonic() < deadline and proc.poll() is None, "HAProxy did not start"
        time.sleep(0.1)
    ingress.port = port
    yield ingress
    proc.terminate()
    proc.wait(10)
