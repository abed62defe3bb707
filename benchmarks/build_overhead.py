"""What the platform adds on top of a raw image build, measured side by side in one run.

Starts a whole platform (`manage.py up`) in a fresh data directory, then for N commits of
the sample service (examples/hello-service, FROM choreo/python:3.11):
  - platform: POST /api/.../builds/?wait=1 (checkout, descriptor, build, scan, reproducible
    assembly, push), with the Engine's build cache off so every step runs;
  - plain:    `docker build --no-cache` of the same checkout (the same legacy builder).
Then N rebuilds of an already built commit through the API, against a plain
`docker build` whose every step is cached.

Prints medians and ratios. Usage: make bench   (or: python benchmarks/build_overhead.py N)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "hello-service"
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@l", "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@l"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True, capture_output=True, text=True
    ).stdout.strip()


def spread(times: list[float]) -> str:
    return f"(min {min(times):.2f}, max {max(times):.2f})"


def timed(func) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def main(n: int) -> None:
    subprocess.run([str(ROOT / "scripts" / "base-images.sh"), "python"], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    repo = tmp / "repo"
    shutil.copytree(SAMPLE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "sample")
    web, reg = free_port(), free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp / "data"),
        "WEB_PORT": str(web),
        "REGISTRY_PORT": str(reg),
        "DATABASE_URL": f"sqlite:///{tmp}/data/db.sqlite3",
        "ADMIN_PASSWORD": "bench-password",
        "BUILD_USE_CACHE": "0",
        "BUILD_CONCURRENCY": "1",
        "DEMO": "0",
        "PYTHONPATH": str(ROOT),
    }
    log = open(tmp / "platform.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "up"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        api = f"http://127.0.0.1:{web}/api"
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{web}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"platform did not start, see {tmp}/platform.log")
            time.sleep(0.3)
        token = requests.post(f"{api}/auth/token/", json={"username": "admin", "password": "bench-password"}, timeout=10).json()["token"]
        s = requests.Session()
        s.headers["Authorization"] = f"Token {token}"
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
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["docker", "rmi", "-f", "bench-plain:latest"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
