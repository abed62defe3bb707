"""Latency from a webhook received to its build running, over N pushes (default 200).

Starts a whole platform (`manage.py up`) in a temporary data directory. For each push:
commit and `git push` to a local bare repository, deliver a signed GitHub push event over
HTTP, wait until its build is running, then cancel it so builds never queue behind each
other (the next push waits until the cancelled build has stopped). The latency is the
build's `started_at` minus the event's `received_at`, both stamped by the platform; the
webhook's own answer time is reported beside it.

Usage: .venv/bin/python -m benchmarks.webhook_latency [N]
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import requests

from benchmarks.platform import ROOT, git, running_platform

SECRET = "benchmark-webhook-secret"


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main(n: int) -> None:
    subprocess.run([str(ROOT / "scripts" / "base-images.sh"), "busybox"], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-hooks-repo-"))
    try:
        measure(n, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(n: int, tmp: Path) -> None:
    bare, work = tmp / "remote.git", tmp / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / ".choreo").mkdir()
    (work / ".choreo" / "component.yaml").write_text("schemaVersion: 1\ntype: service\n")
    (work / "Dockerfile").write_text("FROM choreo/busybox:1\nRUN sleep 30\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "start")
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "-q", "origin", "HEAD:main")
    with running_platform("bench-hooks-", BUILD_CONCURRENCY="2") as (_, base, s):
        s.post(f"{base}/api/projects/", json={"name": "bench"}).raise_for_status()
        s.post(f"{base}/api/projects/bench/components/", json={"name": "web", "repository": str(bare)}).raise_for_status()
        settings = {"auto_build_on_commit": True, "webhook_secret": SECRET, "poll_enabled": False}
        s.patch(f"{base}/api/projects/bench/components/web/", json=settings).raise_for_status()
        hook = requests.Session()
        latencies, answers = [], []
        for i in range(n):
            before = git(work, "rev-parse", "HEAD")
            (work / "counter").write_text(f"{i}\n")
            git(work, "add", "-A")
            git(work, "commit", "-q", "-m", f"push {i}")
            after = git(work, "rev-parse", "HEAD")
            git(work, "push", "-q", "origin", "HEAD:main")
            body = json.dumps(
                {
                    "ref": "refs/heads/main",
                    "before": before,
                    "after": after,
                    "commits": [{"id": after, "added": [], "removed": [], "modified": ["counter"]}],
                }
            ).encode()
            headers = {
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
            }
            started = time.perf_counter()
            answer = hook.post(f"{base}/hooks/bench/web/", data=body, headers=headers, timeout=10)
            answers.append(time.perf_counter() - started)
            assert answer.status_code == 202, answer.text
            event_id = answer.json()["event"]
            build = None
            deadline = time.monotonic() + 30
            while build is None or build["status"] == "queued":
                if time.monotonic() > deadline:
                    raise SystemExit(f"push {i}: no running build after 30 s: {build}")
                time.sleep(0.02)
                if build is None:
                    event = next(e for e in s.get(f"{base}/api/projects/bench/components/web/events/").json() if e["id"] == event_id)
                    if event["build"]:
                        build = s.get(f"{base}/api/builds/{event['build']}/").json()
                        received = ts(event["received_at"])
                else:
                    build = s.get(f"{base}/api/builds/{build['id']}/").json()
            latencies.append(ts(build["started_at"]) - received)
            s.post(f"{base}/api/builds/{build['id']}/cancel/")
            # One push at a time: the next one starts once this build has stopped.
            while s.get(f"{base}/api/builds/{build['id']}/").json()["status"] in ("queued", "running"):
                time.sleep(0.05)
        ms = [x * 1000 for x in latencies]
        answer_ms = [x * 1000 for x in answers]
        print(f"machine: {os.uname().nodename}, {os.cpu_count()} cores; {n} pushes, one at a time")
        print(f"webhook received -> build running: p50 {percentile(ms, 50):.0f} ms, p99 {percentile(ms, 99):.0f} ms, max {max(ms):.0f} ms")
        print(f"webhook answered (202) in:         p50 {percentile(answer_ms, 50):.0f} ms, p99 {percentile(answer_ms, 99):.0f} ms")
        print(f"mean {statistics.mean(ms):.0f} ms; goal: p99 under 500 ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
