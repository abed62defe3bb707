"""Where replicas run. `Runtime` is the small interface the rollout uses; the Docker
runtime implements it today, a Kubernetes one (a Deployment with readiness probes and
maxUnavailable 0, a Service, a NetworkPolicy per environment namespace) can later.
Nothing outside a runtime module knows which one is in use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


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


@dataclass(frozen=True)
class Replica:
    id: str
    name: str
    address: str  # reachable from the ingress
    labels: dict[str, str]


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

    def once_start(self, spec: ReplicaSpec, *, args: list[str] | None = None) -> Once:
        """Start a task's process from `spec`, its command's arguments replaced by `args` when given."""
        ...

    def once_find(self, **labels: str) -> list[tuple[Once, int | None]]:
        """The task processes with these labels, each with its exit code (None while it runs)."""
        ...
