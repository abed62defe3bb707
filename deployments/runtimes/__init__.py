"""Where replicas and executions run (settings.RUNTIME).

`Runtime` is what the rollout and the executions use. The Docker runtime starts replicas one
by one, and the rollout (deployments/rollout.py) switches the ingress between them itself.
A runtime that rolls a service out on its own, as Kubernetes does with a Deployment
(readiness probes, maxUnavailable 0, a Service and an Ingress), is also a `ServiceRuntime`:
the rollout then hands it the whole service with `service_deploy` and keeps only the
deployment's lifecycle. Outside the runtime modules, only deployments/rollout.py knows which
one is in use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class RuntimeFailure(Exception):
    """A runtime could not do what was asked (start a replica, make a network)."""


@dataclass(frozen=True)
class ReplicaFile:
    """A file a replica gets at `path`, read-only for the image's user (mode 0400), placed
    before the replica starts. Its content never appears in the runtime's own description
    of the replica (`docker inspect`), unlike environment variables."""

    path: str
    content: bytes = field(repr=False)
    secret: bool = False


@dataclass(frozen=True)
class Limits:
    """What one replica may use: memory in bytes (no swap beyond it), cores, processes."""

    memory: int | None = None
    cpus: float | None = None
    pids: int | None = None


@dataclass(frozen=True)
class ReplicaSpec:
    """One replica to start: what image, where, with what settings and labels."""

    project: str
    environment: str
    component: str
    image: str  # a full reference by digest
    name: str
    environment_variables: dict[str, str] = field(default_factory=dict, repr=False)
    files: tuple[ReplicaFile, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    # The environment variables whose values are secrets (a runtime that keeps configuration
    # in its own objects keeps these apart, e.g. Kubernetes Secrets rather than ConfigMaps).
    secret_names: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Replica:
    id: str
    name: str
    address: str  # reachable from the ingress
    labels: dict[str, str]


@dataclass(frozen=True)
class ServiceSpec:
    """A whole service, for a `ServiceRuntime`: what `replica` says, `replicas` times, behind
    `ports`; `public` is the endpoint the ingress serves at `host`, if any."""

    deployment: int  # primary keys: what objects are named and labelled from
    component_id: int
    replica: ReplicaSpec
    replicas: int
    ports: tuple[int, ...]
    health: dict | None  # the descriptor's health block
    public: dict | None = None
    host: str | None = None
    drain: float = 30  # seconds a stopping replica keeps serving what it has (settings.ROLLOUT_DRAIN_TIMEOUT)
    stop_grace: float = 10  # then SIGTERM, and this long until SIGKILL

    @property
    def startup(self) -> float:
        return (self.health or {}).get("startupTimeout", 60.0)


@dataclass(frozen=True)
class ServiceState:
    """What the runtime reports of a service: `serving` when `spec` is the one it runs and
    its rollout is complete."""

    desired: int
    ready: int
    serving: bool
    detail: str = ""


class Once(Protocol):
    """A task's process, started by `Runtime.once_start`: one container (or one Job) that runs
    to its end and is never restarted."""

    def wait(self, output: Callable[[str], None]) -> int:
        """Pass its output to `output` as it comes, until it exits; returns its exit code."""
        ...

    def abort(self, reason: str) -> None:
        """Stop it (SIGTERM, a short grace, SIGKILL); `wait` then returns. Safe from any thread."""
        ...

    def remove(self) -> None: ...


class Runtime(Protocol):
    def environment_ensure(self, *, project: str, environment: str) -> str: ...

    def environment_remove(self, *, project: str, environment: str, grace: float = 10) -> None: ...

    def replica_start(self, spec: ReplicaSpec) -> Replica: ...

    def replica_healthy(self, replica: Replica, health: dict | None, *, port: int | None) -> bool: ...

    def replica_stop(self, replica: Replica, *, grace: float) -> None: ...

    def replicas(self, **labels: str) -> list[Replica]: ...

    def logs(self, replica: Replica, *, since: float | None = None) -> list[tuple[str, str]]: ...

    def once_start(self, spec: ReplicaSpec, *, args: list[str] | None = None, timeout: float | None = None) -> Once:
        """Start a task's process from `spec`, its command's arguments replaced by `args` when
        given. `timeout` is a last resort for when no worker is left to stop it (the platform's
        own watchdog stops it first): a runtime may ignore it."""
        ...

    def once_find(self, **labels: str) -> list[tuple[Once, int | None]]:
        """The task processes with these labels, each with its exit code (None while it runs)."""
        ...


@runtime_checkable
class ServiceRuntime(Protocol):
    """A runtime that rolls a whole service out itself, with zero downtime."""

    def service_deploy(self, spec: ServiceSpec, *, previous: ServiceSpec | None, log: Callable[[str], None]) -> None:
        """Bring `spec` to serving, or raise RuntimeFailure with the reason after putting
        `previous` back (or removing the service, without one); the old version serves throughout."""
        ...

    def service_revert(self, spec: ServiceSpec, *, previous: ServiceSpec | None, log: Callable[[str], None]) -> None:
        """Undo a `service_deploy` of `spec` that did not finish: `previous` serves again."""
        ...

    def service_state(self, spec: ServiceSpec) -> ServiceState: ...

    def service_reconcile(self, spec: ServiceSpec, *, current: Callable[[int], bool]) -> list[str]:
        """Make what is missing of the active `spec` again (its namespace, objects); their names.
        What another platform deployment for which `current(pk)` is true changed is left alone."""
        ...

    def service_remove(self, *, project: str, environment: str, component_id: int, grace: float) -> None: ...

    def service_logs(self, spec: ServiceSpec, *, since: float | None = None) -> list[tuple[str, str, str]]:
        """(replica, stamp, line) of the service's replicas."""
        ...
