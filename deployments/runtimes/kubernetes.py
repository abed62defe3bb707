"""The Kubernetes runtime (settings.RUNTIME = "kubernetes"), through the official client.

- Each project environment is a Namespace, named from a hash (as the Docker runtime names its
  networks) and labelled with the readable names, with a NetworkPolicy that admits traffic
  only from pods of the same namespace and from the ingress controller's namespace.
- A service is a `ServiceRuntime`: one Deployment per component (each platform deployment a
  new revision of it: maxUnavailable 0, a readiness probe from the descriptor's health, a
  preStop drain), a Service and an Ingress; its configuration in immutable Secrets and
  ConfigMaps named by their content's hash. The deployment is active when Kubernetes reports
  the rollout complete; when it reports no progress, the previous version is applied again.
- A task's execution is a Job (`backoffLimit: 0`: retries stay the platform's), its
  configuration in a Secret the Job owns, so both go together.

Every object is written by server-side apply with the platform's field manager and
`fieldValidation=Strict`, after a server-side dry run of every object of the step, so a
bad object is refused before anything changes. The API server's refusal, with its message,
becomes a `RuntimeFailure`. deployments/runtimes/KUBERNETES.md says what is not done yet.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import urllib3
import yaml
from django.conf import settings
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from builds import registry
from deployments.runtimes import Limits, Replica, ReplicaSpec, RuntimeFailure, ServiceSpec, ServiceState

log = logging.getLogger(__name__)

LABEL = "io.choreo"
FIELD_MANAGER = "choreo"
POLICY_NAME = "choreo-isolation"
CONTAINER = "task"
SERVICE_CONTAINER = "app"
PULL_SECRET = "choreo-registry"
REVISION_HISTORY = 3  # old ReplicaSets a Deployment keeps (their configuration is kept with them)
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


class Conflict(RuntimeFailure):
    """The object changed since it was read (HTTP 409 on a write that named its resourceVersion)."""


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
        self.apps = client.AppsV1Api(self.api)
        self.ingress_class = settings.KUBERNETES_INGRESS_CLASS
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
            if exc.status == 409:
                raise Conflict(f"Kubernetes refused to {what}: {_message(exc)}") from None
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
            "ConfigMap": self.core.patch_namespaced_config_map,
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
            "Ingress": self.networking.patch_namespaced_ingress,
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
                if manifest["kind"] == "Namespace" and self._namespace(manifest["metadata"]["name"]) is None:
                    made = manifest["metadata"]["name"]
                if manifest in later:
                    self._apply_one(manifest, dry_run=True)
                self._apply_one(manifest, dry_run=False)
        except RuntimeFailure:
            if made is not None:
                self.call("remove the namespace again", self.core.delete_namespace, made, missing=None)
            raise

    def _namespace(self, name: str):
        """The namespace as the API server has it, or None."""
        return self.call("read the namespace", self.core.read_namespace, name, missing=None)

    def _namespace_missing(self, namespace: str, manifests: tuple[dict, ...]) -> bool:
        made_here = any(m["kind"] == "Namespace" and m["metadata"]["name"] == namespace for m in manifests)
        return made_here and self._namespace(namespace) is None

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
        current = self._namespace(namespace)
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
        while self._namespace(namespace) is not None:
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
        resources = _resources(spec.limits)
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
        try:
            self.apply(secret, job)
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
            # What was made is removed where it can be; the refusal is the error to give.
            with contextlib.suppress(RuntimeFailure):
                self.call(
                    "remove the Job again",
                    self.batch.delete_namespaced_job,
                    spec.name,
                    namespace,
                    propagation_policy="Background",
                    missing=None,
                )
            with contextlib.suppress(RuntimeFailure):
                name = secret["metadata"]["name"]
                self.call("remove the Secret again", self.core.delete_namespaced_secret, name, namespace, missing=None)
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

    # ---- services ---------------------------------------------------------------------------

    def service_name(self, component_id: int) -> str:
        """The Deployment, Service and Ingress of a component in its environment's namespace:
        one of each, so that each platform deployment is a new revision of the same Deployment."""
        return f"c{int(component_id)}"

    def _image(self, reference: str) -> str:
        """`reference` as the cluster's nodes pull it (settings.KUBERNETES_IMAGE_REGISTRY)."""
        nodes_registry = settings.KUBERNETES_IMAGE_REGISTRY
        return f"{nodes_registry}/{reference.split('/', 1)[1]}" if nodes_registry and "/" in reference else reference

    def _pull_secret(self, namespace: str, image: str) -> dict | None:
        """The registry's read-only credentials, for the nodes' pulls. Never the platform's
        own, which may push and delete: whoever may read a Secret in the namespace would
        have them. Without read-only credentials, none: the nodes pull as they are set up to."""
        credentials = registry.pull_credentials()
        if credentials is None:
            return None
        username, password = credentials
        host = image.split("/", 1)[0]
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        auths = {"auths": {host: {"username": username, "password": password, "auth": token}}}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": PULL_SECRET, "namespace": namespace, "labels": self._labels()},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(auths).encode()).decode()},
        }

    def service_manifests(self, spec: ServiceSpec, *, namespace: str) -> list[dict]:
        """Everything `spec` is, in the order it is applied: its configuration (an immutable
        Secret for secret values, an immutable ConfigMap for the rest, each named by a hash of
        its content), the registry's pull Secret, the Deployment, and its Service and Ingress
        when it has endpoints."""
        r = spec.replica
        name = self.service_name(spec.component_id)
        selector = self._labels(**{"component-id": str(spec.component_id)})
        readable, annotations = self._readable(project=r.project, environment=r.environment, component=r.component)
        secret_data: dict[str, bytes] = {}
        config_data: dict[str, bytes] = {}
        env_refs: list[tuple[str, bool, str]] = []  # (variable, secret, key)
        file_refs: list[tuple[str, bool, str]] = []  # (path, secret, key)
        for i, (key, value) in enumerate(sorted(r.environment_variables.items())):
            secret = key in r.secret_names
            (secret_data if secret else config_data)[f"env-{i}"] = value.encode()
            env_refs.append((key, secret, f"env-{i}"))
        for i, item in enumerate(r.files):
            (secret_data if item.secret else config_data)[f"file-{i}"] = item.content
            file_refs.append((item.path, item.secret, f"file-{i}"))
        secret_name = f"{name}-secret-{_content_hash(secret_data)}" if secret_data else None
        config_name = f"{name}-config-{_content_hash(config_data)}" if config_data else None
        manifests: list[dict] = []
        config_labels = {**selector, f"{LABEL}/configuration": "true"}
        if secret_name:
            manifests.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": secret_name, "namespace": namespace, "labels": config_labels},
                    "type": "Opaque",
                    "immutable": True,
                    "data": {k: base64.b64encode(v).decode() for k, v in sorted(secret_data.items())},
                }
            )
        if config_name:
            manifests.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": config_name, "namespace": namespace, "labels": config_labels},
                    "immutable": True,
                    "binaryData": {k: base64.b64encode(v).decode() for k, v in sorted(config_data.items())},
                }
            )
        env = []
        for variable, secret, key in env_refs:
            ref = {"secretKeyRef": {"name": secret_name, "key": key}} if secret else {"configMapKeyRef": {"name": config_name, "key": key}}
            env.append({"name": variable, "valueFrom": ref})
        mounts = [{"name": "configuration", "mountPath": path, "subPath": key, "readOnly": True} for path, _, key in file_refs]
        sources = []
        for kind, ref_name, secret in (("secret", secret_name, True), ("configMap", config_name, False)):
            items = [{"key": key, "path": key} for _, is_secret, key in file_refs if is_secret == secret]
            if items:
                sources.append({kind: {"name": ref_name, "items": items}})
        image = self._image(r.image)
        container: dict = {
            "name": SERVICE_CONTAINER,
            "image": image,
            "env": env,
            "volumeMounts": mounts,
            "ports": [{"containerPort": port, "protocol": "TCP"} for port in spec.ports],
            # Endpoints drop a stopping pod while it still serves what reached it: it keeps
            # serving for the drain time, then gets SIGTERM (the rollout's drain and stop).
            "lifecycle": {"preStop": {"sleep": {"seconds": max(1, math.ceil(spec.drain))}}},
        }
        probe = _readiness_probe(spec.health, spec.ports)
        if probe:
            container["readinessProbe"] = probe
        resources = _resources(r.limits)
        if resources:
            container["resources"] = {"limits": resources, "requests": resources}
        pod_spec: dict = {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": math.ceil(spec.drain + spec.stop_grace),
            "containers": [container],
            "volumes": [{"name": "configuration", "projected": {"defaultMode": 0o444, "sources": sources}}] if sources else [],
        }
        pull = self._pull_secret(namespace, image)
        if pull is not None:
            manifests.append(pull)
            pod_spec["imagePullSecrets"] = [{"name": PULL_SECRET}]
        labels = {**selector, **readable}
        manifests.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": labels,
                    "annotations": {**annotations, f"{LABEL}/deployment": str(spec.deployment)},
                },
                "spec": {
                    "replicas": spec.replicas,
                    "revisionHistoryLimit": REVISION_HISTORY,
                    "progressDeadlineSeconds": _progress_deadline(spec),
                    # New replicas all start at once and old ones stop only as new ones are ready.
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}},
                    "selector": {"matchLabels": selector},
                    "template": {
                        "metadata": {"labels": {**labels, f"{LABEL}/deployment": str(spec.deployment)}, "annotations": annotations},
                        "spec": pod_spec,
                    },
                },
            }
        )
        if spec.ports:
            manifests.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels},
                    "spec": {
                        "selector": selector,
                        "ports": [{"name": f"port-{port}", "port": port, "targetPort": port, "protocol": "TCP"} for port in spec.ports],
                    },
                }
            )
        if spec.public is not None and spec.host:
            backend = {"service": {"name": name, "port": {"number": spec.public["port"]}}}
            manifests.append(
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "Ingress",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels},
                    "spec": {
                        "ingressClassName": self.ingress_class,
                        "rules": [
                            {
                                "host": spec.host,
                                "http": {"paths": [{"path": spec.public["basePath"], "pathType": "Prefix", "backend": backend}]},
                            }
                        ],
                    },
                }
            )
        return manifests

    def service_deploy(self, spec: ServiceSpec, *, previous: ServiceSpec | None, log: Callable[[str], None]) -> None:
        """Apply `spec` (every object checked by a dry run first) and wait until Kubernetes
        reports its rollout complete. If it makes no progress within the deadline, or the
        Deployment goes away, `previous` is applied again (its pods never stopped) and this
        raises RuntimeFailure with what the cluster says."""
        r = spec.replica
        namespace = self.namespace_name(r.project, r.environment)
        if self._environment_missing(namespace, self._namespace(namespace)):
            self.environment_ensure(project=r.project, environment=r.environment)
        manifests = self.service_manifests(spec, namespace=namespace)
        log(f"==> Apply to the namespace {namespace}: " + ", ".join(f"{m['kind']} {m['metadata']['name']}" for m in manifests))
        try:
            self.apply(*manifests)
            log(
                f"==> Wait for the rollout: {spec.replicas} ready replica(s), the old ones kept until then, "
                f"at most {_progress_deadline(spec)}s without progress"
            )
            self._await_rollout(spec, namespace, log)
        except RuntimeFailure as failure:
            try:
                self.service_revert(spec, previous=previous, log=log)
            except RuntimeFailure as exc:
                raise RuntimeFailure(f"{failure}; putting the previous version back failed too: {exc}") from None
            log("the previous version was applied again; its replicas kept serving" if previous else "the new objects were removed")
            raise
        self._collect(spec, namespace, keep={(m["kind"], m["metadata"]["name"]) for m in manifests})
        log(f"all {spec.replicas} replica(s) ready and available")

    def _await_rollout(self, spec: ServiceSpec, namespace: str, log: Callable[[str], None]) -> None:
        name = self.service_name(spec.component_id)
        cap = time.monotonic() + _progress_deadline(spec) * 2 + 60  # should Kubernetes never say
        said = None
        pause = 0.05  # most rollouts end within a fraction of a second of the apply
        while True:
            deployment = self.call(f"read the Deployment {name}", self.apps.read_namespaced_deployment, name, namespace, missing=None)
            if deployment is None:
                raise RuntimeFailure(f"the Deployment {namespace}/{name} was deleted while it rolled out")
            if deployment.metadata.annotations.get(f"{LABEL}/deployment") != str(spec.deployment):
                raise RuntimeFailure(f"the Deployment {namespace}/{name} was changed by another rollout")
            progress = _rollout_progress(deployment)
            if progress.complete:
                return
            if progress.text != said:
                log(progress.text)
                said = progress.text
            if progress.stuck or time.monotonic() > cap:
                why = progress.stuck or f"Kubernetes reported no end of the rollout within {cap:g}s"
                raise RuntimeFailure(f"{why}{self._why_not_ready(spec, namespace)}")
            time.sleep(pause)
            pause = min(pause * 2, self.poll_interval)

    def _why_not_ready(self, spec: ServiceSpec, namespace: str) -> str:
        """The new pods that are not ready, with their conditions and last events."""
        pods = self._pods_of(spec, namespace)
        reasons = []
        for pod in pods[:3]:
            conditions = [
                f"{c.type} {c.status}" + (f" ({c.reason}: {c.message})" if c.reason or c.message else "")
                for c in (pod.status.conditions or [])
                if c.type in ("PodScheduled", "ContainersReady", "Ready") and c.status != "True"
            ]
            events = self.call(
                f"list the events of {pod.metadata.name}",
                self.core.list_namespaced_event,
                namespace,
                field_selector=f"involvedObject.name={pod.metadata.name}",
            ).items
            said = [f"{e.reason}: {e.message}" for e in sorted(events, key=_event_time)[-3:]]
            phase = pod.status.phase if pod.status else None
            reasons.append(f"{pod.metadata.name} ({phase or 'no phase'}): " + "; ".join(conditions + said))
        return "; pods not ready: " + " | ".join(reasons) if reasons else ""

    def _pods_of(self, spec: ServiceSpec, namespace: str) -> list:
        selector = ",".join(f"{k}={v}" for k, v in self._labels(**{"component-id": str(spec.component_id)}).items())
        pods = self.call(
            "list the pods",
            self.core.list_namespaced_pod,
            namespace,
            label_selector=f"{selector},{LABEL}/deployment={spec.deployment}",
        )
        return [p for p in pods.items if p.metadata.deletion_timestamp is None]

    def service_revert(self, spec: ServiceSpec, *, previous: ServiceSpec | None, log: Callable[[str], None]) -> None:
        """`previous` applied again (its Deployment's template back, so its ReplicaSet, never
        scaled down, serves alone again), or, without one, `spec`'s objects removed."""
        r = spec.replica
        if previous is not None:
            namespace = self.namespace_name(r.project, r.environment)
            manifests = self.service_manifests(previous, namespace=namespace)
            self.apply(*manifests)
            # Its pods kept serving; this waits until the cluster has scaled the new ones away.
            try:
                self._await_rollout(previous, namespace, lambda line: None)
            except RuntimeFailure as exc:  # the reason the new version failed is the one to give
                log(f"the previous version was applied again but did not settle yet: {exc}")
            self._collect(previous, namespace, keep={(m["kind"], m["metadata"]["name"]) for m in manifests})
        else:
            self.service_remove(project=r.project, environment=r.environment, component_id=spec.component_id, grace=1)

    def _collect(self, spec: ServiceSpec, namespace: str, *, keep: set[tuple[str, str]]) -> None:
        """Remove what the component no longer uses: a Service or Ingress `spec` does not
        have, and configuration no kept ReplicaSet refers to (a rollback re-creates it
        from the database, by the same name)."""
        name = self.service_name(spec.component_id)
        selector = ",".join(f"{k}={v}" for k, v in self._labels(**{"component-id": str(spec.component_id)}).items())
        if ("Service", name) not in keep:
            self.call(f"delete the Service {name}", self.core.delete_namespaced_service, name, namespace, missing=None)
        if ("Ingress", name) not in keep:
            self.call(f"delete the Ingress {name}", self.networking.delete_namespaced_ingress, name, namespace, missing=None)
        used = {n for kind, n in keep if kind in ("Secret", "ConfigMap")}
        replica_sets = self.call("list the ReplicaSets", self.apps.list_namespaced_replica_set, namespace, label_selector=selector)
        for replica_set in replica_sets.items:
            used |= _configuration_names(replica_set.spec.template.spec)
        config_selector = f"{selector},{LABEL}/configuration=true"
        for kind, lister, deleter in (
            ("Secret", self.core.list_namespaced_secret, self.core.delete_namespaced_secret),
            ("ConfigMap", self.core.list_namespaced_config_map, self.core.delete_namespaced_config_map),
        ):
            for item in self.call(f"list the {kind}s", lister, namespace, label_selector=config_selector).items:
                if item.metadata.name not in used:
                    self.call(f"delete the {kind} {item.metadata.name}", deleter, item.metadata.name, namespace, missing=None)

    def service_state(self, spec: ServiceSpec) -> ServiceState:
        r = spec.replica
        namespace = self.namespace_name(r.project, r.environment)
        name = self.service_name(spec.component_id)
        deployment = self.call(f"read the Deployment {name}", self.apps.read_namespaced_deployment, name, namespace, missing=None)
        if deployment is None:
            return ServiceState(spec.replicas, 0, False, f"the Deployment {namespace}/{name} does not exist")
        mine = (deployment.metadata.annotations or {}).get(f"{LABEL}/deployment") == str(spec.deployment)
        ready = sum(1 for pod in self._pods_of(spec, namespace) if _pod_ready(pod))
        progress = _rollout_progress(deployment)
        return ServiceState(spec.replicas, ready, mine and progress.complete, progress.text)

    def _environment_missing(self, namespace: str, current) -> list[str]:
        """What of the environment's namespace (`current`, as read) and policy does not exist
        (a namespace being deleted counts as missing: `environment_ensure` then says so)."""
        if current is None or current.metadata.deletion_timestamp is not None:
            return [f"Namespace {namespace}"]
        if self.call("read the policy", self.networking.read_namespaced_network_policy, POLICY_NAME, namespace, missing=None) is None:
            return [f"NetworkPolicy {POLICY_NAME}"]
        return []

    def service_reconcile(self, spec: ServiceSpec, *, current: Callable[[int], bool] = lambda pk: False) -> list[str]:
        """Make again what is missing of the active `spec`: its namespace (and policy) and any
        of its objects. A Deployment whose template is another platform deployment's gets
        `spec`'s back, unless `current(that deployment's pk)` says it is one being rolled out
        or made active since `spec` was read: undoing it would undo a rollout."""
        r = spec.replica
        namespace = self.namespace_name(r.project, r.environment)
        present = self._namespace(namespace)
        if present is not None and present.metadata.deletion_timestamp is not None:
            return []  # being removed: the next round makes it again
        made = self._environment_missing(namespace, present)
        if made:
            self.environment_ensure(project=r.project, environment=r.environment)
        manifests = self.service_manifests(spec, namespace=namespace)
        deployment = next(m for m in manifests if m["kind"] == "Deployment")
        found = None
        for manifest in manifests:
            found_here = self._read(manifest) if present is not None else None
            if found_here is None:
                made.append(f"{manifest['kind']} {manifest['metadata']['name']}")
            elif manifest is deployment:
                found = found_here
        for _ in range(5):  # the controller's status writes change its resourceVersion too
            deployment["metadata"].pop("resourceVersion", None)
            if found is not None:
                other = (found.metadata.annotations or {}).get(f"{LABEL}/deployment", "")
                if other == str(spec.deployment) and not made:
                    return []
                if other.isdigit() and other != str(spec.deployment) and current(int(other)):
                    return []  # that rollout applies what it needs itself
                deployment["metadata"]["resourceVersion"] = found.metadata.resource_version  # only over what was read
            try:
                self.apply(*manifests)
                return made
            except Conflict:
                found = self._read(deployment)
        return []  # changing too fast to tell: the next round looks again

    def _read(self, manifest: dict):
        kind, name, namespace = manifest["kind"], manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        method = {
            "Secret": self.core.read_namespaced_secret,
            "ConfigMap": self.core.read_namespaced_config_map,
            "Deployment": self.apps.read_namespaced_deployment,
            "Service": self.core.read_namespaced_service,
            "Ingress": self.networking.read_namespaced_ingress,
        }[kind]
        return self.call(f"read the {kind} {name}", method, name, namespace, missing=None)

    def service_remove(self, *, project: str, environment: str, component_id: int, grace: float) -> None:
        """Delete the component's Deployment (its pods get their own grace), Service, Ingress
        and configuration in the environment."""
        namespace = self.namespace_name(project, environment)
        name = self.service_name(component_id)
        self.call(
            f"delete the Deployment {name}",
            self.apps.delete_namespaced_deployment,
            name,
            namespace,
            propagation_policy="Background",
            missing=None,
        )
        self.call(f"delete the Service {name}", self.core.delete_namespaced_service, name, namespace, missing=None)
        self.call(f"delete the Ingress {name}", self.networking.delete_namespaced_ingress, name, namespace, missing=None)
        selector = ",".join(f"{k}={v}" for k, v in self._labels(**{"component-id": str(component_id), "configuration": "true"}).items())
        self.call("delete the configuration Secrets", self.core.delete_collection_namespaced_secret, namespace, label_selector=selector)
        self.call("delete the ConfigMaps", self.core.delete_collection_namespaced_config_map, namespace, label_selector=selector)

    def service_logs(self, spec: ServiceSpec, *, since: float | None = None) -> list[tuple[str, str, str]]:
        """(pod, RFC 3339 stamp, line) of the service's pods. A pod the cluster gives no log
        of (kwok's run no container) gets one line that says so."""
        r = spec.replica
        namespace = self.namespace_name(r.project, r.environment)
        lines = []
        for pod in self._pods_of(spec, namespace):
            extra = {"since_seconds": max(1, math.ceil(time.time() - since))} if since else {}
            try:
                text = self.call(
                    f"read the log of {pod.metadata.name}",
                    self.core.read_namespaced_pod_log,
                    pod.metadata.name,
                    namespace,
                    container=SERVICE_CONTAINER,
                    timestamps=True,
                    _request_timeout=10,
                    **extra,
                )
            except Unreachable:
                raise
            except RuntimeFailure as exc:
                now = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
                lines.append((pod.metadata.name, now, f"(no output: {exc})"))
                continue
            for line in (text or "").splitlines():
                stamp, _, rest = line.partition(" ")
                lines.append((pod.metadata.name, stamp, rest))
        return lines

    # ---- replicas one by one: the Docker runtime's way, not this one's ----------------------

    def _replicas_not_here(self) -> RuntimeFailure:
        return RuntimeFailure("the Kubernetes runtime rolls out whole services (service_deploy), not replicas one by one")

    def replica_start(self, spec: ReplicaSpec) -> Replica:
        raise self._replicas_not_here()

    def replica_healthy(self, replica: Replica, health: dict | None, *, port: int | None) -> bool:
        raise self._replicas_not_here()

    def replica_stop(self, replica: Replica, *, grace: float) -> None:
        raise self._replicas_not_here()

    def replicas(self, **labels: str) -> list[Replica]:
        raise self._replicas_not_here()

    def logs(self, replica: Replica, *, since: float | None = None) -> list[tuple[str, str]]:
        raise self._replicas_not_here()


