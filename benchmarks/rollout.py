"""Rollouts under load, the ingress's overhead, and promotion against rebuilding.

Starts a whole platform (`manage.py up`) in a temporary data directory, then measures,
in one run, with wrk (keep-alive connections, no retries) on this machine:
1. rollouts: requests, failures (non-2xx and socket errors) and p50/p99 latency while
   20 consecutive rollouts alternate between two builds of a static site;
2. ingress overhead: (a) the sample service (examples/hello-service) directly vs through
   the ingress; (b) a trivial backend (busybox httpd) directly, through a bare HAProxy
   with a minimal configuration, and through the platform's ingress;
3. promotion: request to serving in production, against a fresh build plus deploy of the
   same commit.

Usage: .venv/bin/python -m benchmarks.rollout [ROLLOUTS]
"""

from __future__ import annotations

import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

from benchmarks.platform import ROOT, free_port, git, running_platform

# A fast static server that keeps connections alive (busybox httpd closes every
# connection, and a new connection per request exhausts this machine's ephemeral ports
# within seconds, which would measure the kernel, not the proxies).
NGINX_IMAGE = "choreo-bench/nginx:1"
NGINX_DOCKERFILE = """\
FROM choreo/python:3.11
RUN apt-get update -q && apt-get install -y -q --no-install-recommends nginx-light && rm -rf /var/lib/apt/lists/*
RUN mkdir -p /www && echo ok > /www/index.html && printf '%s' \\
    'worker_processes 1; error_log stderr; pid /tmp/nginx.pid; events { worker_connections 4096; } \\
    http { access_log off; keepalive_requests 1000000; server { listen 8080; root /www; } }' > /etc/nginx/nginx.conf
CMD ["nginx", "-g", "daemon off;"]
"""
STATIC = {
    ".choreo/component.yaml": "schemaVersion: 1\ntype: service\nendpoints:\n  - {name: web, port: 8080}\n"
    "health:\n  http: {path: /, port: 8080}\n  interval: 200ms\nreplicas: 1\n",
    "Dockerfile": f"FROM {NGINX_IMAGE}\nCOPY index.html /www/index.html\n",
    "index.html": "v0\n",
}


def ensure_nginx_image() -> None:
    client = docker.from_env()
    try:
        client.images.get(NGINX_IMAGE)
    except docker.errors.ImageNotFound:
        client.images.build(fileobj=io.BytesIO(NGINX_DOCKERFILE.encode()), tag=NGINX_IMAGE, rm=True)


WRK = ["wrk", "-t2", "-c32", "--latency"]
ROUNDS = 3  # interleaved rounds per overhead figure: medians, as the machine is noisy


