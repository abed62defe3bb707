"""What the platform adds on top of a raw image build, measured side by side in one run.

Starts a whole platform (`manage.py up`) in a fresh data directory, then for N commits of
the sample service (examples/hello-service, FROM choreo/python:3.11):
  - platform: POST /api/.../builds/?wait=1 (checkout, descriptor, build, scan, reproducible
    assembly, push), with the Engine's build cache off so every step runs;
  - plain:    `docker build --no-cache` of the same checkout (the same legacy builder).
Then N rebuilds of an already built commit through the API, against a plain
`docker build` whose every step is cached.

Prints medians and ratios. Usage: make bench   (or: .venv/bin/python -m benchmarks.build_overhead [N])
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

from benchmarks.platform import ROOT, git, running_platform

SAMPLE = ROOT / "examples" / "hello-service"


def spread(times: list[float]) -> str:
    return f"(min {min(times):.2f}, max {max(times):.2f})"


def timed(func) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def main(n: int) -> None:
    subprocess.run([str(ROOT / "scripts" / "base-images.sh"), "python"], check=True)
    with running_platform("bench-build-", BUILD_USE_CACHE="0", BUILD_CONCURRENCY="1") as (tmp, base, s):
        repo = tmp / "repo"
        shutil.copytree(SAMPLE, repo)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "sample")
        api = f"{base}/api"
        s.post(f"{api}/projects/", json={"name": "bench"}).raise_for_status()
        s.post(f"{api}/projects/bench/components/", json={"name": "hello", "repository": str(repo)}).raise_for_status()

        def platform_build():
            body = s.post(f"{api}/projects/bench/components/hello/builds/?wait=1", json={}, timeout=330).json()
            assert body["status"] == "succeeded", body

        def plain_build(cache: bool):
            args = ["docker", "build", "-q", "-t", "bench-plain:latest", str(repo)]
            if not cache:
                args.insert(2, "--no-cache")
            subprocess.run(args, env={**os.environ, "DOCKER_BUILDKIT": "0"}, check=True, capture_output=True)

        first = timed(platform_build)  # also normalizes the base image's layers once
        platform_times, plain_times = [], []
        for i in range(n):
            (repo / "app.py").write_text((SAMPLE / "app.py").read_text() + f"\n# revision {i}\n")
            git(repo, "commit", "-q", "-am", f"revision {i}")
            plain_times.append(timed(lambda: plain_build(cache=False)))
            platform_times.append(timed(platform_build))
        rebuild_times = [timed(platform_build) for _ in range(n)]
        plain_cached = [timed(lambda: plain_build(cache=True)) for _ in range(n)]
        subprocess.run(["docker", "rmi", "-f", "bench-plain:latest"], capture_output=True)

    med = statistics.median
    print(f"machine: {os.uname().nodename}, {os.cpu_count()} cores; docker build via the legacy builder; {n} runs each")
    print(f"first platform build FROM a new base image (normalizes its layers once): {first:.2f}s")
    print(f"plain docker build --no-cache:         median {med(plain_times):.2f}s  {spread(plain_times)}")
    print(f"platform build, API ?wait=1, no cache: median {med(platform_times):.2f}s  {spread(platform_times)}")
    ratio = med(platform_times) / med(plain_times)
    print(f"  ratio platform / plain: {ratio:.2f}x, overhead {med(platform_times) - med(plain_times):+.2f}s")
    print(f"rebuild of an already built commit, API ?wait=1: median {med(rebuild_times):.3f}s")
    print(f"plain docker build with every step cached:      median {med(plain_cached):.3f}s")
    print(f"  ratio rebuild / cached plain build: {med(rebuild_times) / med(plain_cached):.2f}x")
    print(f"  ratio rebuild / fresh platform build: {med(rebuild_times) / med(platform_times):.3f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
