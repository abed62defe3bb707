"""The Kubernetes runtime (RUNTIME=kubernetes): rollout time and its overhead against the
bare Kubernetes API, the API requests of one rollout, and 100 components in 3 environments.

Starts a control plane of its own (scripts/kube/start.sh: etcd, kube-apiserver,
controller-manager, scheduler and kwok nodes, on free ports, in its own state directory;
stopped at the end) and a whole platform on it (`manage.py up`, RUNTIME=kubernetes), then
measures, in one run:
1. deploy -> active, 1 replica: a static site (busybox httpd on 8080, a public endpoint,
   an http health check) deployed N times to development, alternating two builds, from the
   deploy request to `active` as the API reports it; interleaved with the same rollout done
   directly with the official client (a server-side apply of an equivalent Deployment into
   a namespace of its own, a changed template each round, then waiting for the rollout to
   be complete: observedGeneration >= generation, updated == ready == available == replicas,
   no old replica left), once polling every 0.5 s (the runtime's poll interval) and once
   with a watch. Medians, p90s and platform / bare;
2. API requests per rollout: those `KubernetesRuntime.service_deploy` makes for one new
   version, by verb, against the bare apply and wait's;
3. 100 components x 3 environments (a `staging` added between development and
   production): 100 builds, 100 deploys to development, 100 promotions to staging and 100
   to production: wall time of each phase, failures, the platform's memory before and after
   (its processes: `up` and all it started), and the Deployments the cluster holds then.

kwok runs no container: a pod is Running and Ready as soon as it is scheduled, so these
figures are the control loop's (the platform's and Kubernetes'), not an application's.
There are enough kwok nodes (KUBE_NODES; 32 CPUs each) for every pod at the platform's
default requests (REPLICA_CPUS, 1 core a replica).
BENCH_KUBE_ROLLOUTS (10) and BENCH_KUBE_COMPONENTS (100) shrink it for a dry run.

Usage: .venv/bin/python -m benchmarks.kubernetes
"""

from __future__ import annotations

import math
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.platform import ROOT, free_port, git, running_platform

ROLLOUTS = int(os.environ.get("BENCH_KUBE_ROLLOUTS", "10"))
COMPONENTS = int(os.environ.get("BENCH_KUBE_COMPONENTS", "100"))
POLL = 0.5  # KubernetesRuntime's poll_interval, the bare baseline's too
API_POLL = 0.1  # how often this benchmark asks the platform's API for a deployment's status
KUBE_PORTS = (
    "KUBE_APISERVER_PORT",
    "KUBE_ETCD_PORT",
    "KUBE_ETCD_PEER_PORT",
    "KUBE_KCM_PORT",
    "KUBE_SCHEDULER_PORT",
    "KUBE_KWOK_PORT",
)
SITE = {
    ".choreo/component.yaml": "schemaVersion: 1\ntype: service\n"
    "endpoints:\n  - {name: web, port: 8080, visibility: public}\n"
    "health:\n  http: {path: /, port: 8080}\nreplicas: 1\n",
    "Dockerfile": 'FROM choreo/busybox:1\nCOPY index.html /www/index.html\nCMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n',
    "index.html": "v0\n",
}
FINAL_DEPLOYMENT = ("active", "failed", "superseded", "rolled-back")
FINAL_BUILD = ("succeeded", "failed", "cancelled")
ATTEMPTS = 5  # a rollout that fails is asked for again, as a user would, this many times in all


def kind_of(deployment: dict) -> str:
    """A failed deployment's error without its names and numbers, to count alike ones together."""
    return re.sub(r"[a-z0-9-]+-env-[0-9a-f]+/c\d+", "NS/cN", deployment.get("error") or deployment["status"])[:300]


# ---- the control plane ------------------------------------------------------------------------