@dataclass(frozen=True)
class _Progress:
    complete: bool
    text: str
    stuck: str = ""  # why Kubernetes gave up on the rollout


def _rollout_progress(deployment) -> _Progress:
    """Complete when the controller saw the current generation and every replica is updated,
    ready and available, with no old one left (what `kubectl rollout status` waits for)."""
    want = deployment.spec.replicas or 0
    status = deployment.status
    observed = (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
    updated, ready = status.updated_replicas or 0, status.ready_replicas or 0
    available, total = status.available_replicas or 0, status.replicas or 0
    text = f"{updated}/{want} updated, {ready} ready, {available} available, {total - updated} old"
    for condition in status.conditions or [] if observed else []:  # else the conditions are of an earlier template
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            return _Progress(False, text, f"Kubernetes reported no progress ({condition.reason}: {condition.message})")
    complete = observed and updated == want and available == want and ready >= want and total == updated
    return _Progress(complete, text)


def _pod_ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []) if pod.status)


def _event_time(event) -> float:
    stamp = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
    return stamp.timestamp() if stamp else 0.0


def _configuration_names(pod_spec) -> set[str]:
    """The Secrets and ConfigMaps a pod template refers to (environment and volumes)."""
    names = set()
    for container in pod_spec.containers or []:
        for variable in container.env or []:
            source = variable.value_from
            if source and source.secret_key_ref:
                names.add(source.secret_key_ref.name)
            if source and source.config_map_key_ref:
                names.add(source.config_map_key_ref.name)
    for volume in pod_spec.volumes or []:
        for source in volume.projected.sources if volume.projected else []:
            if source.secret:
                names.add(source.secret.name)
            if source.config_map:
                names.add(source.config_map.name)
    return names


