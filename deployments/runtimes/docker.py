"""The Docker runtime, through the Docker SDK for Python.

Each project environment gets its own bridge network: Docker isolates bridge networks from
each other, so nothing in one environment can open a connection to another, while the
host (where the ingress runs) reaches every replica. Inside a network, each replica
answers to its component's name. Everything the platform starts carries labels with
the instance namespace, so reconciliation and teardown find exactly what is ours.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import posixpath
import socket
import tarfile
import time

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from builds import registry
from deployments.runtimes import Replica, ReplicaFile, ReplicaSpec, RuntimeFailure

LABEL = "io.choreo"


_api_version: str | None = None


def _client(timeout: float | None) -> docker.DockerClient:
    """A client of the Engine; its API version is asked once per process, not per client."""
    global _api_version
    client = docker.from_env(timeout=timeout, version=_api_version or "auto")
    _api_version = client.api.api_version
    return client


class DockerRuntime:
    def __init__(self, namespace: str):
        self.namespace = namespace
        self.client = _client(timeout=120)

    def _labels(self, **extra: str) -> dict[str, str]:
        return {f"{LABEL}.instance": self.namespace, **{f"{LABEL}.{k}": v for k, v in extra.items()}}

    def network_name(self, project: str, environment: str) -> str:
        """From a hash of the pair, never the joined names: project `a` with environment
        `x-dev` and project `a-x` with `dev` must not share a network."""
        digest = hashlib.sha256(f"{project}\0{environment}".encode()).hexdigest()[:20]
        return f"{self.namespace}-env-{digest}"

    def environment_ensure(self, *, project: str, environment: str) -> str:
        name = self.network_name(project, environment)
        try:
            return self.client.networks.get(name).name
        except NotFound:
            pass
        try:
            return self.client.networks.create(name, driver="bridge", labels=self._labels(project=project, environment=environment)).name
        except DockerException as exc:
            raise RuntimeFailure(f"could not create the network of {project}/{environment}: {exc}") from None

    def environment_remove(self, *, project: str, environment: str, grace: float = 10) -> None:
        try:
            for replica in self.replicas(project=project, environment=environment):
                self.replica_stop(replica, grace=grace)
            self.client.networks.get(self.network_name(project, environment)).remove()
        except NotFound:
            pass
        except DockerException as exc:
            raise RuntimeFailure(f"could not remove {project}/{environment}: {exc}") from None

    def replica_start(self, spec: ReplicaSpec) -> Replica:
        container = self._create(spec, restart={"Name": "unless-stopped"}, alias=spec.component)
        return self._replica(container)

    def _create(self, spec: ReplicaSpec, *, restart: dict | None, alias: str | None = None, command: list[str] | None = None):
        """Create and start a container from `spec` in its environment's network, its files
        placed first; on any failure nothing is left behind."""
        network = self.environment_ensure(project=spec.project, environment=spec.environment)
        container = None
        options = {
            "command": command,
            "name": spec.name,
            "detach": True,
            "environment": spec.environment_variables,
            "labels": self._labels(project=spec.project, environment=spec.environment, component=spec.component, **spec.labels),
            "network": network,
            "restart_policy": restart,
            "mem_limit": spec.limits.memory,
            "memswap_limit": spec.limits.memory,  # no swap beyond the limit
            "nano_cpus": int(spec.limits.cpus * 1e9) if spec.limits.cpus else None,
            "pids_limit": spec.limits.pids,
        }
        try:
            try:
                container = self.client.containers.create(spec.image, **options)
            except ImageNotFound:  # pulled only when the Engine does not have it yet
                self.client.images.pull(spec.image, auth_config=registry.engine_auth(spec.image))
                container = self.client.containers.create(spec.image, **options)
            if spec.files:
                _place_files(container, spec.files)
            if alias:  # the component's name resolves to its replicas inside the environment
                self.client.networks.get(network).disconnect(container)
                self.client.networks.get(network).connect(container, aliases=[alias])
            container.start()
            if alias:  # a replica: its address, for the ingress
                container.reload()
        except (DockerException, RuntimeFailure) as exc:
            if container is not None:  # never leave a half-made container, with its files, behind
                try:
                    container.remove(force=True)
                except DockerException:
                    pass
            raise RuntimeFailure(f"could not start {spec.name}: {exc}") from None
        return container

    def once_start(self, spec: ReplicaSpec, *, args: list[str] | None = None, timeout: float | None = None) -> DockerOnce:
        """A task's process: a container with no restart policy, in its environment's network.
        `timeout` is not the Engine's to keep: the platform's watchdog stops the container."""
        return DockerOnce(self._create(spec, restart=None, command=args))

    def once_find(self, **labels: str) -> list[tuple[DockerOnce, int | None]]:
        filters = [f"{k}={v}" for k, v in self._labels(**labels).items()]
        found = []
        for container in self.client.containers.list(all=True, filters={"label": filters}):
            state = container.attrs.get("State", {})
            found.append(
                (DockerOnce(container), None if state.get("Running") or state.get("Status") == "created" else state.get("ExitCode"))
            )
        return found

    def _replica(self, container) -> Replica:
        networks = container.attrs["NetworkSettings"]["Networks"]
        address = next(iter(networks.values()))["IPAddress"] if networks else ""
        return Replica(container.id, container.name, address, container.labels)

    def replica_healthy(self, replica: Replica, health: dict | None, *, port: int | None) -> bool:
        """One probe, as the descriptor says: http, tcp or exec; without a health check,
        the first endpoint's port accepting connections."""
        timeout = (health or {}).get("timeout", 1.0)
        try:
            container = self.client.containers.get(replica.id)
        except NotFound:
            return False
        if container.status not in ("running", "created"):
            return False
        if health and "exec" in health:
            try:
                return container.exec_run(health["exec"]["command"]).exit_code == 0
            except APIError:
                return False
        if health and "http" in health:
            url = f"http://{replica.address}:{health['http']['port']}{health['http']['path']}"
            try:
                # A redirect is an answer, never followed: it could point the worker at the
                # host's own services. No proxy from the environment either.
                with requests.Session() as session:
                    session.trust_env = False
                    return 200 <= session.get(url, timeout=timeout, allow_redirects=False).status_code < 400
            except requests.RequestException:
                return False
        probe_port = health["tcp"]["port"] if health and "tcp" in health else port
        if probe_port is None:
            return container.status == "running"
        try:
            with socket.create_connection((replica.address, probe_port), timeout=timeout):
                return True
        except OSError:
            return False

    def replica_stop(self, replica: Replica, *, grace: float) -> None:
        """SIGTERM, up to `grace` seconds, then SIGKILL; then remove the container."""
        try:
            container = self.client.containers.get(replica.id)
            container.stop(timeout=int(max(grace, 1)))
            container.remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: another remover got there first (teardown and reconcile)
                raise

    def replicas(self, **labels: str) -> list[Replica]:
        filters = [f"{k}={v}" for k, v in self._labels(**labels).items()]
        return [self._replica(c) for c in self.client.containers.list(all=True, filters={"label": filters})]

    def logs(self, replica: Replica, *, since: float | None = None) -> list[tuple[str, str]]:
        """(timestamp, line) pairs of the replica's output."""
        try:
            raw = self.client.containers.get(replica.id).logs(timestamps=True, since=since).decode(errors="replace")
        except NotFound:
            return []
        except (DockerException, requests.RequestException) as exc:
            raise RuntimeFailure(f"could not read the logs of {replica.name}: {exc}") from None
        return [tuple(line.split(" ", 1)) if " " in line else (line, "") for line in raw.splitlines()]


