"""The Kubernetes runtime, through the official `kubernetes` client: the first slice.

What it does so far (deployments/runtimes/KUBERNETES.md says what comes next and why):
- each project environment is a Namespace, named from a hash (as the Docker runtime names
  its networks) and labelled with the readable names, with a NetworkPolicy that admits
  traffic only from pods of the same namespace and from the ingress controller's namespace;
- a task's execution is a Job (`backoffLimit: 0`: retries stay the platform's), its
  configuration in a Secret the Job owns, so both go together.

Every object is written by server-side apply with the platform's field manager and
`fieldValidation=Strict`, after a server-side dry run of every object of the step, so a
bad object is refused before anything changes. The API server's refusal, with its message,
becomes a `RuntimeFailure`.

Replicas (`replica_*`, `replicas`, `logs`) are not here yet: they become a Deployment, which
does not fit the protocol's one-replica-at-a-time steps (see KUBERNETES.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import urllib3
import yaml
from django.conf import settings
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from deployments.runtimes import Replica, ReplicaSpec, RuntimeFailure

log = logging.getLogger(__name__)

LABEL = "io.choreo"
FIELD_MANAGER = "choreo"
POLICY_NAME = "choreo-isolation"
CONTAINER = "task"
# A Job whose pod Kubernetes deleted (abort, or its deadline) records no exit code: it is
# reported as a process killed by SIGKILL would be.
KILLED = 137
ABORT_GRACE = 5  # seconds between SIGTERM and SIGKILL when a task's pod is stopped
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_APPLY = {"field_manager": FIELD_MANAGER, "field_validation": "Strict", "force": True, "_content_type": "application/apply-patch+yaml"}
_NOT_FOUND = object()


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """A client of the cluster: `kubeconfig` if given, else $KUBECONFIG or ~/.kube/config,
    else the pod's in-cluster service account. Its configuration is its own: the client
    library's global default is never changed."""
    configuration = client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    try:
        if kubeconfig or os.environ.get("KUBECONFIG") or Path(path).exists():
            config.load_kube_config(config_file=path.split(os.pathsep)[0], client_configuration=configuration)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            raise RuntimeFailure("no Kubernetes cluster is configured: set KUBECONFIG, or run the platform in a pod")
    except (ConfigException, yaml.YAMLError, OSError) as exc:
        raise RuntimeFailure(f"the Kubernetes configuration {path} cannot be used: {exc}") from None
    # No retries by urllib3: an unreachable API server is said at once (each call is repeated
    # at the platform's level: a rollout or an execution fails with the reason, reconciliation
    # comes back), and a client lives only as long as one runtime object.
    configuration.retries = 0
    return client.ApiClient(configuration)


def _message(exc: ApiException) -> str:
    """The API server's own words: the `message` of its Status, else the HTTP reason."""
    try:
        return json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"