@contextmanager
def control_plane(nodes: int):
    """Yield (kubeconfig path, seconds start.sh took) of a plane of this run's own."""
    root = Path(tempfile.mkdtemp(prefix="bench-kube-plane-"))
    env = {**os.environ, "KUBE_STATE": str(root / "state"), "KUBE_NODES": str(nodes), **{p: str(free_port()) for p in KUBE_PORTS}}
    started = time.monotonic()
    try:
        with open(root / "start.log", "w") as out:
            done = subprocess.run([str(ROOT / "scripts/kube/start.sh")], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"scripts/kube/start.sh failed ({done.returncode}):\n{(root / 'start.log').read_text()[-3000:]}")
        yield str(root / "state" / "kubeconfig"), time.monotonic() - started
    finally:
        subprocess.run([str(ROOT / "scripts/kube/stop.sh")], env=env, check=False, timeout=180, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def kube_client(kubeconfig: str):
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


# ---- the bare baseline: the official client, no platform ----------------------------------------


def bare_deployment(namespace: str, round_: int) -> dict:
    """What the platform's Deployment is, written by hand: the same image, strategy
    (maxSurge 100%, maxUnavailable 0), readiness probe and drain; a new template each round."""
    labels = {"app": "bare"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bare", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "progressDeadlineSeconds": 60,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {"bench/round": str(round_)}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 40,
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.bench/site@sha256:" + "b" * 64,
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                            "lifecycle": {"preStop": {"sleep": {"seconds": 30}}},
                        }
                    ],
                },
            },
        },
    }


def rollout_complete(d) -> bool:
    """What `kubectl rollout status` waits for."""
    want, status = d.spec.replicas or 0, d.status
    return (
        (status.observed_generation or 0) >= (d.metadata.generation or 0)
        and (status.updated_replicas or 0) == want
        and (status.ready_replicas or 0) == want
        and (status.available_replicas or 0) == want
        and (status.replicas or 0) == (status.updated_replicas or 0)
    )


def bare_rollout(apps, namespace: str, round_: int, *, watch_it: bool, timeout: float = 120) -> float:
    """Seconds from the apply until the rollout is seen complete (polled every POLL, or watched)."""
    from kubernetes import watch

    started = time.monotonic()
    applied = apps.patch_namespaced_deployment(
        "bare",
        namespace,
        bare_deployment(namespace, round_),
        field_manager="bench",
        force=True,
        _content_type="application/apply-patch+yaml",
        _request_timeout=30,
    )
    deadline = started + timeout
    if watch_it:
        w = watch.Watch()
        for event in w.stream(
            apps.list_namespaced_deployment,
            namespace,
            field_selector="metadata.name=bare",
            resource_version=applied.metadata.resource_version,
            timeout_seconds=int(timeout),
        ):
            if rollout_complete(event["object"]):
                w.stop()
                return time.monotonic() - started
        raise SystemExit(f"the bare rollout {round_} was not complete within {timeout:g}s (watch)")
    while time.monotonic() < deadline:
        time.sleep(POLL)
        if rollout_complete(apps.read_namespaced_deployment("bare", namespace, _request_timeout=30)):
            return time.monotonic() - started
    raise SystemExit(f"the bare rollout {round_} was not complete within {timeout:g}s (poll)")


# ---- counting the API server's requests ------------------------------------------------------------


class RequestCounter:
    """Counts the HTTP requests an ApiClient sends, by verb: GET of one object, LIST of a
    collection, WATCH, PATCH (a dry run apart), DELETE, ..."""

    def __init__(self, api_client):
        self.counts: Counter[str] = Counter()
        rest = api_client.rest_client
        original = rest.request

        def counting(method, url, *args, **kwargs):
            self.counts[self.verb(method, url)] += 1
            return original(method, url, *args, **kwargs)

        rest.request = counting

    @staticmethod
    def verb(method: str, url: str) -> str:
        path, _, query = url.split("://", 1)[-1].partition("/")[2].partition("?")
        parts = path.split("/")
        # /api/v1/... or /apis/GROUP/VERSION/...: after that an even number of segments names one object
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        if method == "GET":
            if "watch=true" in query.lower():
                return "WATCH"
            return "LIST" if len(rest) % 2 else "GET"
        if method == "PATCH" and "dryRun=All" in query:
            return "PATCH (dry run)"
        return method

    def take(self) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        return counts


