"""Start overhead of a task: from its execution being enqueued to its process running,
against a plain `docker run` of the same image at the same concurrency, in one run; and
against `docker run` in the environment's own network, where the platform starts it (a
container in a user-defined bridge network takes the Engine longer to start).

The task prints the host's /proc/uptime (it is not namespaced), so both sides are timed
by one clock: for the platform, from the execution's created_at (it is enqueued as its
row commits) to that first line; for `docker run`, from the moment the command is
started to that line. Rounds alternate which side goes first.

Prints medians and the ratio platform / docker run, for concurrency 1 and 2 (the
platform's TASK_CONCURRENCY). Usage: .venv/bin/python -m benchmarks.task_start [ROUNDS]
"""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from benchmarks.platform import ROOT, deployed_task, running_platform

DESCRIPTOR = "schemaVersion: 1\ntype: manual-task\n"


def uptime_to_wall() -> float:
    """What to add to a /proc/uptime reading to get the wall clock."""
    with open("/proc/uptime") as f:
        return time.time() - float(f.read().split()[0])


def platform_round(base: str, session, concurrency: int, offset: float) -> list[float]:
    api = f"{base}/api"
    made = [
        session.post(f"{api}/projects/bench/components/job/executions/", json={"environment": "development"}, timeout=30).json()
        for _ in range(concurrency)
    ]
    overheads = []
    for execution in made:
        deadline = time.monotonic() + 120
        while True:
            current = session.get(f"{api}/executions/{execution['id']}/", timeout=30).json()
            if current["status"] not in ("queued", "running"):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"execution {execution['id']} did not finish")
            time.sleep(0.1)
        if current["status"] != "succeeded":
            raise SystemExit(f"execution failed: {current}")
        log = session.get(f"{api}/executions/{execution['id']}/logs/", timeout=30).text
        uptime = next(float(line.split()[0]) for line in log.splitlines() if line and line[0].isdigit())
        overheads.append(uptime + offset - datetime.fromisoformat(current["triggered_at"]).timestamp())
    return overheads


def docker_round(image: str, concurrency: int, offset: float, network: str = "") -> list[float]:
    def one(_):
        started = time.time()
        argv = ["docker", "run", "--rm", *(["--network", network] if network else []), image]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        return float(out.split()[0]) + offset - started

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(concurrency)))


def main(rounds: int) -> None:
    subprocess.run([str(ROOT / "scripts" / "base-images.sh"), "busybox"], check=True)
    offset = uptime_to_wall()
    results = {}
    with running_platform("bench-task-start-", TASK_CONCURRENCY="2", REGISTRY_GC_INTERVAL="0") as (tmp, base, session):
        deployment = deployed_task(tmp, base, session, descriptor=DESCRIPTOR, command='["cat", "/proc/uptime"]')
        image = deployment["image"]
        subprocess.run(["docker", "pull", image], capture_output=True, check=False)  # present already: the platform ran it
        platform_round(base, session, 1, offset)  # warm: the first run pulls nothing, but fills the caches
        docker_round(image, 1, offset)
        # Made by the platform for the environment when it first ran the task.
        namespace = "choreo-" + hashlib.sha256(str(tmp / "data").encode()).hexdigest()[:10]
        labels = [f"label=io.choreo.instance={namespace}", "label=io.choreo.project=bench", "label=io.choreo.environment=development"]
        listed = subprocess.run(
            ["docker", "network", "ls", "-q", *(a for label in labels for a in ("--filter", label))], capture_output=True, text=True
        )
        network = listed.stdout.split()[0]
        kinds = ["platform", "docker run", "docker run in the network"]

        def sample(kind: str, concurrency: int) -> list[float]:
            if kind == "platform":
                return platform_round(base, session, concurrency, offset)
            return docker_round(image, concurrency, offset, network if kind.endswith("network") else "")

        for concurrency in (1, 2):
            found: dict[str, list[float]] = {kind: [] for kind in kinds}
            for i in range(rounds):
                for kind in kinds[i % 3 :] + kinds[: i % 3]:  # each goes first in turn
                    found[kind] += sample(kind, concurrency)
            results[concurrency] = found
    med = statistics.median
    print(f"machine: {os.uname().nodename}, {os.cpu_count()} cores; {rounds} rounds each, alternating; busybox `cat /proc/uptime`")

    def figures(values: list[float]) -> str:
        return f"median {med(values) * 1000:.0f} ms (min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f})"

    for concurrency, found in results.items():
        ours, plain, networked = found["platform"], found["docker run"], found["docker run in the network"]
        print(f"concurrency {concurrency}:")
        print(f"  platform (enqueued → process running): {figures(ours)}")
        print(f"  docker run (command → process running): {figures(plain)}")
        print(f"  docker run --network <the environment's network>: {figures(networked)}")
        print(f"  ratio platform / docker run: {med(ours) / med(plain):.2f}x")
        print(f"  ratio platform / docker run in the same network: {med(ours) / med(networked):.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