def wrk(url: str, seconds: float, host: str | None = None) -> dict:
    args = [*WRK, f"-d{max(int(seconds), 1)}s"]
    if host:
        args += ["-H", f"Host: {host}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> dict:
    def number(pattern: str, default: float = 0.0) -> float:
        match = re.search(pattern, out)
        return float(match.group(1)) if match else default

    def ms(label: str) -> float:
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        if not match:
            return float("nan")
        return float(match.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[match.group(2)]

    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    errors_line = next((line.strip() for line in out.splitlines() if "Socket errors" in line), "no socket errors")
    return {
        "errors_line": errors_line,
        "requests": int(number(r"(\d+) requests in")),
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "non2xx": int(number(r"Non-2xx or 3xx responses: (\d+)")),
        "socket_errors": socket_errors,
        "p50": ms("50"),
        "p99": ms("99"),
    }


def write_repo(path: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "change")


def main(rollouts: int) -> None:
    subprocess.run([str(ROOT / "scripts" / "base-images.sh"), "busybox", "python"], check=True)
    ensure_nginx_image()
    with running_platform("bench-rollout-", BUILD_CONCURRENCY="1", ROLLOUT_STOP_GRACE="1") as (tmp, base, s):
        api = f"{base}/api"
        static, sample = tmp / "static", tmp / "sample"
        static.mkdir()
        git(static, "init", "-q", "-b", "main")
        write_repo(static, STATIC)
        shutil.copytree(ROOT / "examples" / "hello-service", sample)
        descriptor = sample / ".choreo" / "component.yaml"
        # One replica, so that "direct" and "through the ingress" reach the same process.
        descriptor.write_text(descriptor.read_text().replace("replicas: 2", "replicas: 1"))
        git(sample, "init", "-q", "-b", "main")
        write_repo(sample, {})
        s.post(f"{api}/projects/", json={"name": "bench"}).raise_for_status()
        for name, repo in (("static", static), ("hello", sample)):
            s.post(f"{api}/projects/bench/components/", json={"name": name, "repository": str(repo)}).raise_for_status()

        def call(method, path, **kwargs):
            response = s.request(method, api + path, timeout=330, **kwargs)
            response.raise_for_status()
            return response.json()

        builds = [call("POST", "/projects/bench/components/static/builds/?wait=1", json={})]
        write_repo(static, {"index.html": "v1\n"})
        builds.append(call("POST", "/projects/bench/components/static/builds/?wait=1", json={}))
        first = call("POST", "/projects/bench/components/static/deploy/?wait=1", json={"build": builds[0]["id"]})
        assert first["status"] == "active", first
        url = first["urls"][0]
        host, ingress_port = url.split("/")[2].split(":")[0], int(url.split("/")[2].split(":")[1])
        ingress = f"http://127.0.0.1:{ingress_port}/"

        # 1. rollouts under load: time one, measure the same load without rollouts (the
        # baseline), then run wrk across all of them.
        started = time.monotonic()
        one = call("POST", "/projects/bench/components/static/deploy/?wait=1", json={"build": builds[1]["id"]})
        per_rollout = time.monotonic() - started
        assert one["status"] == "active", one
        duration = int(per_rollout * rollouts * 1.5 + 10)
        steady = wrk(ingress, min(duration, 30), host=host)
        wrk_proc = subprocess.Popen([*WRK, f"-d{duration}s", "-H", f"Host: {host}", ingress], stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        rollout_times = []
        for i in range(rollouts):
            started = time.monotonic()
            d = call("POST", "/projects/bench/components/static/deploy/?wait=1", json={"build": builds[i % 2]["id"]})
            rollout_times.append(time.monotonic() - started)
            assert d["status"] == "active", d
        wrk_proc.send_signal(2)  # wrk prints its summary on SIGINT
        under_load = parse_wrk(wrk_proc.communicate(timeout=60)[0])

        # 2. ingress overhead.
        client = docker.from_env()

        def replica_address(component: str, environment: str = "development") -> str:
            containers = client.containers.list(filters={"label": [f"io.choreo.component={component}", "io.choreo.project=bench"]})
            networks = containers[0].attrs["NetworkSettings"]["Networks"]
            return next(iter(networks.values()))["IPAddress"]

        hello_build = call("POST", "/projects/bench/components/hello/builds/?wait=1", json={})
        hello = call("POST", "/projects/bench/components/hello/deploy/?wait=1", json={"build": hello_build["id"]})
        hello_host = hello["urls"][0].split("/")[2].split(":")[0]
        sample_direct, sample_ingress = [], []
        for _ in range(ROUNDS):
            sample_direct.append(wrk(f"http://{replica_address('hello')}:8080/", 5))
            sample_ingress.append(wrk(ingress, 5, host=hello_host))

        trivial = client.containers.run(NGINX_IMAGE, detach=True, remove=True)
        trivial.reload()
        trivial_ip = trivial.attrs["NetworkSettings"]["IPAddress"]
        bare_port = free_port()
        bare_dir = Path(tempfile.mkdtemp(prefix="bench-haproxy-"))
        (bare_dir / "haproxy.cfg").write_text(
            f"global\n    maxconn 4000\ndefaults\n    mode http\n    timeout connect 3s\n    timeout client 60s\n    timeout server 60s\n"
            f"frontend f\n    bind 127.0.0.1:{bare_port}\n    default_backend b\nbackend b\n    server s {trivial_ip}:8080\n"
        )
        bare = subprocess.Popen(
            ["haproxy", "-db", "-f", str(bare_dir / "haproxy.cfg")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(1)
        # The platform's ingress routes the trivial backend through a slot of its own.
        route = call("POST", "/projects/bench/components/static/deploy/?wait=1", json={"build": builds[0]["id"]})
        assert route["status"] == "active"
        trivial_direct, trivial_bare, trivial_ingress = [], [], []
        try:
            for _ in range(ROUNDS):
                trivial_direct.append(wrk(f"http://{trivial_ip}:8080/", 5))
                trivial_bare.append(wrk(f"http://127.0.0.1:{bare_port}/", 5))
                trivial_ingress.append(wrk(ingress, 5, host=host))
        finally:
            bare.terminate()
            trivial.remove(force=True)
            shutil.rmtree(bare_dir, ignore_errors=True)

        # 3. promotion vs a fresh build plus deploy of the same commit.
        started = time.monotonic()
        promoted = call("POST", "/projects/bench/components/static/promote/?wait=1", json={"from": "development", "to": "production"})
        promotion = time.monotonic() - started
        assert promoted["status"] == "active", promoted
        s.post(f"{api}/projects/bench/components/", json={"name": "static2", "repository": str(static)}).raise_for_status()
        started = time.monotonic()
        fresh = call("POST", "/projects/bench/components/static2/builds/?wait=1", json={})
        fresh_deploy = call("POST", "/projects/bench/components/static2/deploy/?wait=1", json={"build": fresh["id"]})
        rebuild_and_deploy = time.monotonic() - started
        assert fresh_deploy["status"] == "active"

    rps = {
        name: statistics.median(r["rps"] for r in runs)
        for name, runs in {
            "sample_direct": sample_direct,
            "sample_ingress": sample_ingress,
            "trivial_direct": trivial_direct,
            "trivial_bare": trivial_bare,
            "trivial_ingress": trivial_ingress,
        }.items()
    }
    print(f"machine: {os.uname().nodename}, {os.cpu_count()} cores; wrk -t2 -c32 keep-alive, load generator on the same machine")
    print(
        f"1. baseline, no rollout: {steady['requests']} requests at {steady['rps']:.0f}/s, {steady['non2xx']} non-2xx, "
        f"{steady['errors_line']}; p50 {steady['p50']:.2f} ms, p99 {steady['p99']:.2f} ms"
    )
    print(
        f"   {rollouts} consecutive rollouts (1 replica each) under the same load: {under_load['requests']} requests "
        f"at {under_load['rps']:.0f}/s, {under_load['non2xx']} non-2xx, {under_load['errors_line']}; "
        f"p50 {under_load['p50']:.2f} ms, p99 {under_load['p99']:.2f} ms; rollout median {statistics.median(rollout_times):.2f}s"
    )
    print(
        f"2a. sample service (1 replica), medians of {ROUNDS} interleaved 5 s runs: direct {rps['sample_direct']:.0f}/s, "
        f"through the ingress {rps['sample_ingress']:.0f}/s = {rps['sample_ingress'] / rps['sample_direct']:.2f}x"
    )
    print(
        f"2b. trivial backend (nginx, static file), medians of {ROUNDS}: direct {rps['trivial_direct']:.0f}/s, "
        f"bare HAProxy {rps['trivial_bare']:.0f}/s, platform ingress {rps['trivial_ingress']:.0f}/s; "
        f"ingress / bare HAProxy = {rps['trivial_ingress'] / rps['trivial_bare']:.2f}x, "
        f"bare HAProxy / direct = {rps['trivial_bare'] / rps['trivial_direct']:.2f}x"
    )
    print(
        f"3. promotion to serving in production: {promotion:.2f}s; fresh build + deploy of the same commit: {rebuild_and_deploy:.2f}s "
        f"= {promotion / rebuild_and_deploy:.2f}x"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
