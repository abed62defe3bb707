"""A whole platform for a benchmark: `manage.py up` in a temporary data directory, with
its own ports, database and registry, logged in through the API as `admin`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from choreo_site.processes import child_of_this_process

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "benchmark-password"
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@l", "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@l"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True, capture_output=True, text=True
    ).stdout.strip()


@contextmanager
def running_platform(prefix: str, **settings: str):
    """Yield (temporary directory, base URL, API session). Stops and removes it after."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    web = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp / "data"),
        "WEB_PORT": str(web),
        "REGISTRY_PORT": str(free_port()),
        "INGRESS_PORT": str(free_port()),
        "DATABASE_URL": f"sqlite:///{tmp}/data/db.sqlite3",
        "ADMIN_PASSWORD": PASSWORD,
        "DEMO": "0",
        "PYTHONPATH": str(ROOT),
        "LOCAL_REPOSITORY_ROOTS": tempfile.gettempdir(),  # the benchmarks' sample repositories
        **settings,
    }
    log = open(tmp / "platform.log", "wb")
    cmd = [sys.executable, str(ROOT / "manage.py"), "up"]
    # Dies with the benchmark, however it ends (up then stops everything it started).
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=child_of_this_process())
    base = f"http://127.0.0.1:{web}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"the platform did not start, see {tmp}/platform.log")
            time.sleep(0.3)
        token = requests.post(f"{base}/api/auth/token/", json={"username": "admin", "password": PASSWORD}, timeout=10).json()["token"]
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        try:
            yield tmp, base, session
        finally:  # stop the replicas it deployed: they would outlive the platform
            for project in session.get(f"{base}/api/projects/", timeout=30).json():
                session.delete(f"{base}/api/projects/{project['name']}/", timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


def platform_shell(tmp: Path, code: str) -> str:
    """Run Python in the benchmark platform's Django (its data directory and database)."""
    env = {**os.environ, "DATA_DIR": str(tmp / "data"), "DATABASE_URL": f"sqlite:///{tmp}/data/db.sqlite3", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise SystemExit(f"the platform's shell failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]  # what the code printed last (the shell may print a banner first)


def deployed_task(tmp: Path, base: str, session: requests.Session, *, descriptor: str, command: str) -> dict:
    """Project `bench`, a busybox task component `job` with this descriptor and command,
    built and deployed to development through the API. Returns the deployment."""
    repo = tmp / "task-repo"
    (repo / ".choreo").mkdir(parents=True)
    (repo / ".choreo" / "component.yaml").write_text(descriptor)
    (repo / "Dockerfile").write_text(f"FROM choreo/busybox:1\nCMD {command}\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "task")
    api = f"{base}/api/projects"
    session.post(f"{api}/", json={"name": "bench"}, timeout=30).raise_for_status()
    session.post(f"{api}/bench/components/", json={"name": "job", "repository": str(repo)}, timeout=30).raise_for_status()
    build = session.post(f"{api}/bench/components/job/builds/?wait=1", json={}, timeout=600).json()
    if build.get("status") != "succeeded":
        raise SystemExit(f"the task did not build: {build}")
    deployment = session.post(f"{api}/bench/components/job/deploy/?wait=1", json={"build": build["id"]}, timeout=600).json()
    if deployment.get("status") != "active":
        raise SystemExit(f"the task did not deploy: {deployment}")
    return deployment
