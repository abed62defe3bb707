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


def test_health_checks_follow_no_redirect(runtime, httpd_image):
    """A replica that answers its health path with a redirect to a host loopback URL must
    not make the worker fetch that URL (issue 10, finding 7)."""
    import http.server
    import threading

    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{server.server_address[1]}/platform-internal"
    dockerfile = (
        "FROM choreo/busybox:1\n"
        'CMD ["sh", "-c", "while true; do printf \'HTTP/1.0 302 Found\\r\\nLocation: %s\\r\\nContent-Length: 0\\r\\n\\r\\n\' '
        '$TARGET | nc -l -p 8080; done"]\n'
    )
    runtime.client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag="choreo-test/redirector:1", rm=True)
    spec = ReplicaSpec(
        project="shop",
        environment="development",
        component="redirector",
        image="choreo-test/redirector:1",
        name=f"{runtime.namespace}-redirect-{uuid.uuid4().hex[:4]}",
        environment_variables={"TARGET": target},
    )
    try:
        replica = runtime.replica_start(spec)
        deadline = time.monotonic() + 15
        while not runtime.replica_healthy(replica, {"tcp": {"port": 8080}, "timeout": 1}, port=None):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for _ in range(3):
            runtime.replica_healthy(replica, {"http": {"path": "/healthz", "port": 8080}, "timeout": 1}, port=None)
        assert hits == [], "the health check followed the replica's redirect to the host"
    finally:
        server.shutdown()


def test_network_names_never_collide_across_projects(runtime, httpd_image):
    """Issue 10, finding 3: project `a` with environment `x-dev` and project `a-x` with
    environment `dev` shared one network, so one's replica could read the other's; and
    removing one failed while the other's replicas used that network."""

    def spec(project, environment, body):
        name = f"{runtime.namespace}-{uuid.uuid4().hex[:6]}"
        return ReplicaSpec(project=project, environment=environment, component="web", image=httpd_image, name=name,
                           environment_variables={"BODY": body})  # fmt: skip

    first, second = spec("a", "x-dev", "DB_PASSWORD=first-secret"), spec("a-x", "dev", "second")
    try:
        one, two = runtime.replica_start(first), runtime.replica_start(second)
        assert runtime.network_name("a", "x-dev") != runtime.network_name("a-x", "dev")
        wait_healthy(runtime, one)
        wait_healthy(runtime, two)
        assert "first-secret" not in probe(runtime, two, one.address), "one project's replica read another's"
        runtime.environment_remove(project="a", environment="x-dev", grace=1)
        assert runtime.client.containers.get(two.id).status == "running"
        assert runtime.replicas(project="a") == []
    finally:
        runtime.environment_remove(project="a", environment="x-dev", grace=1)
        runtime.environment_remove(project="a-x", environment="dev", grace=1)


def test_replicas_run_with_limits(runtime, httpd_image):
    """Issue 10, finding 11: replicas ran with Memory=0 and no PidsLimit."""
    from deployments.runtimes import Limits

    spec = ReplicaSpec(
        project="shop",
        environment="development",
        component="web",
        image=httpd_image,
        name=f"{runtime.namespace}-limits-{uuid.uuid4().hex[:4]}",
        limits=Limits(memory=64 * 1024**2, cpus=0.5, pids=100),
    )
    replica = runtime.replica_start(spec)
    host = runtime.client.containers.get(replica.id).attrs["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["NanoCpus"], host["PidsLimit"]) == (64 * 1024**2, 64 * 1024**2, 500_000_000, 100)


def test_a_descriptor_without_resources_gets_the_platform_defaults(settings):
    from deployments.rollout import replica_limits

    settings.REPLICA_MEMORY, settings.REPLICA_CPUS, settings.REPLICA_PIDS = 256 * 1024**2, 1.0, 512
    assert replica_limits({}) == replica_limits({"resources": {"memory": None, "cpu": None}})
    limits = replica_limits({})
    assert (limits.memory, limits.cpus, limits.pids) == (256 * 1024**2, 1.0, 512)
    chosen = replica_limits({"resources": {"memory": 1024**3, "cpu": 0.25}})
    assert (chosen.memory, chosen.cpus, chosen.pids) == (1024**3, 0.25, 512)
