"""Shared fixtures. Everything is real: Redis (a database index of the tests' own), the
Docker Engine, a Distribution registry, Git repositories made with the `git` binary, and
RQ workers (in-process `SimpleWorker`, or real `rqworker` processes)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import django_rq
import pytest
import requests
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from builds import registry
from choreo_site.tokens import token_create

ROOT = Path(__file__).resolve().parent.parent
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@localhost",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def pytest_configure(config):
    db = settings.REDIS_URL.rstrip("/").rsplit("/", 1)[-1]
    if db in ("", "0"):
        pytest.exit("Run the tests through `make test`: it gives them their own Redis database and data directory.", returncode=2)
    # SQLite's WAL files of an earlier, interrupted run would poison the new test database.
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(settings.DATA_DIR / "test-db.sqlite3") + suffix).unlink(missing_ok=True)


def pytest_collection_modifyitems(items):
    """Under mutation testing (scripts/mutate.sh), run a mutant's tests fastest first, by
    the call times mutmut recorded in its stats run: the run stops at the first failure, so
    a mutant that a quick test catches costs seconds, not every container test of its
    target. Tests without a recorded time go last, and after them those on a Kubernetes
    control plane (its start is not in the call time). Outside mutmut the order is untouched."""
    if not os.environ.get("MUTANT_UNDER_TEST"):
        return
    try:
        durations = json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]  # mutmut runs in mutants/
    except (OSError, ValueError, KeyError):
        return
    items.sort(key=lambda item: (item.get_closest_marker("kubernetes") is not None, durations.get(item.nodeid, float("inf"))))


@pytest.fixture(scope="session", autouse=True)
def _clean_redis():
    django_rq.get_connection(settings.BUILDS_QUEUE).flushdb()


def our_labels(**labels: object) -> list[str]:
    """Docker label filters for this test instance's containers and networks with `labels`.
    Never a label alone: another instance on the same daemon (a test session beside this one,
    a mutation run's other shard) numbers its deployments and executions from 1 too."""
    return [f"io.choreo.instance={settings.INSTANCE_NAMESPACE}", *(f"io.choreo.{k}={v}" for k, v in labels.items())]


@pytest.fixture(scope="session", autouse=True)
def _clean_docker():
    """Remove what an interrupted earlier run of this test instance left running."""
    import docker

    client = docker.from_env()
    label = {"label": our_labels()}
    for container in client.containers.list(all=True, filters=label):
        container.remove(force=True)
    for network in client.networks.list(filters=label):
        network.remove()


@pytest.fixture(scope="session")
def base_images():
    subprocess.run([str(ROOT / "scripts" / "base-images.sh"), "busybox", "python", "python_build", "node", "go"], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The ports scripts/kube/start.sh listens on; each gets a free one, so a plane of another
# test run or the defaults' plane (/tmp/choreo-kube) is never in the way.
KUBE_PORTS = (
    "KUBE_APISERVER_PORT",
    "KUBE_ETCD_PORT",
    "KUBE_ETCD_PEER_PORT",
    "KUBE_KCM_PORT",
    "KUBE_SCHEDULER_PORT",
    "KUBE_KWOK_PORT",
)


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory):
    """The admin kubeconfig of a Kubernetes control plane of this test session's own
    (scripts/kube/start.sh: its own state directory and free ports), shared by every test
    marked `kubernetes`; stopped (and its state removed) at the end of the session.
    The binaries must be built already (scripts/test.sh runs scripts/kube/build.sh first):
    a cold build takes longer than a test may."""
    state = tmp_path_factory.mktemp("kube") / "state"
    env = {**os.environ, "KUBE_STATE": str(state), **{name: str(free_port()) for name in KUBE_PORTS}}
    log = state.parent / "start.log"
    started = time.monotonic()
    with open(log, "w") as out:
        result = subprocess.run([str(ROOT / "scripts/kube/start.sh")], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=900)
    try:
        if result.returncode != 0:
            pytest.fail(f"scripts/kube/start.sh failed ({result.returncode}):\n{log.read_text()[-3000:]}")
        print(f"control plane up in {time.monotonic() - started:.1f}s")
        yield str(state / "kubeconfig")
    finally:
        subprocess.run([str(ROOT / "scripts/kube/stop.sh")], env=env, check=False, timeout=120)


def wait_http(url: str, timeout: float = 30, proc: subprocess.Popen | None = None) -> requests.Response:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode} before {url} answered")
        try:
            last = requests.get(url, timeout=2)
            if last.status_code == 200:
                return last
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 in {timeout}s: {last}")


