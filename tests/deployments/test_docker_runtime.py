"""The Docker runtime: one network per project environment, replicas found by their
component's name inside it, and no way across environments."""

import io
import time
import uuid

import docker
import pytest

from deployments.runtimes import ReplicaFile, ReplicaSpec
from deployments.runtimes.docker import DockerRuntime

pytestmark = pytest.mark.usefixtures("base_images")

HTTPD_DOCKERFILE = b"""\
FROM choreo/busybox:1
CMD ["sh", "-c", "mkdir -p /www && echo \\"$BODY\\" > /www/index.html && exec httpd -f -p 8080 -h /www"]
"""


@pytest.fixture(scope="session")
def httpd_image():
    client = docker.from_env()
    image, _ = client.images.build(fileobj=io.BytesIO(HTTPD_DOCKERFILE), tag="choreo-test/httpd:1", rm=True)
    return "choreo-test/httpd:1"


@pytest.fixture
def runtime():
    runtime = DockerRuntime(f"choreo-test-{uuid.uuid4().hex[:6]}")
    yield runtime
    for env in ("development", "production"):
        runtime.environment_remove(project="shop", environment=env, grace=1)  # busybox httpd as PID 1 ignores SIGTERM


def start(runtime, image, env, component, body):
    spec = ReplicaSpec(
        project="shop",
        environment=env,
        component=component,
        image=image,
        name=f"{runtime.namespace}-{env}-{component}-{uuid.uuid4().hex[:4]}",
        environment_variables={"BODY": body},
        labels={"deployment": "1"},
    )
    return runtime.replica_start(spec)


def probe(runtime, replica, address) -> str:
    """An HTTP request from inside `replica` with busybox nc (its static wget crashes in
    glibc's resolver); returns the raw response, empty when nothing answered."""
    container = runtime.client.containers.get(replica.id)
    command = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {address} 8080"
    return container.exec_run(["sh", "-c", command]).output.decode(errors="replace")


def wait_healthy(runtime, replica):
    deadline = time.monotonic() + 20
    while not runtime.replica_healthy(replica, {"http": {"path": "/", "port": 8080}, "timeout": 1}, port=8080):
        assert time.monotonic() < deadline, "replica never became healthy"
        time.sleep(0.2)


def test_environments_are_isolated_and_components_resolve_by_name(runtime, httpd_image):
    dev_web = start(runtime, httpd_image, "development", "web", "dev web")
    dev_probe = start(runtime, httpd_image, "development", "probe", "probe")
    prod_web = start(runtime, httpd_image, "production", "web", "prod web")
    for replica in (dev_web, dev_probe, prod_web):
        wait_healthy(runtime, replica)

    # busybox's own resolver (its static wget cannot use glibc's): `web` is the
    # development replica inside the development network.
    lookup = runtime.client.containers.get(dev_probe.id).exec_run(["nslookup", "web"]).output.decode()
    assert dev_web.address in lookup and prod_web.address not in lookup
    assert "dev web" in probe(runtime, dev_probe, dev_web.address)
    assert "HTTP/" not in probe(runtime, dev_probe, prod_web.address), "a development container reached production"
    assert "HTTP/" not in probe(runtime, prod_web, dev_web.address), "a production container reached development"
    assert prod_web.address != dev_web.address


def test_replicas_are_labelled_and_stop_gracefully(runtime, httpd_image):
    replica = start(runtime, httpd_image, "development", "web", "x")
    listed = runtime.replicas(project="shop", environment="development", component="web")
    assert [r.id for r in listed] == [replica.id]
    assert listed[0].labels["io.choreo.deployment"] == "1"
    assert runtime.replicas(project="other") == []
    runtime.replica_stop(replica, grace=2)
    assert runtime.replicas(project="shop") == []


def test_health_probes_follow_the_descriptor(runtime, httpd_image):
    replica = start(runtime, httpd_image, "development", "web", "x")
    wait_healthy(runtime, replica)
    assert runtime.replica_healthy(replica, {"tcp": {"port": 8080}, "timeout": 1}, port=None)
    assert not runtime.replica_healthy(replica, {"tcp": {"port": 9}, "timeout": 1}, port=None)
    assert not runtime.replica_healthy(replica, {"http": {"path": "/missing", "port": 8080}, "timeout": 1}, port=None)
    assert runtime.replica_healthy(replica, {"exec": {"command": ["true"]}}, port=None)
    assert not runtime.replica_healthy(replica, {"exec": {"command": ["false"]}}, port=None)


@pytest.mark.parametrize(("user", "owner"), [("", "0:0"), ("4321:99", "4321:99"), ("app", "1234:1234")])
def test_files_are_placed_read_only_for_the_image_user_before_start(runtime, user, owner):
    dockerfile = "FROM choreo/busybox:1\nRUN echo 'app:x:1234:1234::/:/bin/sh' >> /etc/passwd\n"
    if user:
        dockerfile += f"USER {user}\n"
    # The command reads the file at once: it must be there before the process starts.
    dockerfile += 'CMD ["sh", "-c", "cat /etc/app/secret.pem > /tmp/seen; exec sleep 600"]\n'
    tag = f"choreo-test/files-{uuid.uuid4().hex[:6]}:1"
    runtime.client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    try:
        spec = ReplicaSpec(
            project="shop",
            environment="development",
            component="web",
            image=tag,
            name=f"{runtime.namespace}-files-{uuid.uuid4().hex[:4]}",
            files=(ReplicaFile("/etc/app/secret.pem", b"file-secret-marker\n", secret=True),),
        )
        replica = runtime.replica_start(spec)
        container = runtime.client.containers.get(replica.id)
        deadline = time.monotonic() + 10
        while container.exec_run(["cat", "/tmp/seen"]).output != b"file-secret-marker\n":
            assert time.monotonic() < deadline, container.logs()
            time.sleep(0.2)
        assert container.exec_run(["stat", "-c", "%a %u:%g", "/etc/app/secret.pem"]).output.decode().strip() == f"400 {owner}"
        container.reload()
        assert "file-secret-marker" not in str(container.attrs)
    finally:
        runtime.environment_remove(project="shop", environment="development", grace=1)
        runtime.client.images.remove(tag, force=True)
