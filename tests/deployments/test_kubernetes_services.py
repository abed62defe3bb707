"""Services on the Kubernetes runtime (`ServiceRuntime`), against a real control plane
(scripts/kube: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok nodes).

kwok runs no container: a pod goes Running and Ready at once, unless its container has an
environment variable named CHOREO_TEST_UNREADY (scripts/kube/kwok/choreo-stages.yaml), which
keeps it Running and not Ready, as a failing readiness probe would. So these tests check the
objects, the rollout's statuses and what the cluster reports; they cannot send traffic (no
kube-proxy, no ingress controller) or read a container's log.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid

import pytest

from deployments.runtimes import Limits, ReplicaFile, ReplicaSpec, RuntimeFailure, ServiceSpec
from deployments.runtimes.kubernetes import FIELD_MANAGER, KubernetesRuntime

pytestmark = pytest.mark.kubernetes

HEALTH = {"http": {"path": "/healthz", "port": 8080}, "interval": 2.0, "timeout": 1.0, "startupTimeout": 20.0}
SECRET_MARKER = "s3cr3t-marker-7f1c2e"


@pytest.fixture
def rt(kubeconfig):
    name = f"choreo-test-{uuid.uuid4().hex[:6]}"
    runtime = KubernetesRuntime(name, kubeconfig=kubeconfig, ingress_namespace="ingress=yes", poll_interval=0.2)
    yield runtime
    for environment in ("development", "production"):
        runtime.environment_remove(project="shop", environment=environment, grace=0)


def spec(
    deployment: int,
    *,
    environment: str = "development",
    component_id: int = 7,
    replicas: int = 2,
    env: dict[str, str] | None = None,
    secret_names: frozenset[str] = frozenset(),
    files: tuple[ReplicaFile, ...] = (),
    health: dict | None = None,
    host: str | None = "web.development.shop.localhost",
    image: str = "registry.test/shop/web@sha256:" + "a" * 64,
) -> ServiceSpec:
    replica = ReplicaSpec(
        project="shop",
        environment=environment,
        component="web",
        image=image,
        name=f"c{component_id}",
        environment_variables=env or {},
        secret_names=secret_names,
        files=files,
        labels={"deployment": str(deployment)},
        limits=Limits(memory=256 * 1024 * 1024, cpus=0.5, pids=256),
    )
    public = {"name": "web", "port": 8080, "basePath": "/api", "visibility": "public"} if host else None
    return ServiceSpec(
        deployment=deployment,
        component_id=component_id,
        replica=replica,
        replicas=replicas,
        ports=(8080, 9090),
        health=health or HEALTH,
        public=public,
        host=host,
        drain=4,
        stop_grace=3,
    )


def objects(rt: KubernetesRuntime, namespace: str) -> dict[str, list[dict]]:
    """Everything the API server returns for the namespace, as it returns it (JSON)."""
    lists = {
        "configmaps": rt.core.list_namespaced_config_map,
        "secrets": rt.core.list_namespaced_secret,
        "events": rt.core.list_namespaced_event,
        "pods": rt.core.list_namespaced_pod,
        "services": rt.core.list_namespaced_service,
        "endpoints": rt.core.list_namespaced_endpoints,
        "deployments": rt.apps.list_namespaced_deployment,
        "replicasets": rt.apps.list_namespaced_replica_set,
        "ingresses": rt.networking.list_namespaced_ingress,
        "networkpolicies": rt.networking.list_namespaced_network_policy,
    }
    found = {name: rt.api.sanitize_for_serialization(method(namespace).items) for name, method in lists.items()}
    found["namespace"] = [rt.api.sanitize_for_serialization(rt.core.read_namespace(namespace))]
    return found


def deployment_of(rt, s: ServiceSpec):
    return rt.apps.read_namespaced_deployment(rt.service_name(s.component_id), rt.namespace_name("shop", s.replica.environment))


def test_the_objects_are_what_the_descriptor_says(rt):
    lines = []
    s = spec(
        11,
        env={"GREETING": "hello", "DB_PASSWORD": SECRET_MARKER},
        secret_names=frozenset({"DB_PASSWORD"}),
        files=(ReplicaFile("/etc/app/config.toml", b"mode = 1\n"), ReplicaFile("/run/secrets/key", SECRET_MARKER.encode(), secret=True)),
    )
    rt.service_deploy(s, previous=None, log=lines.append)
    namespace = rt.namespace_name("shop", "development")
    assert any("Apply to the namespace" in line for line in lines) and lines[-1] == "all 2 replica(s) ready and available"

    d = deployment_of(rt, s)
    assert d.metadata.name == "c7" and d.metadata.annotations["io.choreo/deployment"] == "11"
    assert d.metadata.labels["io.choreo/component"] == "web" and d.metadata.labels["io.choreo/component-id"] == "7"
    assert d.spec.replicas == 2 and d.spec.progress_deadline_seconds == 20
    assert d.spec.strategy.rolling_update.max_unavailable == 0
    pod = d.spec.template.spec
    assert pod.automount_service_account_token is False and pod.termination_grace_period_seconds == 7  # drain 4 + stop 3
    (container,) = pod.containers
    probe = container.readiness_probe
    assert (probe.http_get.path, probe.http_get.port, probe.period_seconds, probe.timeout_seconds) == ("/healthz", 8080, 2, 1)
    assert container.resources.limits == {"memory": str(256 * 1024 * 1024), "cpu": "500m"} == container.resources.requests
    assert container.lifecycle.pre_stop.sleep.seconds == 4
    assert [p.container_port for p in container.ports] == [8080, 9090]
    mounts = {m.mount_path: m for m in container.volume_mounts}
    assert set(mounts) == {"/etc/app/config.toml", "/run/secrets/key"} and all(m.read_only for m in mounts.values())
    refs = {e.name: e.value_from for e in container.env}
    assert refs["DB_PASSWORD"].secret_key_ref.name.startswith("c7-secret-")
    assert refs["GREETING"].config_map_key_ref.name.startswith("c7-config-")
    assert all(e.value is None for e in container.env)  # every value by reference
    assert d.metadata.managed_fields[0].manager == FIELD_MANAGER

    secret = rt.core.read_namespaced_secret(refs["DB_PASSWORD"].secret_key_ref.name, namespace)
    config = rt.core.read_namespaced_config_map(refs["GREETING"].config_map_key_ref.name, namespace)
    assert secret.immutable and config.immutable
    assert sorted(base64.b64decode(v).decode() for v in secret.data.values()) == [SECRET_MARKER, SECRET_MARKER]
    assert sorted(base64.b64decode(v).decode() for v in config.binary_data.values()) == ["hello", "mode = 1\n"]

    service = rt.core.read_namespaced_service("c7", namespace)
    assert [(p.port, p.target_port) for p in service.spec.ports] == [(8080, 8080), (9090, 9090)]
    assert service.spec.selector == {"io.choreo/instance": rt.namespace, "io.choreo/component-id": "7"}
    ingress = rt.networking.read_namespaced_ingress("c7", namespace)
    (rule,) = ingress.spec.rules
    assert ingress.spec.ingress_class_name == rt.ingress_class and rule.host == "web.development.shop.localhost"
    (path,) = rule.http.paths
    assert (path.path, path.path_type, path.backend.service.name, path.backend.service.port.number) == ("/api", "Prefix", "c7", 8080)

    state = rt.service_state(s)
    assert (state.ready, state.desired, state.serving) == (2, 2, True)

    # The secret's value is in its Secret, and in nothing else the API server returns.
    everything = objects(rt, namespace)
    encoded = base64.b64encode(SECRET_MARKER.encode()).decode()
    for kind, items in everything.items():
        for item in items:
            text = json.dumps(item)
            assert SECRET_MARKER not in text, (kind, item["metadata"]["name"])
            if kind != "secrets" or item["metadata"]["name"] != secret.metadata.name:
                assert encoded not in text, (kind, item["metadata"]["name"])
    assert everything["events"], "the cluster recorded events (scheduling, scaling): they were looked at"


def test_a_new_version_then_an_unhealthy_one_that_fails_while_the_old_pods_stay_ready(rt):
    v1 = spec(21, env={"VERSION": "1"})
    rt.service_deploy(v1, previous=None, log=lambda line: None)
    v2 = spec(22, env={"VERSION": "2"})
    rt.service_deploy(v2, previous=v1, log=lambda line: None)
    assert deployment_of(rt, v2).metadata.annotations["io.choreo/deployment"] == "22"
    assert rt.service_state(v2).serving and not rt.service_state(v1).serving

    bad = spec(23, env={"VERSION": "3", "CHOREO_TEST_UNREADY": "yes"}, health={**HEALTH, "startupTimeout": 5.0})
    ready_seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            ready_seen.append(rt.service_state(v2).ready)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    lines = []
    try:
        with pytest.raises(RuntimeFailure) as failed:
            rt.service_deploy(bad, previous=v2, log=lines.append)
    finally:
        stop.set()
        watcher.join()
    message = str(failed.value)
    assert "ProgressDeadlineExceeded" in message and "pods not ready" in message and "Ready False" in message
    assert lines[-1] == "the previous version was applied again; its replicas kept serving"
    # v2's two pods were ready throughout, and serve alone again.
    assert len(ready_seen) > 10 and min(ready_seen) == 2
    d = deployment_of(rt, v2)
    assert d.metadata.annotations["io.choreo/deployment"] == "22"
    deadline = time.monotonic() + 30
    while not rt.service_state(v2).serving or rt.service_state(bad).ready or rt._pods_of(bad, d.metadata.namespace):
        assert time.monotonic() < deadline, rt.service_state(v2)
        time.sleep(0.2)

    # Rollback: an earlier spec applied again, exactly (its configuration made again by name).
    rt.service_deploy(v1, previous=v2, log=lambda line: None)
    assert rt.service_state(v1).serving
    refs = {e.name: e.value_from.config_map_key_ref.name for e in deployment_of(rt, v1).spec.template.spec.containers[0].env}
    first = rt.service_manifests(v1, namespace=d.metadata.namespace)
    assert refs["VERSION"] == next(m["metadata"]["name"] for m in first if m["kind"] == "ConfigMap")


def test_promotion_is_the_same_image_in_another_namespace(rt):
    dev = spec(31)
    prod = spec(32, environment="production", host="web.production.shop.localhost")
    rt.service_deploy(dev, previous=None, log=lambda line: None)
    rt.service_deploy(prod, previous=None, log=lambda line: None)
    dev_ns, prod_ns = rt.namespace_name("shop", "development"), rt.namespace_name("shop", "production")
    assert dev_ns != prod_ns
    images = {deployment_of(rt, s).spec.template.spec.containers[0].image for s in (dev, prod)}
    assert images == {dev.replica.image}
    # Isolation: each namespace admits traffic from itself and the ingress controller only.
    policy = rt.networking.read_namespaced_network_policy("choreo-isolation", prod_ns)
    sources = rt.api.sanitize_for_serialization(policy.spec.ingress[0]._from)
    assert sources == [{"podSelector": {}}, {"namespaceSelector": {"matchLabels": {"ingress": "yes"}}}]


def test_configuration_no_revision_refers_to_is_collected(rt):
    namespace = rt.namespace_name("shop", "development")
    previous = None
    for version in range(6):
        current = spec(40 + version, env={"TOKEN": f"token-{version}"}, secret_names=frozenset({"TOKEN"}))
        rt.service_deploy(current, previous=previous, log=lambda line: None)
        previous = current
    names = {s.metadata.name for s in rt.core.list_namespaced_secret(namespace, label_selector="io.choreo/configuration=true").items}
    revisions = rt.apps.list_namespaced_replica_set(namespace).items
    kept = {rs.spec.template.spec.containers[0].env[0].value_from.secret_key_ref.name for rs in revisions}
    assert names == kept and len(names) <= 4  # the current one and at most 3 older revisions'


def test_reconcile_makes_a_deleted_deployment_and_namespace_again(rt):
    s = spec(51)
    rt.service_deploy(s, previous=None, log=lambda line: None)
    namespace = rt.namespace_name("shop", "development")
    assert rt.service_reconcile(s) == []

    rt.apps.delete_namespaced_deployment("c7", namespace)
    rt.core.delete_namespaced_service("c7", namespace)
    assert rt.service_reconcile(s) == ["Deployment c7", "Service c7"]
    deadline = time.monotonic() + 30
    while not rt.service_state(s).serving:
        assert time.monotonic() < deadline
        time.sleep(0.2)

    rt.networking.delete_namespaced_network_policy("choreo-isolation", namespace)
    assert rt.service_reconcile(s) == ["NetworkPolicy choreo-isolation"]
    assert rt.service_reconcile(s) == []

    rt.environment_remove(project="shop", environment="development", grace=0)
    made = rt.service_reconcile(s)
    assert made[0] == f"Namespace {namespace}" and "Deployment c7" in made and "Ingress c7" in made
    assert deployment_of(rt, s).metadata.annotations["io.choreo/deployment"] == "51"


def test_reconcile_leaves_a_rollout_under_way_alone_and_undoes_a_stray_version(rt):
    """Housekeeping reconciles the active deployment while another may be rolling out: the
    benchmark's upgrades failed with "changed by another rollout" when it put the active
    version back under a rollout."""
    namespace = rt.namespace_name("shop", "development")
    active = spec(91, env={"VERSION": "1"})
    rt.service_deploy(active, previous=None, log=lambda line: None)
    under_way = spec(92, env={"VERSION": "2"})
    rt.apply(*rt.service_manifests(under_way, namespace=namespace))  # as its rollout does first
    assert rt.service_reconcile(active, current=lambda pk: pk == 92) == []
    assert deployment_of(rt, active).metadata.annotations["io.choreo/deployment"] == "92"

    # One that is neither rolling out nor active (a failed rollout not undone) is undone.
    assert rt.service_reconcile(active, current=lambda pk: pk == 0) == []
    assert deployment_of(rt, active).metadata.annotations["io.choreo/deployment"] == "91"
    deadline = time.monotonic() + 30
    while not rt.service_state(active).serving:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_a_write_that_fails_half_way_puts_the_previous_version_back(rt, kubeconfig):
    """The dry run passed, the Deployment was written, then the Ingress's write failed."""

    class IngressFails(KubernetesRuntime):
        refusals = 1

        def _apply_one(self, manifest, *, dry_run):
            if manifest["kind"] == "Ingress" and not dry_run and self.refusals:
                self.refusals -= 1
                raise RuntimeFailure("Kubernetes refused to apply Ingress c7: the test says no")
            super()._apply_one(manifest, dry_run=dry_run)

    old = spec(101, env={"VERSION": "1"})
    rt.service_deploy(old, previous=None, log=lambda line: None)
    failing = IngressFails(rt.namespace, kubeconfig=kubeconfig, ingress_namespace="ingress=yes", poll_interval=0.2)
    lines = []
    with pytest.raises(RuntimeFailure, match="the test says no"):
        failing.service_deploy(spec(102, env={"VERSION": "2"}), previous=old, log=lines.append)
    assert lines[-1] == "the previous version was applied again; its replicas kept serving"
    assert deployment_of(rt, old).metadata.annotations["io.choreo/deployment"] == "101"
    assert rt.service_state(old).serving


