"""The web tier under load: `GET /api/projects/` at 32 keep-alive connections.

Starts a whole platform (`manage.py up`), then, in one run on this machine, interleaves
rounds of wrk against:
- the platform's web tier (the HAProxy front over WEB_WORKERS gunicorn processes), and
- the baseline: gunicorn with 4 sync workers serving the same WSGI application, the same
  database and settings, bound directly to a port.
It prints requests/s and p50/p99 of each (medians of the rounds), and the ratio.

While the platform is under load, a WebSocket follows the live log of a build that prints
a line a second, and the benchmark reports how many lines arrived during each round and the
longest gap between two of them.

Usage: .venv/bin/python -m benchmarks.web_tier [ROUNDS] [SECONDS]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import websocket

from benchmarks.platform import PASSWORD, ROOT, free_port, git, running_platform
from benchmarks.rollout import parse_wrk

CONNECTIONS = 32
CHATTY = {
    ".choreo/component.yaml": "schemaVersion: 1\ntype: service\n",
    "Dockerfile": 'FROM choreo/busybox:1\nRUN for i in $(seq 1 600); do echo "tick $i"; sleep 1; done\n',
}


def wrk(url: str, seconds: int, token: str) -> dict:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-H", f"Authorization: Token {token}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(out)


class LogFollower(threading.Thread):
    """A WebSocket on a build's live log, as the build page opens it, recording when each
    line arrives."""

    def __init__(self, base: str, stream: str):
        super().__init__(daemon=True)
        browser = requests.Session()
        browser.get(f"{base}/login/")
        browser.post(
            f"{base}/login/",
            data={"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            headers={"Referer": f"{base}/login/"},
        )
        cookies = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
        self.ws = websocket.create_connection(
            f"ws://{base.split('//', 1)[1]}/ws/logs/{stream}/?offset=0", header=[f"Cookie: {cookies}"], origin=base, timeout=600
        )
        self.arrivals: list[float] = []

    def run(self) -> None:
        try:
            while True:
                message = json.loads(self.ws.recv())
                if message.get("type") == "lines":
                    self.arrivals.extend(time.monotonic() for line in message["lines"] if "tick" in line["text"])
                elif message.get("type") == "end":
                    return
        except (websocket.WebSocketException, OSError):
            return

    def during(self, start: float, end: float) -> tuple[int, float]:
        inside = [t for t in self.arrivals if start <= t <= end]
        gaps = [b - a for a, b in zip([start, *inside], [*inside, end], strict=True)]
        return len(inside), max(gaps)


def main(rounds: int = 3, seconds: int = 10) -> None:
    subprocess.run([str(ROOT / "scripts" / "base-images.sh"), "busybox"], check=True)
    with running_platform("bench-web-") as (tmp, base, session):
        token = session.headers["Authorization"].split()[1]
        for i in range(20):
            session.post(f"{base}/api/projects/", json={"name": f"p{i}"}).raise_for_status()
        repo = Path(tempfile.mkdtemp(prefix="bench-web-repo-"))
        git(repo, "init", "-q", "-b", "main")
        for name, text in CHATTY.items():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(text)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "chatty")
        session.post(f"{base}/api/projects/p0/components/", json={"name": "chatty", "repository": str(repo)}).raise_for_status()
        build = session.post(f"{base}/api/projects/p0/components/chatty/builds/", json={}).json()
        follower = LogFollower(base, f"build-{build['id']}")
        follower.start()
        deadline = time.monotonic() + 120
        while not follower.arrivals:
            status = session.get(f"{base}/api/builds/{build['id']}/").json()["status"]
            if status not in ("queued", "running") or time.monotonic() > deadline:
                raise SystemExit(f"the chatty build is {status} and printed nothing: see {base}/api/builds/{build['id']}/logs/")
            time.sleep(0.2)

        port = free_port()
        env = {**os.environ, "DATA_DIR": str(tmp / "data"), "DATABASE_URL": f"sqlite:///{tmp}/data/db.sqlite3", "PYTHONPATH": str(ROOT)}
        baseline = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "4", "-k", "sync", "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
            + ["choreo_site.wsgi:application"],
            cwd=ROOT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    requests.get(f"http://127.0.0.1:{port}/login/", timeout=2)
                    break
                except requests.RequestException:
                    assert time.monotonic() < deadline, "the baseline gunicorn did not start"
                    time.sleep(0.2)
            results = {"platform": [], "baseline": []}
            live = []
            for _ in range(rounds):
                results["baseline"].append(wrk(f"http://127.0.0.1:{port}/api/projects/", seconds, token))
                began = time.monotonic()
                results["platform"].append(wrk(f"{base}/api/projects/", seconds, token))
                live.append(follower.during(began, time.monotonic()))
        finally:
            baseline.terminate()
            baseline.wait(30)
            session.post(f"{base}/api/builds/{build['id']}/cancel/")

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print(f"GET /api/projects/ (20 projects), wrk -t2 -c{CONNECTIONS}, {rounds} interleaved rounds of {seconds} s, medians:")
    for name, label in (("baseline", "gunicorn, 4 sync workers, direct"), ("platform", "platform web tier (front + gunicorn)")):
        errors = sum(r["non2xx"] + r["socket_errors"] for r in results[name])
        print(
            f"  {label:40s} {median(name, 'rps'):8.1f} req/s  p50 {median(name, 'p50'):7.1f} ms  "
            f"p99 {median(name, 'p99'):7.1f} ms  errors {errors}"
        )
    print(f"  ratio platform / baseline: {median('platform', 'rps') / median('baseline', 'rps'):.2f}x (goal >= 0.90)")
    for i, (count, gap) in enumerate(live, 1):
        print(f"  live log during platform round {i}: {count} lines arrived, longest gap {gap:.1f} s (the build prints one a second)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