def _transport_reason(exc: Exception) -> str:
    """urllib3's innermost reason ("Connection refused", a TLS error), without its pool's wrapping."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    return text.split("): ", 1)[-1] if text.startswith("HTTP") else text


class Unreachable(RuntimeFailure):
    """The API server did not answer (refused, timed out, TLS): unlike a refusal, worth asking again."""


class KubernetesRuntime:
    def __init__(
        self,
        namespace: str,
        *,
        kubeconfig: str | None = None,
        ingress_namespace: str | None = None,
        job_ttl: int | None = None,
        request_timeout: float = 30,
        poll_interval: float = 0.5,
    ):
        if not _DNS_LABEL.match(namespace) or len(namespace) > 37:
            raise RuntimeFailure(
                f"the instance namespace {namespace!r} cannot prefix Kubernetes names: "
                "use at most 37 lower-case letters, digits and '-' (INSTANCE_NAMESPACE)"
            )
        self.namespace = namespace
        self.api = api_client(kubeconfig)
        self.host = self.api.configuration.host
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.networking = client.NetworkingV1Api(self.api)
        selector = ingress_namespace if ingress_namespace is not None else settings.KUBERNETES_INGRESS_NAMESPACE
        key, _, value = selector.partition("=")
        self.ingress_namespace = {key.strip(): value.strip()} if key.strip() else {}
        self.job_ttl = settings.KUBERNETES_JOB_TTL if job_ttl is None else job_ttl
        self.request_timeout = request_timeout
        self.poll_interval = poll_interval

    # ---- calls ------------------------------------------------------------------------------

    def call(self, what: str, method: Callable, *args, missing=_NOT_FOUND, **kwargs):
        """`method(*args, **kwargs)`, its failures as RuntimeFailure naming `what`; a 404
        returns `missing` when one is given."""
        kwargs.setdefault("_request_timeout", self.request_timeout)
        try:
            return method(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404 and missing is not _NOT_FOUND:
                return missing
            if exc.status == 0 or exc.status is None:  # the client's own wrapping of a transport error
                raise Unreachable(f"the Kubernetes API at {self.host} cannot be reached ({what}): {exc.reason}") from None
            raise RuntimeFailure(f"Kubernetes refused to {what}: {_message(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"the Kubernetes API at {self.host} cannot be reached ({what}): {_transport_reason(exc)}") from None

    def _apply_one(self, manifest: dict, *, dry_run: bool) -> None:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        namespace = manifest["metadata"].get("namespace")
        method = {
            "Namespace": self.core.patch_namespace,
            "NetworkPolicy": self.networking.patch_namespaced_network_policy,
            "Secret": self.core.patch_namespaced_secret,
            "Job": self.batch.patch_namespaced_job,
        }[kind]
        args = (name, manifest) if namespace is None else (name, namespace, manifest)
        what = f"{'check' if dry_run else 'apply'} {kind} {namespace + '/' if namespace else ''}{name}"
        self.call(what, method, *args, dry_run="All" if dry_run else None, **_APPLY)

    def apply(self, *manifests: dict) -> None:
        """Server-side apply of `manifests`, in order, after a server-side dry run of them
        all: one the API server refuses (an unknown field, a bad name or value) stops the
        step before anything is written. Objects in a namespace that does not exist yet
        are checked after it is made, and the namespace is removed again if they fail."""
        made: str | None = None
        later = []
        for manifest in manifests:
            namespace = manifest["metadata"].get("namespace")
            if namespace is not None and self._namespace_missing(namespace, manifests):
                later.append(manifest)
                continue
            self._apply_one(manifest, dry_run=True)
        try:
            for manifest in manifests:
                if (
                    manifest["kind"] == "Namespace"
                    and self.call("read the namespace", self.core.read_namespace, manifest["metadata"]["name"], missing=None) is None
                ):
                    made = manifest["metadata"]["name"]
                if manifest in later:
                    self._apply_one(manifest, dry_run=True)
                self._apply_one(manifest, dry_run=False)
        except RuntimeFailure:
            if made is not None:
                self.call("remove the namespace again", self.core.delete_namespace, made, missing=None)
            raise

    def _namespace_missing(self, namespace: str, manifests: tuple[dict, ...]) -> bool:
        made_here = any(m["kind"] == "Namespace" and m["metadata"]["name"] == namespace for m in manifests)
        return made_here and self.call("read the namespace", self.core.read_namespace, namespace, missing=None) is None

    # ---- names and labels -------------------------------------------------------------------

    def _labels(self, **extra: str) -> dict[str, str]:
        return {f"{LABEL}/instance": self.namespace, **{f"{LABEL}/{k}": v for k, v in extra.items()}}

    def _readable(self, **names: str) -> tuple[dict[str, str], dict[str, str]]:
        """Labels for the names that are valid label values, and annotations for all of them."""
        labels = {f"{LABEL}/{k}": v for k, v in names.items() if len(v) <= 63 and _LABEL_VALUE.match(v)}
        return labels, {f"{LABEL}/{k}": v for k, v in names.items()}

    def namespace_name(self, project: str, environment: str) -> str:
        """From a hash of the pair, never the joined names (project `a` with environment
        `x-dev` and project `a-x` with `dev` must not share a namespace): a DNS label of
        at most 37 + 25 characters."""
        digest = hashlib.sha256(f"{project}\0{environment}".encode()).hexdigest()[:20]
        return f"{self.namespace}-env-{digest}"

    # ---- environments -----------------------------------------------------------------------

    def environment_manifests(self, *, project: str, environment: str) -> list[dict]:
        name = self.namespace_name(project, environment)
        labels, annotations = self._readable(project=project, environment=environment)
        sources: list[dict] = [{"podSelector": {}}]  # every pod of the namespace
        if self.ingress_namespace:
            sources.append({"namespaceSelector": {"matchLabels": self.ingress_namespace}})
        return [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {**self._labels(), **labels}, "annotations": annotations},
            },
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": POLICY_NAME, "namespace": name, "labels": self._labels()},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": sources}]},
            },
        ]

    def environment_ensure(self, *, project: str, environment: str) -> str:
        """The environment's namespace and its NetworkPolicy, made or brought back to what
        they should be; returns the namespace's name."""
        manifests = self.environment_manifests(project=project, environment=environment)
        namespace = manifests[0]["metadata"]["name"]
        current = self.call("read the namespace", self.core.read_namespace, namespace, missing=None)
        if current is not None and current.metadata.deletion_timestamp is not None:
            raise RuntimeFailure(f"the namespace {namespace} of {project}/{environment} is still being deleted; try again shortly")
        self.apply(*manifests)
        return namespace

    def environment_remove(self, *, project: str, environment: str, grace: float = 10) -> None:
        """Delete the namespace, and with it all that runs there; returns once it is gone.
        Pods get `grace` seconds between SIGTERM and SIGKILL."""
        namespace = self.namespace_name(project, environment)
        self.call(
            f"delete the namespace {namespace}",
            self.core.delete_namespace,
            namespace,
            grace_period_seconds=int(max(grace, 0)),
            propagation_policy="Background",
            missing=None,
        )
        deadline = time.monotonic() + grace + 60
        while self.call("read the namespace", self.core.read_namespace, namespace, missing=None) is not None:
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"the namespace {namespace} of {project}/{environment} is still terminating after {grace + 60:g}s")
            time.sleep(self.poll_interval)

    # ---- executions -------------------------------------------------------------------------

    def job_manifests(self, spec: ReplicaSpec, *, namespace: str, args: list[str] | None, timeout: float | None) -> list[dict]:
        """A Secret with the execution's configuration (environment variables and files),
        then the Job that runs it. The Secret is owned by the Job once the Job exists
        (`once_start`), so deleting the Job deletes it."""
        labels = self._labels(**spec.labels)
        readable, annotations = self._readable(project=spec.project, environment=spec.environment, component=spec.component)
        labels.update(readable)
        secret = f"{spec.name}-config"
        data: dict[str, bytes] = {}
        env, mounts, items = [], [], []
        for i, (key, value) in enumerate(sorted(spec.environment_variables.items())):
            data[f"env-{i}"] = value.encode()
            env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": f"env-{i}"}}})
        for i, item in enumerate(spec.files):
            # One file per mount (subPath), so a file's directory keeps what the image has there.
            data[f"file-{i}"] = item.content
            items.append({"key": f"file-{i}", "path": f"file-{i}", "mode": 0o444})
            mounts.append({"name": "config-files", "mountPath": item.path, "subPath": f"file-{i}", "readOnly": True})
        resources = {}
        if spec.limits.memory:
            resources["memory"] = str(spec.limits.memory)
        if spec.limits.cpus:
            resources["cpu"] = f"{math.ceil(spec.limits.cpus * 1000)}m"
        container: dict = {"name": CONTAINER, "image": spec.image, "env": env, "volumeMounts": mounts}
        if resources:
            container["resources"] = {"limits": resources, "requests": resources}
        if args is not None:
            container["args"] = list(args)
        job_spec: dict = {
            "backoffLimit": 0,  # the platform's retries are the platform's
            "ttlSecondsAfterFinished": self.job_ttl,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": ABORT_GRACE,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [container],
                    "volumes": [{"name": "config-files", "secret": {"secretName": secret, "items": items}}] if items else [],
                },
            },
        }
        if timeout:
            job_spec["activeDeadlineSeconds"] = max(1, math.ceil(timeout))
        return [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret, "namespace": namespace, "labels": labels},
                "type": "Opaque",
                "immutable": True,
                "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
            },
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": spec.name, "namespace": namespace, "labels": labels, "annotations": annotations},
                "spec": job_spec,
            },
        ]

    def once_start(self, spec: ReplicaSpec, *, args: list[str] | None = None, timeout: float | None = None) -> KubernetesOnce:
        """A task's process as a Job in its environment's namespace. `timeout` becomes the
        Job's activeDeadlineSeconds: Kubernetes stops it then even if the platform is gone."""
        namespace = self.environment_ensure(project=spec.project, environment=spec.environment)
        secret, job = self.job_manifests(spec, namespace=namespace, args=args, timeout=timeout)
        self.apply(secret, job)
        try:
            made = self.call("read the Job", self.batch.read_namespaced_job, spec.name, namespace)
            owner = {"apiVersion": "batch/v1", "kind": "Job", "name": spec.name, "uid": made.metadata.uid, "blockOwnerDeletion": True}
            # Only the owner reference is added: an immutable Secret's data cannot change.
            self.call(
                "hand the configuration Secret to its Job",
                self.core.patch_namespaced_secret,
                secret["metadata"]["name"],
                namespace,
                {"metadata": {"ownerReferences": [owner]}},
                field_validation="Strict",
            )
        except RuntimeFailure:
            self.call(
                "remove the Job again",
                self.batch.delete_namespaced_job,
                spec.name,
                namespace,
                propagation_policy="Background",
                missing=None,
            )
            self.call("remove the Secret again", self.core.delete_namespaced_secret, secret["metadata"]["name"], namespace, missing=None)
            raise
        return KubernetesOnce(self, namespace, spec.name)

    def once_find(self, **labels: str) -> list[tuple[KubernetesOnce, int | None]]:
        selector = ",".join(f"{k}={v}" for k, v in self._labels(**labels).items())
        jobs = self.call("list the Jobs", self.batch.list_job_for_all_namespaces, label_selector=selector)
        found = []
        for job in jobs.items:
            once = KubernetesOnce(self, job.metadata.namespace, job.metadata.name)
            finished = _finished(job)
            found.append((once, None if finished is None else once.final_code(finished)))
        return found

    # ---- replicas: not in this slice --------------------------------------------------------

    def _replicas_later(self) -> RuntimeFailure:
        return RuntimeFailure(
            "the Kubernetes runtime runs executions only so far; replicas come with Deployments (deployments/runtimes/KUBERNETES.md)"
        )

    def replica_start(self, spec: ReplicaSpec) -> Replica:
        raise self._replicas_later()

    def replica_healthy(self, replica: Replica, health: dict | None, *, port: int | None) -> bool:
        raise self._replicas_later()

    def replica_stop(self, replica: Replica, *, grace: float) -> None:
        raise self._replicas_later()

    def replicas(self, **labels: str) -> list[Replica]:
        raise self._replicas_later()

    def logs(self, replica: Replica, *, since: float | None = None) -> list[tuple[str, str]]:
        raise self._replicas_later()