@pytest.fixture(scope="session")
def registry_server():
    """The embedded registry, as `make up` runs it, on REGISTRY_PORT."""
    if registry.is_up():
        yield settings.REGISTRY_URL
        return
    shutil.rmtree(settings.DATA_DIR / "registry", ignore_errors=True)
    config = registry.embedded_config(settings.DATA_DIR, settings.REGISTRY_PORT)
    proc = subprocess.Popen([shutil.which("docker-registry"), "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not registry.is_up():  # it answers 401: every request needs a token
        assert time.monotonic() < deadline and proc.poll() is None, "the registry did not start"
        time.sleep(0.1)
    yield settings.REGISTRY_URL
    proc.terminate()
    proc.wait(10)


class GitRepo:
    """A real repository on disk, committed to with the `git` binary."""

    def __init__(self, path: Path):
        self.path = path
        self._clock = 1_700_000_000
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        env = {**os.environ, **GIT_ENV, "GIT_AUTHOR_DATE": f"@{self._clock} +0000", "GIT_COMMITTER_DATE": f"@{self._clock} +0000"}
        return subprocess.run(["git", *args], cwd=self.path, env=env, check=True, capture_output=True, text=True).stdout.strip()

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        for name, content in files.items():
            target = self.path / name
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        self._clock += 60
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


SERVICE_DESCRIPTOR = """\
schemaVersion: 1
type: service
endpoints:
  - name: web
    port: 8080
    schemaFile: openapi.yaml
health:
  http: { path: /, port: 8080 }
replicas: 1
"""

BUSYBOX_DOCKERFILE = """\
FROM choreo/busybox:1
ARG SOURCE_DATE_EPOCH
COPY index.html /www/index.html
RUN echo built > /www/built.txt
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""


@pytest.fixture
def make_repo(tmp_path):
    counter = iter(range(1000))

    def make(files: dict[str, str] | None = None) -> GitRepo:
        path = tmp_path / f"repo{next(counter)}"
        path.mkdir()
        repo = GitRepo(path)
        repo.commit(
            files
            if files is not None
            else {
                ".choreo/component.yaml": SERVICE_DESCRIPTOR,
                "Dockerfile": BUSYBOX_DOCKERFILE,
                "index.html": "<h1>hello</h1>\n",
                "openapi.yaml": "openapi: 3.0.3\ninfo: {title: web, version: '1'}\npaths: {}\n",
            },
            "first",
        )
        return repo

    return make


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@localhost", "admin-password-for-tests")


@pytest.fixture
def logged_in(admin_user):
    """A logged-in client for the server-rendered pages."""
    from django.test import Client

    client = Client()
    client.force_login(admin_user)
    return client


def api_as(user) -> APIClient:
    """An API client authenticated as `user`."""
    client = APIClient()
    client.force_authenticate(user)
    return client


def page_as(user):
    """A page client logged in as `user`."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    """The messages a page shows (a refused action's reason, a success)."""
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def api(admin_user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=admin_user)[0]}")
    return client


def run_build_jobs() -> None:
    """Run every queued build job in this process, as a worker would."""
    worker = django_rq.get_worker(settings.BUILDS_QUEUE, worker_class="rq.SimpleWorker")
    worker.work(burst=True)


@pytest.fixture
def platform_env() -> dict[str, str]:
    """Environment for real platform processes (web, workers) that share the test database."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        url = f"sqlite:///{db['NAME']}"
    else:
        url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {**os.environ, "DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}


def start_process(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


MANAGE = [sys.executable, str(ROOT / "manage.py")]


def live_reader(stream: str):
    """A live reader of a log stream from now on, as a log page's WebSocket is (its group on
    the channel layer); call the result for the final status the reader is told."""
    import asyncio

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from choreo_site.logstream import group_name

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group_name(stream), channel)

    async def final_status() -> str:
        while (message := await asyncio.wait_for(layer.receive(channel), 10))["type"] != "log.end":
            pass
        return message["status"]

    return async_to_sync(final_status)


def run_default_jobs() -> None:
    """Run every job on the default queue (rollouts) and the Git queue (push events, polls) in this process."""
    worker = django_rq.get_worker(settings.DEFAULT_QUEUE, settings.GIT_QUEUE, worker_class="rq.SimpleWorker")
    worker.work(burst=True)


def run_task_jobs() -> None:
    """Run every queued task execution in this process, one after another."""
    worker = django_rq.get_worker(settings.TASKS_QUEUE, worker_class="rq.SimpleWorker")
    worker.work(burst=True)


@pytest.fixture(scope="session")
def platform_ingress():
    """This test instance's ingress (HAProxy on INGRESS_PORT), as `make up` runs it."""
    from deployments.ingress import ingress, write_config

    ing = ingress()
    if ing.is_up():
        yield ing
        return
    proc = subprocess.Popen(
        [shutil.which("haproxy"), "-W", "-db", "-f", str(write_config())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while not ing.is_up():
        assert time.monotonic() < deadline and proc.poll() is None, "HAProxy did not start"
        time.sleep(0.1)
    yield ing
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def web_tier(platform_env, tmp_path, settings):
    """The web tier as `up` runs it: the HAProxy front over gunicorn's WSGI workers and the
    ASGI server, on a port of its own. Yields its base URL; the processes are in `.procs`."""
    settings.WEB_PORT = free_port()
    yield from run_web_tier(platform_env, tmp_path, settings)


@pytest.fixture
def web_tier_at_public_url(platform_env, tmp_path, settings):
    """The web tier on WEB_PORT itself, where PUBLIC_URL points (the registry's token realm)."""
    yield from run_web_tier(platform_env, tmp_path, settings)


def run_web_tier(platform_env, tmp_path, settings):
    from choreo_site import webfront

    port = settings.WEB_PORT
    settings.WEB_WORKERS = 2
    env = {**platform_env, "WEB_PORT": str(port)}
    procs = {name: start_process(argv, env, tmp_path / f"{name}.log") for name, argv in webfront.commands().items()}
    try:
        wait_http(f"http://127.0.0.1:{port}/login/", proc=procs["web"])
        yield WebTier(f"http://127.0.0.1:{port}", procs)
    finally:
        for proc in procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


class WebTier(str):
    """The base URL, with the processes behind it."""

    def __new__(cls, url: str, procs: dict):
        obj = super().__new__(cls, url)
        obj.procs = procs
        return obj