def test_strict_validation_refuses_a_bad_object_before_anything_is_made(rt, kubeconfig):
    namespace = rt.namespace_name("shop", "development")

    class WrongField(KubernetesRuntime):
        def service_manifests(self, s, *, namespace):
            manifests = super().service_manifests(s, namespace=namespace)
            deployment = next(m for m in manifests if m["kind"] == "Deployment")
            deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbee"] = {}
            return manifests

    wrong = WrongField(rt.namespace, kubeconfig=kubeconfig, ingress_namespace="ingress=yes")
    with pytest.raises(RuntimeFailure) as refused:
        wrong.service_deploy(spec(61, env={"A": "1"}, secret_names=frozenset({"A"})), previous=None, log=lambda line: None)
    assert "Kubernetes refused to check Deployment" in str(refused.value) and "readinessProbee" in str(refused.value)

    # A host Kubernetes would refuse, from a name the platform allowed.
    with pytest.raises(RuntimeFailure) as refused:
        rt.service_deploy(spec(62, env={"A": "1"}, host="web_1.development.shop.localhost"), previous=None, log=lambda line: None)
    assert "Kubernetes refused to check Ingress" in str(refused.value) and "web_1.development.shop.localhost" in str(refused.value)

    everything = objects(rt, namespace)
    assert everything["deployments"] == [] and everything["services"] == [] and everything["ingresses"] == []
    assert [s["metadata"]["name"] for s in everything["secrets"] if "io.choreo/configuration" in (s["metadata"].get("labels") or {})] == []
    assert everything["configmaps"] == [] or all(c["metadata"]["name"] == "kube-root-ca.crt" for c in everything["configmaps"])