class DockerOnce:
    """A task's container. Its output is streamed by a client with no read timeout: a task
    may be silent for longer than any request the runtime otherwise makes."""

    def __init__(self, container):
        self.container = container
        self.id, self.name = container.id, container.name

    def wait(self, output) -> int:
        streaming = _client(timeout=None)
        try:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            for chunk in streaming.api.logs(self.id, stream=True, follow=True):
                output(decoder.decode(chunk))
            output(decoder.decode(b"", final=True))
            return int(streaming.api.wait(self.id)["StatusCode"])
        except NotFound:
            raise RuntimeFailure(f"the task's container {self.name} was removed while it ran") from None
        except (DockerException, requests.RequestException) as exc:
            raise RuntimeFailure(f"lost the task's container {self.name}: {exc}") from None
        finally:
            streaming.close()

    def abort(self, reason: str) -> None:
        try:
            self.container.stop(timeout=5)
        except (NotFound, APIError):
            pass

    def remove(self) -> None:
        try:
            self.container.remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # removal already in progress
                raise


def _image_user(container) -> tuple[int, int]:
    """The uid and gid the container runs as, so its files are readable to it alone.
    A user given by name is looked up in the image's /etc/passwd."""
    user = (container.attrs["Config"].get("User") or "").strip()
    name, _, group = user.partition(":")
    if not name or name == "root":
        return 0, 0
    if name.isdigit():
        return int(name), int(group) if group.isdigit() else int(name)
    try:
        stream, _ = container.get_archive("/etc/passwd")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            passwd = tar.extractfile(tar.getmembers()[0]).read().decode(errors="replace")
    except (DockerException, tarfile.TarError, IndexError, AttributeError):
        raise RuntimeFailure(f"the image runs as user {name!r}, which its /etc/passwd does not name") from None
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name and fields[2].isdigit() and fields[3].isdigit():
            return int(fields[2]), int(group) if group.isdigit() else int(fields[3])
    raise RuntimeFailure(f"the image runs as user {name!r}, which its /etc/passwd does not name")


def _place_files(container, files: tuple[ReplicaFile, ...]) -> None:
    """Copy files into the created, not yet started, container, mode 0400 and owned by its
    user. They live in the container's own layer, never in an image, and the Engine's
    description of the container (`docker inspect`) does not show them."""
    uid, gid = _image_user(container)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for item in files:
            info = tarfile.TarInfo(posixpath.normpath(item.path).lstrip("/"))
            info.size, info.mode, info.uid, info.gid, info.mtime = len(item.content), 0o400, uid, gid, int(time.time())
            tar.addfile(info, io.BytesIO(item.content))
    if not container.put_archive("/", buffer.getvalue()):
        raise RuntimeFailure("the Engine refused the configuration files")
