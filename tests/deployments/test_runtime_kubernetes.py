"""The Kubernetes runtime against a real control plane (scripts/kube: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, and kwok for nodes and the pod lifecycle).

kwok runs no container: a Job's pod goes Running, then Succeeded with exit code 0, or, with
the annotations of scripts/kube/kwok/choreo-stages.yaml, Failed with a chosen code after a
chosen delay. So these tests check objects, statuses and exit codes; there is no log and no
traffic to check (the NetworkPolicy is checked as an object, not by a connection).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from pathlib import Path

import pytest
from kubernetes.client.rest import ApiException

from deployments.runtimes import ReplicaFile, ReplicaSpec, RuntimeFailure
from deployments.runtimes.kubernetes import FIELD_MANAGER, KILLED, KubernetesOnce, KubernetesRuntime
from tests.conftest import free_port

pytestmark = pytest.mark.kubernetes

# `kubeconfig`: the session's control plane, in tests/conftest.py (one for every test file marked `kubernetes`).


class Kwok(KubernetesRuntime):
    """The runtime, with kwok's annotations on the next Job's pod: its exit code and how
    long it runs (kwok's own stand-in for a container)."""

    pod_annotations: dict[str, str] = {}
    extra_container_fields: dict = {}

    def job_manifests(self, spec, **kwargs):
        secret, job = super().job_manifests(spec, **kwargs)
        job["spec"]["template"]["metadata"]["annotations"].update(self.pod_annotations)
        job["spec"]["template"]["spec"]["containers"][0].update(self.extra_container_fields)
        return [secret, job]


@pytest.fixture
def runtime(kubeconfig):
    rt = Kwok(f"choreo-test-{uuid.uuid4().hex[:6]}", kubeconfig=kubeconfig, ingress_namespace="ingress=yes", job_ttl=600)
    yield rt
    for environment in ("development", "production"):
        rt.environment_remove(project="shop", environment=environment, grace=0)


def spec_for(rt: KubernetesRuntime, execution: int, **overrides) -> ReplicaSpec:
    values = {
        "project": "shop",
        "environment": "development",
        "component": "report",
        "image": "registry.invalid/shop/report@sha256:" + "0" * 64,  # kwok never pulls it
        "name": f"{rt.namespace}-x{execution}",
        "environment_variables": {"GREETING": "hello", "DB_PASSWORD": "s3cret-marker"},
        "files": (ReplicaFile("/etc/app/config.toml", b"a = 1\n", secret=False),),
        "labels": {"execution": str(execution)},
    }
    return ReplicaSpec(**{**values, **overrides})


def wait_until(predicate, timeout: float = 30, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s: {predicate}")


def gone(read) -> bool:
    try:
        read()
    except ApiException as exc:
        return exc.status == 404
    return False


def ours(rt: KubernetesRuntime, namespace: str, execution: int) -> tuple[list, list]:
    """The Jobs and Secrets of one execution in the namespace."""
    selector = f"io.choreo/instance={rt.namespace},io.choreo/execution={execution}"
    jobs = rt.batch.list_namespaced_job(namespace, label_selector=selector).items
    secrets = rt.core.list_namespaced_secret(namespace, label_selector=selector).items
    return jobs, secrets


def test_namespace_and_network_policy_per_environment(runtime):
    name = runtime.environment_ensure(project="shop", environment="development")
    assert runtime.environment_ensure(project="shop", environment="development") == name  # again: no change, no error
    assert name == runtime.namespace_name("shop", "development") and name.startswith(f"{runtime.namespace}-env-")
    # From a hash of the pair, never the joined names.
    assert runtime.namespace_name("a", "x-dev") != runtime.namespace_name("a-x", "dev")

    namespace = runtime.core.read_namespace(name)
    labels = namespace.metadata.labels
    assert labels["io.choreo/instance"] == runtime.namespace
    assert labels["io.choreo/project"] == "shop" and labels["io.choreo/environment"] == "development"
    assert namespace.metadata.annotations["io.choreo/environment"] == "development"
    managers = {entry.manager: entry.operation for entry in namespace.metadata.managed_fields}
    assert managers[FIELD_MANAGER] == "Apply"

    policy = runtime.networking.read_namespaced_network_policy("choreo-isolation", name)
    assert policy.spec.pod_selector.to_dict() in ({}, {"match_expressions": None, "match_labels": None})
    assert policy.spec.policy_types == ["Ingress"]
    (rule,) = policy.spec.ingress
    sources = [source.to_dict() for source in rule._from]
    assert sources[0]["pod_selector"] is not None and sources[0]["namespace_selector"] is None  # this namespace's pods
    assert sources[1]["namespace_selector"]["match_labels"] == {"ingress": "yes"}  # and the ingress controller's
    assert len(sources) == 2

    other = runtime.environment_ensure(project="shop", environment="production")
    assert other != name

    started = time.monotonic()
    runtime.environment_remove(project="shop", environment="development", grace=0)
    print(f"namespace removed in {time.monotonic() - started:.1f}s")
    assert gone(lambda: runtime.core.read_namespace(name))
    assert runtime.core.read_namespace(other).status.phase == "Active"  # the other environment is untouched
    runtime.environment_remove(project="shop", environment="development", grace=0)  # again: nothing to do


def test_execution_succeeds(runtime):
    once = runtime.once_start(spec_for(runtime, 1, environment_variables={"GREETING": "hello"}), args=["--day", "monday"], timeout=120)
    namespace = once.namespace
    job = runtime.batch.read_namespaced_job(once.name, namespace)
    assert job.spec.backoff_limit == 0
    assert job.spec.active_deadline_seconds == 120
    assert job.spec.ttl_seconds_after_finished == 600
    pod = job.spec.template.spec
    assert pod.restart_policy == "Never" and pod.automount_service_account_token is False
    (container,) = pod.containers
    assert container.args == ["--day", "monday"]
    # Configuration comes from the Secret, never from the pod spec itself.
    assert [(e.name, e.value, e.value_from.secret_key_ref.name) for e in container.env] == [("GREETING", None, f"{once.name}-config")]
    assert [(m.mount_path, m.read_only) for m in container.volume_mounts] == [("/etc/app/config.toml", True)]
    secret = runtime.core.read_namespaced_secret(f"{once.name}-config", namespace)
    assert secret.immutable is True
    assert [(o.kind, o.name, o.uid) for o in secret.metadata.owner_references] == [("Job", once.name, job.metadata.uid)]

    output: list[str] = []
    started = time.monotonic()
    assert once.wait(output.append) == 0
    print(f"Job succeeded in {time.monotonic() - started:.1f}s")
    # kwok runs no container: there is no log to read, and the execution's log says so.
    assert "".join(output).startswith("(no output: the cluster gave no log for ")
    [(found, code)] = runtime.once_find(execution="1")
    assert (found.name, code) == (once.name, 0)

    once.remove()
    wait_until(lambda: gone(lambda: runtime.batch.read_namespaced_job(once.name, namespace)))
    # The garbage collector takes the Job's pods and its Secret with it.
    wait_until(lambda: ours(runtime, namespace, 1) == ([], []))
    assert runtime.once_find(execution="1") == []


def test_execution_fails_with_its_exit_code(runtime):
    runtime.pod_annotations = {"kwok.choreo.test/exit-code": "3", "kwok.choreo.test/delay": "1s"}
    once = runtime.once_start(spec_for(runtime, 2), timeout=120)
    [(_, code)] = runtime.once_find(execution="2")
    assert code is None  # still running
    assert once.wait(lambda text: None) == 3
    [(_, code)] = runtime.once_find(execution="2")
    assert code == 3
    # The secret value is only in the Secret: not in the Job, its pod, an event or a ConfigMap.
    namespace, api = once.namespace, runtime.api
    everything = [
        runtime.batch.list_namespaced_job(namespace),
        runtime.core.list_namespaced_pod(namespace),
        runtime.core.list_namespaced_event(namespace),
        runtime.core.list_namespaced_config_map(namespace),
    ]
    text = json.dumps([api.sanitize_for_serialization(items) for items in everything])
    assert once.name in text and "GREETING" in text and "DB_PASSWORD" in text
    assert "s3cret-marker" not in text and base64.b64encode(b"s3cret-marker").decode() not in text
    once.remove()


def test_execution_times_out_at_its_deadline(runtime):
    runtime.pod_annotations = {"kwok.choreo.test/exit-code": "0", "kwok.choreo.test/delay": "60s"}
    once = runtime.once_start(spec_for(runtime, 3), timeout=2)
    started = time.monotonic()
    with pytest.raises(RuntimeFailure, match=r"stopped the task's Job .* at its deadline \(activeDeadlineSeconds 2\)"):
        once.wait(lambda text: None)
    elapsed = time.monotonic() - started
    print(f"deadline reported after {elapsed:.1f}s")
    assert 1.5 < elapsed < 20
    [(_, code)] = runtime.once_find(execution="3")
    assert code == KILLED  # it ended, with no exit code of its own
    once.remove()


def test_execution_aborted(runtime):
    runtime.pod_annotations = {"kwok.choreo.test/exit-code": "0", "kwok.choreo.test/delay": "60s"}
    once = runtime.once_start(spec_for(runtime, 4), timeout=120)
    namespace = once.namespace
    wait_until(lambda: any(p.status.phase == "Running" for p in once._pods()))
    timer = threading.Timer(1, once.abort, args=("Cancelled by a user.",))
    timer.start()
    started = time.monotonic()
    assert once.wait(lambda text: None) == KILLED
    elapsed = time.monotonic() - started
    assert elapsed < 5, elapsed
    # Deleted with its pods (foreground propagation), then with its Secret.
    wait_until(lambda: ours(runtime, namespace, 4) == ([], []))
    wait_until(lambda: runtime.core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={once.name}").items == [])
    once.remove()  # again: nothing left, no error


def test_strict_validation_refuses_an_unknown_field_before_anything_is_made(runtime):
    namespace = runtime.environment_ensure(project="shop", environment="development")
    runtime.extra_container_fields = {"imagePullPolicyy": "Always"}  # a typo Kubernetes would otherwise drop
    with pytest.raises(RuntimeFailure) as refused:
        runtime.once_start(spec_for(runtime, 5))
    message = str(refused.value)
    assert message.startswith(f"Kubernetes refused to check Job {namespace}/{runtime.namespace}-x5")
    assert "imagePullPolicyy: field not declared in schema" in message
    # The Secret was valid and checked first, but nothing was written: the dry run of the
    # whole step came before the first real apply.
    assert ours(runtime, namespace, 5) == ([], [])
    assert runtime.core.list_namespaced_secret(namespace).items == []
    # The same object without the typo is made.
    runtime.extra_container_fields = {}
    runtime.once_start(spec_for(runtime, 5)).remove()


def test_a_refused_network_policy_leaves_no_namespace_behind(runtime, monkeypatch):
    manifests = runtime.environment_manifests

    def with_typo(**kwargs):
        namespace, policy = manifests(**kwargs)
        policy["spec"]["podSelecter"] = {}
        return [namespace, policy]

    monkeypatch.setattr(runtime, "environment_manifests", with_typo)
    with pytest.raises(RuntimeFailure, match=r"NetworkPolicy .*podSelecter: field not declared in schema"):
        runtime.environment_ensure(project="shop", environment="production")
    wait_until(lambda: gone(lambda: runtime.core.read_namespace(runtime.namespace_name("shop", "production"))))


def test_a_name_kubernetes_refuses(runtime):
    namespace = runtime.environment_ensure(project="shop", environment="development")
    with pytest.raises(RuntimeFailure, match=r'metadata.name: Invalid value: "Report_X6-config": a lowercase RFC 1123 subdomain'):
        runtime.once_start(spec_for(runtime, 6, name="Report_X6"))
    assert ours(runtime, namespace, 6) == ([], [])


@pytest.mark.django_db  # `abort` logs a warning, and the platform's log filter reads the secrets to redact
def test_an_unreachable_cluster(kubeconfig, tmp_path):
    closed = free_port()
    text = Path(kubeconfig).read_text()
    server = next(line.split("server:", 1)[1].strip() for line in text.splitlines() if "server:" in line)
    (tmp_path / "kubeconfig").write_text(text.replace(server, f"https://127.0.0.1:{closed}"))
    rt = KubernetesRuntime("choreo-test-unreachable", kubeconfig=str(tmp_path / "kubeconfig"))
    started = time.monotonic()
    with pytest.raises(RuntimeFailure) as failed:
        rt.environment_ensure(project="shop", environment="development")
    assert time.monotonic() - started < 5
    assert str(failed.value) == (
        f"the Kubernetes API at https://127.0.0.1:{closed} cannot be reached (read the namespace): "
        "Failed to establish a new connection: [Errno 111] Connection refused"
    )
    # A running task's Job, its API server gone: `wait` bears it for a while, then says so;
    # `abort` (called from the watchdog's thread) never raises.
    once = KubernetesOnce(rt, "somewhere", "a-job")
    once.patience = 1
    started = time.monotonic()
    with pytest.raises(RuntimeFailure, match=r"cannot be reached \(read the Job a-job\)"):
        once.wait(lambda text: None)
    assert 1 <= time.monotonic() - started < 5
    once.abort("Cancelled by a user.")
    with pytest.raises(RuntimeFailure, match=r"cannot be reached \(delete the Job a-job\)"):
        once.remove()


def test_no_cluster_configured(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(RuntimeFailure, match="no Kubernetes cluster is configured: set KUBECONFIG, or run the platform in a pod"):
        KubernetesRuntime("choreo-test")
    (tmp_path / "broken").write_text("not: [a kubeconfig")
    with pytest.raises(RuntimeFailure, match=r"the Kubernetes configuration .*broken cannot be used"):
        KubernetesRuntime("choreo-test", kubeconfig=str(tmp_path / "broken"))


def test_an_instance_namespace_kubernetes_cannot_use():
    with pytest.raises(RuntimeFailure, match="INSTANCE_NAMESPACE"):
        KubernetesRuntime("Choreo_Test")