def by_verb(counts: Counter[str]) -> str:
    order = ["GET", "LIST", "WATCH", "PATCH (dry run)", "PATCH", "POST", "PUT", "DELETE"]
    shown = [f"{verb} {counts[verb]}" for verb in order if counts[verb]]
    return f"{sum(counts.values())} ({', '.join(shown)})"


def count_requests(kubeconfig: str) -> tuple[Counter, Counter, Counter]:
    """The requests of one rollout of a new version: service_deploy's, the bare apply and
    poll's, the bare apply and watch's. Each after a first rollout that made the objects."""
    from django.conf import settings

    if not settings.configured:  # the platform's defaults for what the runtime reads
        settings.configure(
            KUBERNETES_INGRESS_CLASS="nginx",
            KUBERNETES_INGRESS_NAMESPACE="kubernetes.io/metadata.name=ingress-nginx",
            KUBERNETES_IMAGE_REGISTRY="",
            KUBERNETES_JOB_TTL=3600,
            REGISTRY_USERNAME="",
            REGISTRY_PASSWORD="",
        )
    from kubernetes import client

    from deployments.runtimes import Limits, ReplicaSpec, ServiceSpec
    from deployments.runtimes.kubernetes import KubernetesRuntime

    def spec(deployment: int, image: str) -> ServiceSpec:  # as tests/deployments/test_kubernetes_services.py's
        replica = ReplicaSpec(
            project="count",
            environment="development",
            component="web",
            image=image,
            name="c7",
            environment_variables={"GREETING": "hello"},
            labels={"deployment": str(deployment)},
            limits=Limits(memory=256 * 1024 * 1024, cpus=0.5, pids=256),
        )
        public = {"name": "web", "port": 8080, "basePath": "/", "visibility": "public"}
        return ServiceSpec(
            deployment=deployment,
            component_id=7,
            replica=replica,
            replicas=1,
            ports=(8080,),
            health={"http": {"path": "/", "port": 8080}},
            public=public,
            host="web.development.count.localhost",
        )

    rt = KubernetesRuntime("bench-count", kubeconfig=kubeconfig)
    counter = RequestCounter(rt.api)
    first = spec(1, "registry.bench/count/web@sha256:" + "a" * 64)
    rt.service_deploy(first, previous=None, log=lambda line: None)
    counter.take()
    rt.service_deploy(spec(2, "registry.bench/count/web@sha256:" + "c" * 64), previous=first, log=lambda line: None)
    platform = counter.take()
    rt.environment_remove(project="count", environment="development", grace=0)

    api = kube_client(kubeconfig)
    counter = RequestCounter(api)
    apps = client.AppsV1Api(api)
    client.CoreV1Api(api).create_namespace({"metadata": {"name": "bench-count-bare"}})
    bare_rollout(apps, "bench-count-bare", 0, watch_it=False)
    counter.take()
    bare_rollout(apps, "bench-count-bare", 1, watch_it=False)
    polled = counter.take()
    bare_rollout(apps, "bench-count-bare", 2, watch_it=True)
    watched = counter.take()
    return platform, polled, watched


# ---- the platform's side ------------------------------------------------------------------------------


def write_repo(path: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "change")