def test_removing_the_service_and_the_environment(rt):
    s = spec(71, env={"A": "1"}, secret_names=frozenset({"A"}))
    rt.service_deploy(s, previous=None, log=lambda line: None)
    namespace = rt.namespace_name("shop", "development")
    rt.service_remove(project="shop", environment="development", component_id=7, grace=1)
    everything = objects(rt, namespace)
    assert everything["deployments"] == [] and everything["services"] == [] and everything["ingresses"] == []
    assert not any("io.choreo/configuration" in (x["metadata"].get("labels") or {}) for x in everything["secrets"])
    rt.environment_remove(project="shop", environment="development", grace=0)
    assert rt.core.list_namespace(label_selector=f"io.choreo/instance={rt.namespace}").items == []


def test_images_come_from_the_registry_as_the_nodes_reach_it_with_its_read_only_credentials(kubeconfig, settings):
    """The pull Secret holds the read-only credentials, never the platform's own (which may
    push and delete): whoever may read Secrets in the namespace gets what it holds."""
    settings.REGISTRY_USERNAME, settings.REGISTRY_PASSWORD = "choreo", "platform-push-password-77"
    settings.KUBERNETES_IMAGE_REGISTRY = "registry.cluster.test:5000"
    rt = KubernetesRuntime(f"choreo-test-{uuid.uuid4().hex[:6]}", kubeconfig=kubeconfig, ingress_namespace="ingress=yes", poll_interval=0.2)
    namespace = rt.namespace_name("shop", "development")

    def every_secret() -> str:  # what every Secret in the namespace holds, decoded
        items = rt.core.list_namespaced_secret(namespace).items
        return "\n".join(base64.b64decode(value).decode(errors="replace") for x in items for value in (x.data or {}).values())

    try:
        # Without read-only credentials: no pull Secret (the nodes pull as they are set up to).
        s = spec(81, image="127.0.0.1:5099/shop/web@sha256:" + "b" * 64)
        rt.service_deploy(s, previous=None, log=lambda line: None)
        pod = deployment_of(rt, s).spec.template.spec
        assert pod.containers[0].image == "registry.cluster.test:5000/shop/web@sha256:" + "b" * 64
        assert not pod.image_pull_secrets
        assert "platform-push-password-77" not in every_secret()

        settings.REGISTRY_PULL_USERNAME, settings.REGISTRY_PULL_PASSWORD = "puller", SECRET_MARKER
        s = spec(82, image="127.0.0.1:5099/shop/web@sha256:" + "c" * 64)
        rt.service_deploy(s, previous=None, log=lambda line: None)
        pod = deployment_of(rt, s).spec.template.spec
        assert [ref.name for ref in pod.image_pull_secrets] == ["choreo-registry"]
        pull = rt.core.read_namespaced_secret("choreo-registry", namespace)
        assert pull.type == "kubernetes.io/dockerconfigjson"
        auths = json.loads(base64.b64decode(pull.data[".dockerconfigjson"]))["auths"]
        assert auths["registry.cluster.test:5000"]["username"] == "puller"
        assert auths["registry.cluster.test:5000"]["password"] == SECRET_MARKER
        assert base64.b64decode(auths["registry.cluster.test:5000"]["auth"]) == f"puller:{SECRET_MARKER}".encode()
        assert SECRET_MARKER in every_secret() and "platform-push-password-77" not in every_secret()
    finally:
        rt.environment_remove(project="shop", environment="development", grace=0)