def _content_hash(data: dict[str, bytes]) -> str:
    """A name for configuration, from its content: keyed (SECRET_KEY), since the name is
    shown where the values are not, and a plain hash of a guessable secret would give it away."""
    digest = hmac.new(settings.SECRET_KEY.encode(), digestmod=hashlib.sha256)
    for key in sorted(data):
        digest.update(hashlib.sha256(key.encode()).digest() + hashlib.sha256(data[key]).digest())
    return digest.hexdigest()[:12]


def _progress_deadline(spec: ServiceSpec) -> int:
    """Kubernetes' progressDeadlineSeconds: the descriptor's startup timeout (the time a
    replica has to become ready), at least 5 s."""
    return max(5, math.ceil(spec.startup))


def _readiness_probe(health: dict | None, ports: tuple[int, ...]) -> dict | None:
    """The descriptor's health check as a readiness probe; without one, a TCP connect to the
    first endpoint's port, as the Docker runtime checks."""
    health = health or {}
    timing = {
        "periodSeconds": max(1, math.ceil(health.get("interval", 1.0))),
        "timeoutSeconds": max(1, math.ceil(health.get("timeout", 1.0))),
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    if "http" in health:
        return {"httpGet": {"path": health["http"]["path"], "port": health["http"]["port"]}, **timing}
    if "tcp" in health:
        return {"tcpSocket": {"port": health["tcp"]["port"]}, **timing}
    if "exec" in health:
        return {"exec": {"command": list(health["exec"]["command"])}, **timing}
    if ports:
        return {"tcpSocket": {"port": ports[0]}, **timing}
    return None


def _resources(limits: Limits) -> dict[str, str]:
    """Memory and cores of one replica; requests equal limits (a replica gets what it may use).
    The processes limit is the kubelet's (podPidsLimit), not a pod's."""
    resources = {}
    if limits.memory:
        resources["memory"] = str(limits.memory)
    if limits.cpus:
        resources["cpu"] = f"{math.ceil(limits.cpus * 1000)}m"
    return resources


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

    def _delete(self, propagation: str) -> None:
        rt = self.runtime
        rt.call(
            f"delete the Job {self.name}",
            rt.batch.delete_namespaced_job,
            self.name,
            self.namespace,
            propagation_policy=propagation,
            missing=None,
        )

    def abort(self, reason: str) -> None:
        """Delete the Job and its pods (SIGTERM, ABORT_GRACE seconds, SIGKILL); `wait`
        then returns. Safe from any thread."""
        self._aborted.set()
        try:
            self._delete("Foreground")
        except RuntimeFailure as exc:
            # Never raised into the watchdog's thread: `remove`, which the execution always
            # calls after `wait`, deletes the Job again and says why it could not.
            log.warning("could not stop the task's Job %s: %s", self.id, exc)

    def remove(self) -> None:
        """Delete the Job, its pods and its configuration Secret."""
        self._delete("Background")