def processes_of(root: int) -> list[int]:
    """`root` and every process under it (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def platform_pid() -> int:
    """The `manage.py up` this benchmark started (running_platform's child)."""
    for pid in processes_of(os.getpid())[1:]:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 3 and argv[1].endswith(b"manage.py") and argv[2] == b"up":
            return pid
    raise SystemExit("the platform's `manage.py up` process was not found")


def memory(root: int) -> tuple[int, float, float, float]:
    """(processes, RSS MiB of them all, RSS MiB of the Python ones: web, workers, scheduler
    and `up`; PSS MiB of them all, which counts shared pages once)."""
    count, rss, python_rss, pss = 0, 0, 0, 0
    for pid in processes_of(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            pss_kib = int(next(line.split()[1] for line in rollup.splitlines() if line.startswith("Pss:")))
            exe = os.readlink(f"/proc/{pid}/exe")
        except (OSError, StopIteration):
            continue
        count += 1
        rss += kib
        pss += pss_kib
        if "python" in Path(exe).name:
            python_rss += kib
    return count, rss / 1024, python_rss / 1024, pss / 1024


def quantiles(values: list[float]) -> tuple[float, float]:
    """Median and p90 (nearest rank)."""
    ordered = sorted(values)
    return statistics.median(ordered), ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def main() -> None:
    subprocess.run([str(ROOT / "scripts" / "base-images.sh"), "busybox"], check=True, capture_output=True)
    # 3 x COMPONENTS pods and a few more (the first two sections', a rollout's surge). A kwok
    # node has 32 CPUs and 110 pods, and a replica requests REPLICA_CPUS (the platform's
    # default: 1 core), so the CPUs are what runs out: with too few nodes, pods stay Pending
    # and those rollouts fail at their progress deadline (Insufficient cpu).
    per_node = min(110, math.floor(32 / float(os.environ.get("REPLICA_CPUS", "1"))))
    nodes = max(2, math.ceil((3 * COMPONENTS + 10) / per_node) + 1)
    machine = {
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "memory": next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")),
        "kernel": os.uname().release,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    with control_plane(nodes) as (kubeconfig, plane_start):
        from kubernetes import client

        bare_api = kube_client(kubeconfig)
        apps, core = client.AppsV1Api(bare_api), client.CoreV1Api(bare_api)
        with running_platform("bench-kube-", RUNTIME="kubernetes", KUBECONFIG=kubeconfig) as (tmp, base, s):
            api = f"{base}/api"

            def call(method: str, path: str, **kwargs) -> dict:
                response = s.request(method, api + path, timeout=330, **kwargs)
                if response.status_code >= 400:
                    raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:2000]}")
                return response.json()

            def wait_deployments(ids: list[int], timeout: float) -> dict[int, dict]:
                """Poll each until its status is final; {id: deployment}."""
                deadline = time.monotonic() + timeout
                found: dict[int, dict] = {}
                while len(found) < len(ids):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{len(ids) - len(found)} deployments not final within {timeout:g}s")
                    for pk in ids:
                        if pk not in found:
                            d = call("GET", f"/deployments/{pk}/")
                            if d["status"] in FINAL_DEPLOYMENT:
                                found[pk] = d
                    time.sleep(API_POLL if len(ids) == 1 else 0.5)
                return found

            failures: Counter[str] = Counter()  # the platform's failed rollouts, by what they said

            def timed_deploy(component: str, build: int) -> float:
                """Seconds from the deploy request to `active`; a failed rollout is counted in
                `failures` and asked for again (at most ATTEMPTS times), the time is the last one's."""
                for _ in range(ATTEMPTS):
                    started = time.monotonic()
                    body = {"environment": "development", "build": build}
                    d = call("POST", f"/projects/bench/components/{component}/deploy/", json=body)
                    deadline = started + 300
                    while d["status"] not in FINAL_DEPLOYMENT:
                        if time.monotonic() > deadline:
                            raise SystemExit(f"deployment {d['id']} not final within 300s: {d}")
                        time.sleep(API_POLL)
                        d = call("GET", f"/deployments/{d['id']}/")
                    if d["status"] == "active":
                        return time.monotonic() - started
                    failures[kind_of(d)] += 1
                raise SystemExit(f"deployment {d['id']} ended {d['status']} {ATTEMPTS} times: {d.get('error')}")

            # 1. deploy -> active, against the bare client.
            site = tmp / "site"
            site.mkdir()
            git(site, "init", "-q", "-b", "main")
            write_repo(site, SITE)
            call("POST", "/projects/", json={"name": "bench"})
            call("POST", "/projects/bench/components/", json={"name": "site", "repository": str(site)})
            builds = [call("POST", "/projects/bench/components/site/builds/?wait=1", json={})]
            write_repo(site, {"index.html": "v1\n"})
            builds.append(call("POST", "/projects/bench/components/site/builds/?wait=1", json={}))
            for build in builds:
                if build["status"] != "succeeded":
                    raise SystemExit(f"the site did not build: {build}")
            first_deploy = timed_deploy("site", builds[0]["id"])
            core.create_namespace({"metadata": {"name": "bench-bare"}}, _request_timeout=30)
            first_bare = bare_rollout(apps, "bench-bare", 0, watch_it=False)
            platform_times, polled_times, watched_times = [], [], []
            for i in range(ROLLOUTS):
                platform_times.append(timed_deploy("site", builds[(i + 1) % 2]["id"]))
                polled_times.append(bare_rollout(apps, "bench-bare", 2 * i + 1, watch_it=False))
                watched_times.append(bare_rollout(apps, "bench-bare", 2 * i + 2, watch_it=True))

            # 2. requests per rollout.
            counted_platform, counted_polled, counted_watched = count_requests(kubeconfig)

            # 3. COMPONENTS components x 3 environments.
            up = platform_pid()
            call("POST", "/projects/", json={"name": "fleet"})
            call("POST", "/projects/fleet/environments/", json={"name": "staging", "after": "development"})
            environments = [e["name"] for e in call("GET", "/projects/fleet/environments/")]
            fleet = tmp / "fleet-site"
            fleet.mkdir()
            git(fleet, "init", "-q", "-b", "main")
            write_repo(fleet, SITE)
            names = [f"s{i:03d}" for i in range(COMPONENTS)]
            before = memory(up)
            for name in names:
                call("POST", "/projects/fleet/components/", json={"name": name, "repository": str(fleet)})

            started = time.monotonic()
            build_ids = [call("POST", f"/projects/fleet/components/{name}/builds/", json={})["id"] for name in names]
            done: dict[int, dict] = {}
            deadline = started + 120 * COMPONENTS + 300
            while len(done) < len(build_ids):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{len(build_ids) - len(done)} builds not final in time")
                for pk in build_ids:
                    if pk not in done:
                        b = call("GET", f"/builds/{pk}/")
                        if b["status"] in FINAL_BUILD:
                            done[pk] = b
                time.sleep(1)
            build_wall = time.monotonic() - started
            build_failures = [b for b in done.values() if b["status"] != "succeeded"]

            phases = []  # (what, wall seconds, failed rollouts by what they said, rounds)
            expected: dict[tuple[str, str], int] = {}  # (environment, component): its active deployment
            steps = [
                ("deploy to development", "deploy", {"environment": environments[0]}),
                *((f"promote {a} -> {b}", "promote", {"from": a, "to": b}) for a, b in zip(environments, environments[1:], strict=False)),
            ]
            for what, action, body in steps:
                started = time.monotonic()
                failed: Counter[str] = Counter()
                todo = list(zip(names, build_ids, strict=True))
                rounds = 0
                while todo and rounds < ATTEMPTS:  # a failed rollout is asked for again
                    rounds += 1
                    ids = {}
                    for name, pk in todo:
                        extra = {"build": pk} if action == "deploy" else {}
                        ids[call("POST", f"/projects/fleet/components/{name}/{action}/", json={**body, **extra})["id"]] = (name, pk)
                    ended = wait_deployments(list(ids), timeout=60 * len(ids) + 300)
                    target = body.get("environment") or body["to"]
                    for pk, d in ended.items():
                        if d["status"] == "active":
                            expected[(target, ids[pk][0])] = pk
                        else:
                            failed[kind_of(d)] += 1
                    todo = [ids[pk] for pk, d in ended.items() if d["status"] != "active"]
                if todo:
                    raise SystemExit(f"{what}: {len(todo)} still not active after {ATTEMPTS} attempts: {failed}")
                phases.append((what, time.monotonic() - started, failed, rounds))
            after = memory(up)

            selector = "io.choreo/project=fleet"
            namespaces = core.list_namespace(label_selector=selector, _request_timeout=30).items
            per_namespace = []
            for ns in namespaces:
                deployments = apps.list_namespaced_deployment(ns.metadata.name, _request_timeout=60).items
                environment = (ns.metadata.labels or {}).get("io.choreo/environment", ns.metadata.name)
                ready = sum(1 for d in deployments if rollout_complete(d))
                # The version the cluster runs against the one the platform says is active.
                stale = sum(
                    1
                    for d in deployments
                    if (d.metadata.annotations or {}).get("io.choreo/deployment")
                    != str(expected.get((environment, (d.metadata.labels or {}).get("io.choreo/component"))))
                )
                per_namespace.append(f"{environment}: {len(deployments)} ({ready} complete, {stale} not the active version)")
            pods = len(core.list_pod_for_all_namespaces(label_selector=selector, _request_timeout=60).items)

            started = time.monotonic()
            deleted = s.delete(f"{api}/projects/fleet/", timeout=900)
            delete_time = time.monotonic() - started

    med_p, p90_p = quantiles(platform_times)
    med_b, p90_b = quantiles(polled_times)
    med_w, p90_w = quantiles(watched_times)
    memory_kib = int(machine["memory"])
    print(
        f"machine: nproc {machine['nproc']}, {memory_kib / 1024 / 1024:.1f} GiB memory, kernel {machine['kernel']}; {machine['date']}; "
        f"control plane (kube v1.36.3, {nodes} kwok nodes) started in {plane_start:.1f}s"
    )
    print(
        f"1. deploy -> active, 1 replica, {ROLLOUTS} rollouts alternating two builds (first deploy, namespace made: {first_deploy:.2f}s; "
        f"bare first apply: {first_bare:.2f}s):"
    )
    print(f"   platform (request to `active` in the API, polled every {API_POLL:g}s): median {med_p:.2f}s, p90 {p90_p:.2f}s")
    for what, med, p90 in ((f"apply + poll every {POLL:g}s", med_b, p90_b), ("apply + watch", med_w, p90_w)):
        print(f"   bare {what}: median {med:.2f}s, p90 {p90:.2f}s; platform/bare = {med_p / med:.2f}x (p90 {p90_p / p90:.2f}x)")
    print(f"   platform rollouts that failed and were asked for again (timed: the attempt that became active): {sum(failures.values())}")
    for error, n in failures.most_common():
        print(f"     {n} x {error}")
    print("   platform: " + " ".join(f"{t:.2f}" for t in platform_times))
    print("   poll:     " + " ".join(f"{t:.2f}" for t in polled_times))
    print("   watch:    " + " ".join(f"{t:.2f}" for t in watched_times))
    print("2. API requests for one rollout of a new version (after a first one made the objects):")
    print(f"   KubernetesRuntime.service_deploy: {by_verb(counted_platform)}")
    print(f"   bare apply + poll every {POLL:g}s:   {by_verb(counted_polled)}")
    print(f"   bare apply + watch:              {by_verb(counted_watched)}")
    print(f"3. {COMPONENTS} components x {len(environments)} environments ({', '.join(environments)}):")
    first_error = f" (first: {build_failures[0].get('error')})" if build_failures else ""
    print(f"   {COMPONENTS} builds: {build_wall:.1f}s wall, {len(build_failures)} failed{first_error}")
    for what, wall, failed, rounds in phases:
        print(
            f"   {COMPONENTS} x {what}: {wall:.1f}s wall, {wall / COMPONENTS:.2f}s per component, "
            f"{sum(failed.values())} rollouts failed ({rounds} round(s) of requests until all active)"
        )
        for error, n in failed.most_common():
            print(f"     {n} x {error}")
    print(
        f"   platform memory ({before[0]} -> {after[0]} processes: `up` and everything under it): "
        f"RSS {before[1]:.0f} MiB -> {after[1]:.0f} MiB (Python processes: web, workers, scheduler, up: "
        f"{before[2]:.0f} -> {after[2]:.0f} MiB); PSS {before[3]:.0f} -> {after[3]:.0f} MiB"
    )
    print(f"   in the cluster then: {len(namespaces)} namespaces, Deployments {'; '.join(per_namespace)}; {pods} pods")
    print(f"   deleting the project (its namespaces, waited until gone): {delete_time:.1f}s, HTTP {deleted.status_code}")


if __name__ == "__main__":
    main()
