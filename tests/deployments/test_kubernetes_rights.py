"""The Kubernetes runtime with a service account that lacks rights, against the session's
control plane (tests/conftest.py `kubeconfig`; RBAC is on, as on a real cluster).

The platform may well run with a narrower role than it needs (a cluster administrator's
choice, or a role that lags behind a new release). Then the API server's refusal must reach
the user in its own words, naming what was refused, and a step the platform could not finish
must leave nothing half-made behind: the server-side dry run of every object of a step comes
before the first write, and a refused dry run writes nothing.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from deployments.runtimes import ReplicaSpec, RuntimeFailure
from deployments.runtimes.kubernetes import KubernetesRuntime, api_client

pytestmark = pytest.mark.kubernetes

# What the runtime needs to make an environment's namespace with its NetworkPolicy, and the
# configuration Secret of a task's execution; server-side apply is a PATCH that creates the
# object when it is missing, so it takes `create` as well as `patch`.
ENVIRONMENT_RULES = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "create", "patch"]},
]
SECRET_RULES = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "patch", "delete"]}]


class Restricted:
    """A ServiceAccount in a namespace of its own, bound to a ClusterRole with `rules`, and a
    kubeconfig that authenticates as it with a token from the TokenRequest API. `remove`
    deletes all of it."""

    def __init__(self, admin: client.ApiClient, admin_kubeconfig: str, directory: Path):
        self.admin = admin
        self.name = f"choreo-rights-{uuid.uuid4().hex[:6]}"
        self.core = client.CoreV1Api(admin)
        self.rbac = client.RbacAuthorizationV1Api(admin)
        self.core.create_namespace({"metadata": {"name": self.name}})
        self.core.create_namespaced_service_account(self.name, {"metadata": {"name": "platform"}})
        token = self.core.create_namespaced_service_account_token(
            "platform", self.name, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))
        ).status.token
        cluster = yaml.safe_load(Path(admin_kubeconfig).read_text())["clusters"][0]["cluster"]
        self.kubeconfig = directory / f"{self.name}.kubeconfig"
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "choreo", "cluster": {key: cluster[key] for key in ("server", "certificate-authority")}}],
                    "users": [{"name": "platform", "user": {"token": token}}],
                    "contexts": [{"name": "choreo", "context": {"cluster": "choreo", "user": "platform"}}],
                    "current-context": "choreo",
                }
            )
        )
        self.kubeconfig.chmod(0o600)
        self.user = f"system:serviceaccount:{self.name}:platform"

    def grant(self, rules: list[dict]) -> None:
        """A ClusterRole with `rules`, bound to the account; returns once the API server's
        authorizer applies it (RBAC is read from an informer: a moment later)."""
        self.rbac.create_cluster_role({"metadata": {"name": self.name}, "rules": rules})
        self.rbac.create_cluster_role_binding(
            {
                "metadata": {"name": self.name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": self.name},
                "subjects": [{"kind": "ServiceAccount", "name": "platform", "namespace": self.name}],
            }
        )
        own = client.AuthorizationV1Api(api_client(str(self.kubeconfig)))
        last = rules[-1]  # checked: its first resource, with its last verb
        attributes = {"group": last["apiGroups"][0], "resource": last["resources"][0], "verb": last["verbs"][-1]}
        review = {"spec": {"resourceAttributes": attributes}}
        deadline = time.monotonic() + 30
        while not own.create_self_subject_access_review(review).status.allowed:
            assert time.monotonic() < deadline, f"the ClusterRole {self.name} did not take effect within 30 s"
            time.sleep(0.1)

    def remove(self) -> None:
        for delete in (self.rbac.delete_cluster_role_binding, self.rbac.delete_cluster_role, self.core.delete_namespace):
            try:
                delete(self.name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
def admin(kubeconfig):
    return api_client(kubeconfig)


@pytest.fixture
def restricted(admin, kubeconfig, tmp_path):
    account = Restricted(admin, kubeconfig, tmp_path)
    yield account
    account.remove()


@pytest.fixture
def instance():
    """A runtime instance namespace of the test's own; its environments are removed after it
    with the admin's rights (what a refused step did make, it made as the admin would)."""
    return f"choreo-test-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def as_admin(instance, kubeconfig):
    rt = KubernetesRuntime(instance, kubeconfig=kubeconfig, ingress_namespace="ingress=yes", job_ttl=600)
    yield rt
    rt.environment_remove(project="shop", environment="development", grace=0)