def _finished(job) -> object | None:
    """The Job's final condition (Complete or Failed, status True), or None while it runs."""
    for condition in job.status.conditions if job.status and job.status.conditions else []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition
    return None


class KubernetesOnce:
    """A task's Job. `wait` polls the Job (a watch would need a second long-lived
    connection per execution for little gain at a poll a second)."""

    def __init__(self, runtime: KubernetesRuntime, namespace: str, name: str):
        self.runtime, self.namespace, self.name = runtime, namespace, name
        self.id = f"{namespace}/{name}"
        self.patience = 30.0  # seconds `wait` bears an unreachable API server
        self._aborted = threading.Event()

    def _pods(self) -> list:
        rt = self.runtime
        pods = rt.call(
            f"list the pods of the Job {self.name}",
            rt.core.list_namespaced_pod,
            self.namespace,
            label_selector=f"batch.kubernetes.io/job-name={self.name}",
        )
        return pods.items

    def exit_code(self) -> int | None:
        """The exit code its container recorded, if it did."""
        for pod in self._pods():
            for status in (pod.status.container_statuses or []) if pod.status else []:
                if status.name == CONTAINER and status.state and status.state.terminated:
                    return status.state.terminated.exit_code
        return None

    def final_code(self, condition) -> int:
        """The exit code of an ended Job: its container's; for a Job that completed without
        one left to read (its pod collected), 0, as Complete means; else KILLED."""
        code = self.exit_code()
        if code is not None:
            return code
        return 0 if condition.type == "Complete" else KILLED

    def _output(self, output: Callable[[str], None]) -> None:
        """The pod's log, once it ended. Where the cluster cannot give it (kwok runs no
        container, so it has no log), the execution's log says so."""
        rt = self.runtime
        for pod in self._pods():
            try:
                text = rt.call(
                    f"read the log of {pod.metadata.name}",
                    rt.core.read_namespaced_pod_log,
                    pod.metadata.name,
                    self.namespace,
                    container=CONTAINER,
                    _request_timeout=10,
                )
            except RuntimeFailure as exc:
                output(f"(no output: the cluster gave no log for {pod.metadata.name}: {exc})\n")
                continue
            if text:
                output(text if text.endswith("\n") else text + "\n")

    def wait(self, output: Callable[[str], None]) -> int:
        """Until the Job ends: its container's exit code. Its output is passed on when it
        ended (not yet as it comes). After `abort`, the exit code Kubernetes recorded, or
        KILLED. A Job Kubernetes stopped at its deadline, or one that vanished, fails; so
        does an API server that stays unreachable for `patience` seconds (the Job itself
        runs on, and stops at its deadline)."""
        rt = self.runtime
        unreachable_since = None
        while True:
            try:
                job = rt.call(f"read the Job {self.name}", rt.batch.read_namespaced_job, self.name, self.namespace, missing=None)
            except Unreachable:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > self.patience:
                    raise
                self._aborted.wait(rt.poll_interval)
                continue
            unreachable_since = None
            if self._aborted.is_set():
                code = self.exit_code() if job is not None else None
                return KILLED if code is None else code
            if job is None:
                raise RuntimeFailure(f"the task's Job {self.id} was deleted while it ran")
            condition = _finished(job)
            if condition is not None:
                self._output(output)
                if condition.type == "Failed" and condition.reason == "DeadlineExceeded":
                    raise RuntimeFailure(
                        f"Kubernetes stopped the task's Job {self.id} at its deadline "
                        f"(activeDeadlineSeconds {job.spec.active_deadline_seconds}): {condition.message}"
                    )
                code = self.exit_code()
                if code is None and condition.type == "Failed":
                    raise RuntimeFailure(f"the task's Job {self.id} failed with no exit code: {condition.reason}: {condition.message}")
                return 0 if code is None else code
            self._aborted.wait(rt.poll_interval)

    def abort(self, reason: str) -> None:
        """Delete the Job and its pods (SIGTERM, ABORT_GRACE seconds, SIGKILL); `wait`
        then returns. Safe from any thread."""
        self._aborted.set()
        rt = self.runtime
        try:
            rt.call(
                f"delete the Job {self.name}",
                rt.batch.delete_namespaced_job,
                self.name,
                self.namespace,
                propagation_policy="Foreground",
                missing=None,
            )
        except RuntimeFailure as exc:
            # Never raised into the watchdog's thread: `remove`, which the execution always
            # calls after `wait`, deletes the Job again and says why it could not.
            log.warning("could not stop the task's Job %s: %s", self.id, exc)

    def remove(self) -> None:
        """Delete the Job, its pods and its configuration Secret."""
        rt = self.runtime
        rt.call(
            f"delete the Job {self.name}",
            rt.batch.delete_namespaced_job,
            self.name,
            self.namespace,
            propagation_policy="Background",
            missing=None,
        )
