"""What the sandbox costs: build and rollout time with the resource limits and the
registry's token authentication, against the same platform without them, in one run.

Starts two whole platforms (`manage.py up`) side by side, each in a fresh data directory:
  - isolated: the defaults. Builds and replicas run with BUILD_* and REPLICA_* limits, and
    the embedded registry takes only the platform's scoped tokens;
  - open:     every limit 0 (none), and REGISTRY_URL naming a registry without any
    authentication that this benchmark starts (what the platform had before issue 10).
Then N times, alternating which goes first: commit a change to the sample service
(examples/hello-service, with two RUN steps added that do real work: a CPU-bound one and
one that starts 500 processes), build it through the API (Engine cache off, so every
step runs), and roll it out to development (a new replica pulled from the registry,
health checked, switched in the ingress). Durations are the platform's own
(started_at to finished_at of the build and of the deployment), so the API's polling
interval does not blur them.

Prints medians and the ratios isolated / open. Usage: .venv/bin/python -m benchmarks.isolation_cost [N]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import requests

from benchmarks.platform import ROOT, free_port, git, running_platform

SAMPLE = ROOT / "examples" / "hello-service"
WORK = """\
RUN python3 -c "import hashlib; [hashlib.sha256(str(i).encode()).digest() for i in range(2_000_000)]"
RUN for i in $(seq 500); do /bin/true; done
"""
NO_LIMITS = {name: "0" for name in ("BUILD_MEMORY", "BUILD_CPUS", "BUILD_PIDS", "REPLICA_MEMORY", "REPLICA_CPUS", "REPLICA_PIDS")}
COMMON = {"BUILD_USE_CACHE": "0", "BUILD_CONCURRENCY": "1", "REGISTRY_GC_INTERVAL": "0"}


@contextmanager
def open_registry():
    """A Distribution registry without authentication, on a port of its own."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-open-registry-"))
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "storage")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    (tmp / "config.yml").write_text(json.dumps(config))
    proc = subprocess.Popen([shutil.which("docker-registry"), "serve", str(tmp / "config.yml")], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise SystemExit("the open registry did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def seconds(run: dict) -> float:
    """How long the platform says a build or deployment ran."""
    return (datetime.fromisoformat(run["finished_at"]) - datetime.fromisoformat(run["started_at"])).total_seconds()


class Subject:
    """One platform with the sample component, and the times measured on it."""

    def __init__(self, name: str, tmp: Path, base: str, session: requests.Session):
        self.name, self.session, self.api = name, session, f"{base}/api"
        self.repo = tmp / "repo"
        shutil.copytree(SAMPLE, self.repo)
        dockerfile = (self.repo / "Dockerfile").read_text()
        (self.repo / "Dockerfile").write_text(dockerfile.replace("COPY app.py", WORK + "COPY app.py"))
        git(self.repo, "init", "-q", "-b", "main")
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", "sample")
        session.post(f"{self.api}/projects/", json={"name": "bench"}).raise_for_status()
        session.post(f"{self.api}/projects/bench/components/", json={"name": "hello", "repository": str(self.repo)}).raise_for_status()
        self.builds: list[float] = []
        self.rollouts: list[float] = []

    def call(self, path: str, body: dict) -> dict:
        response = self.session.post(f"{self.api}/projects/bench/components/hello/{path}", json=body, timeout=600)
        response.raise_for_status()
        return response.json()

    def round(self, i: int, *, measured: bool) -> None:
        (self.repo / "app.py").write_text((SAMPLE / "app.py").read_text() + f"\n# revision {i}\n")
        git(self.repo, "commit", "-q", "-am", f"revision {i}")
        build = self.call("builds/?wait=1", {})
        assert build["status"] == "succeeded", build
        deployment = self.call("deploy/?wait=1", {"build": build["id"], "environment": "development"})
        assert deployment["status"] == "active", deployment
        if measured:
            self.builds.append(seconds(build))
            self.rollouts.append(seconds(deployment))


def main(n: int) -> None:
    subprocess.run([str(ROOT / "scripts" / "base-images.sh"), "python"], check=True)
    with (
        open_registry() as open_url,
        running_platform("bench-isolated-", **COMMON) as isolated_platform,
        running_platform("bench-open-", REGISTRY_URL=open_url, **NO_LIMITS, **COMMON) as open_platform,
    ):
        isolated, plain = Subject("isolated", *isolated_platform), Subject("open", *open_platform)
        for subject in (isolated, plain):  # the first build normalizes the base image's layers once
            subject.round(0, measured=False)
        for i in range(1, n + 1):
            for subject in (isolated, plain) if i % 2 else (plain, isolated):
                subject.round(i, measured=True)

    med = statistics.median
    print(f"machine: {os.uname().nodename}, {os.cpu_count()} cores; {n} builds and rollouts each, alternating")
    figures = [("build (API ?wait=1)", isolated.builds, plain.builds), ("rollout to development", isolated.rollouts, plain.rollouts)]
    for label, a, b in figures:
        print(f"{label}:")
        print(f"  isolated (limits + registry tokens): median {med(a):.2f}s (min {min(a):.2f}, max {max(a):.2f})")
        print(f"  open (no limits, no registry auth):  median {med(b):.2f}s (min {min(b):.2f}, max {max(b):.2f})")
        print(f"  ratio isolated / open: {med(a) / med(b):.3f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