def restricted_runtime(instance: str, account: Restricted) -> KubernetesRuntime:
    return KubernetesRuntime(instance, kubeconfig=str(account.kubeconfig), ingress_namespace="ingress=yes", job_ttl=600)


def spec(rt: KubernetesRuntime, execution: int) -> ReplicaSpec:
    return ReplicaSpec(
        project="shop",
        environment="development",
        component="report",
        image="registry.invalid/shop/report@sha256:" + "0" * 64,  # kwok never pulls it
        name=f"{rt.namespace}-x{execution}",
        environment_variables={"GREETING": "hello", "DB_PASSWORD": "s3cret-marker"},
        labels={"execution": str(execution)},
    )


def missing(read) -> bool:
    try:
        read()
    except ApiException as exc:
        return exc.status == 404
    return False


def test_no_rights_at_all(restricted, instance, as_admin):
    rt = restricted_runtime(instance, restricted)
    with pytest.raises(RuntimeFailure) as refused:
        rt.environment_ensure(project="shop", environment="development")
    namespace = rt.namespace_name("shop", "development")
    # (The API server says a namespace is "in the namespace" of its own name.)
    assert str(refused.value) == (
        f'Kubernetes refused to read the namespace: namespaces "{namespace}" is forbidden: '
        f'User "{restricted.user}" cannot get resource "namespaces" in API group "" in the namespace "{namespace}"'
    )
    assert missing(lambda: as_admin.core.read_namespace(namespace))


def test_an_environment_refused_leaves_no_namespace(restricted, instance, as_admin):
    restricted.grant([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}])
    rt = restricted_runtime(instance, restricted)
    namespace = rt.namespace_name("shop", "development")
    with pytest.raises(RuntimeFailure) as refused:
        rt.environment_ensure(project="shop", environment="development")
    message = str(refused.value)
    # The step it was at, then the API server's own words: what was forbidden, to whom.
    assert message.startswith(f"Kubernetes refused to check Namespace {namespace}: "), message
    assert f'namespaces "{namespace}" is forbidden' in message
    assert f'User "{restricted.user}" cannot patch resource "namespaces"' in message
    # The dry run was refused: nothing was made.
    assert missing(lambda: as_admin.core.read_namespace(namespace))


def test_an_execution_refused_leaves_no_secret_and_no_job(restricted, instance, as_admin):
    restricted.grant(ENVIRONMENT_RULES + SECRET_RULES)  # and nothing on Jobs
    rt = restricted_runtime(instance, restricted)
    with pytest.raises(RuntimeFailure) as refused:
        rt.once_start(spec(rt, 1), timeout=60)
    namespace = rt.namespace_name("shop", "development")
    message = str(refused.value)
    assert message.startswith(f"Kubernetes refused to check Job {namespace}/{rt.namespace}-x1: "), message
    assert f'jobs.batch "{rt.namespace}-x1" is forbidden' in message
    assert f'User "{restricted.user}" cannot patch resource "jobs" in API group "batch"' in message
    # The environment was within its rights, and is there; of the execution, nothing is: the
    # Secret's dry run passed, the Job's was refused, and no write came before both.
    assert as_admin.core.read_namespace(namespace).status.phase == "Active"
    assert as_admin.networking.read_namespaced_network_policy("choreo-isolation", namespace)
    assert as_admin.core.list_namespaced_secret(namespace).items == []
    assert as_admin.batch.list_namespaced_job(namespace).items == []
