"""`manage.py up` starts honestly and stops cleanly: real processes, checked by PID.

Each test starts a whole platform in a data directory and ports of its own, on its own
SQLite database, sharing the tests' Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import MANAGE, ROOT, free_port

pytestmark = [pytest.mark.slow]


def up_env(data: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATA_DIR": str(data),
        "WEB_PORT": str(free_port()),
        "REGISTRY_PORT": str(free_port()),
        "INGRESS_PORT": str(free_port()),
        "DATABASE_URL": f"sqlite:///{data}/db.sqlite3",
        "ADMIN_PASSWORD": "up-test-password",
        "BUILD_CONCURRENCY": "1",
        "WEB_WORKERS": "2",
        "DEMO": "0",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def start_up(env: dict[str, str], log: Path) -> subprocess.Popen:
    # A session of its own, as a terminal would give it: signals below go to `up` alone.
    return subprocess.Popen([*MANAGE, "up"], cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_line(proc: subprocess.Popen, log: Path, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, f"up exited with {proc.returncode}:\n{log.read_text()}"
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not printed within {timeout}s:\n{log.read_text()}")


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found |= {child} | descendants(child)
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_nothing_up_started_outlives_it(tmp_path, signum):
    log = tmp_path / "up.log"
    proc = start_up(up_env(tmp_path / "data"), log)
    try:
        wait_for_line(proc, log, "Platform up")
        started = descendants(proc.pid)
        # registry, ingress and web front (HAProxy master and worker each), gunicorn and
        # its workers, the ASGI server, a build worker, the default and Git workers, the scheduler.
        assert len(started) >= 11, started
        proc.send_signal(signum)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(pid) for pid in started | {proc.pid}):
            time.sleep(0.2)
            proc.poll()
        left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") for pid in started if alive(pid)}
        assert not left, f"still running 10 s after {signum.name}: {left}"
    finally:
        stop(proc)
        for pid in descendants(proc.pid) if proc.poll() is None else ():
            os.kill(pid, signal.SIGKILL)


def test_a_second_up_on_the_same_data_dir_refuses_and_another_data_dir_starts(tmp_path):
    first_env = up_env(tmp_path / "one")
    first = start_up(first_env, tmp_path / "one.log")
    try:
        wait_for_line(first, tmp_path / "one.log", "Platform up")
        second = subprocess.run([*MANAGE, "up"], cwd=ROOT, env=up_env(tmp_path / "one"), capture_output=True, text=True, timeout=30)
        assert second.returncode != 0
        assert f"Another `up` (pid {first.pid}) is running on {tmp_path / 'one'}" in second.stderr
        assert first.poll() is None

        other = start_up(up_env(tmp_path / "two"), tmp_path / "two.log")
        try:
            wait_for_line(other, tmp_path / "two.log", "Platform up")
        finally:
            stop(other)
        assert other.returncode == 0, (tmp_path / "two.log").read_text()
    finally:
        stop(first)


def refusal(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    began = time.monotonic()
    proc = subprocess.Popen([*MANAGE, "up"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), time.monotonic() - began


def assert_left_nothing(data: Path) -> None:
    """No process of that platform runs: none has its data directory in its command line."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
        except OSError:
            continue
        assert str(data).encode() not in text, text


def test_up_refuses_in_seconds_when_redis_does_not_answer(tmp_path):
    port = free_port()
    env = up_env(tmp_path / "data", REDIS_URL=f"redis://:not-this-one@127.0.0.1:{port}/14")
    result, took = refusal(env, tmp_path)
    assert result.returncode != 0
    assert took < 10
    lines = result.stderr.strip().splitlines()
    assert lines == [f"Redis at redis://127.0.0.1:{port}/14 does not answer: start it, or unset REDIS_URL to let make up run one"]
    assert "not-this-one" not in result.stdout + result.stderr
    assert_left_nothing(tmp_path / "data")


def test_up_refuses_in_seconds_when_the_database_does_not_answer(tmp_path):
    port = free_port()
    env = up_env(tmp_path / "data", DATABASE_URL=f"postgres://someone:db-password-here@127.0.0.1:{port}/nowhere")
    result, took = refusal(env, tmp_path)
    assert result.returncode != 0
    assert took < 10
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"The database at postgres://someone@127.0.0.1:{port}/nowhere does not answer")
    assert lines[0].endswith("start it, or unset DATABASE_URL to use SQLite in DATA_DIR.")
    assert "db-password-here" not in result.stdout + result.stderr
    assert_left_nothing(tmp_path / "data")


def test_up_stops_what_it_started_when_the_platform_never_becomes_healthy(tmp_path):
    """A registry that never answers (its port is taken): up gives up after its deadline,
    naming the failing check, and leaves nothing running."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = up_env(tmp_path / "data", REGISTRY_PORT=str(taken.getsockname()[1]), UP_HEALTH_TIMEOUT="8")
        proc = subprocess.Popen([*MANAGE, "up"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode != 0
    assert "Platform up" not in out
    assert "The platform did not become healthy within 8s: registry: not answering at" in err
    assert_left_nothing(tmp_path / "data")


def children_by_name(up_pid: int) -> dict[str, int]:
    """up's direct children by a word of their command line."""
    found = {}
    for task in Path(f"/proc/{up_pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            found[b" ".join(cmdline).decode(errors="replace").strip()] = int(child)
    return found


def test_restarts_leak_no_file_handle(tmp_path):
    """A child that keeps dying is started again with a back-off, and each start closes the
    log file it opened."""
    log = tmp_path / "up.log"
    proc = start_up(up_env(tmp_path / "data"), log)
    try:
        wait_for_line(proc, log, "Platform up")
        handles = len(list(Path(f"/proc/{proc.pid}/fd").iterdir()))
        for attempt in range(1, 4):
            registry = next(pid for cmd, pid in children_by_name(proc.pid).items() if "docker-registry" in cmd)
            os.kill(registry, signal.SIGKILL)
            wait_for_line(proc, log, f"registry exited with -9; starting it again in {2**attempt}s")
            deadline = time.monotonic() + 2**attempt + 5
            while not any("docker-registry" in cmd and pid != registry for cmd, pid in children_by_name(proc.pid).items()):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert len(list(Path(f"/proc/{proc.pid}/fd").iterdir())) == handles
    finally:
        stop(proc)


def test_a_closed_terminal_pipe_stops_everything(tmp_path):
    """up's output goes to a pipe whose reader goes away (SIGPIPE, a closed terminal): the
    next line it prints stops the platform, and nothing it started outlives it."""
    proc = subprocess.Popen(
        [*MANAGE, "up"], cwd=ROOT, env=up_env(tmp_path / "data"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        for line in proc.stdout:
            if b"Platform up" in line:
                break
        started = descendants(proc.pid)
        proc.stdout.close()
        scheduler = next(pid for cmd, pid in children_by_name(proc.pid).items() if cmd.endswith("scheduler"))
        os.kill(scheduler, signal.SIGKILL)  # up writes "scheduler exited …" to the closed pipe
        proc.wait(30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(pid) for pid in started):
            time.sleep(0.2)
        assert not [pid for pid in started if alive(pid)]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_demo_runs_end_to_end_and_prints_no_token(tmp_path):
    """make up's demo, as a new user sees it: build, deploy, promote, the URLs, and no
    credential in the output (issue 10: it printed the admin's non-expiring token)."""
    import requests

    env = up_env(tmp_path / "data", DEMO="1")
    env.pop("LOCAL_REPOSITORY_ROOTS", None)  # the default allows the demo's own sample
    log = tmp_path / "up.log"
    proc = start_up(env, log)
    base = f"http://127.0.0.1:{env['WEB_PORT']}"
    try:
        wait_for_line(proc, log, "demo: done", timeout=240)
        token = requests.post(f"{base}/api/auth/token/", json={"username": "admin", "password": "up-test-password"}, timeout=10)
        key = token.json()["token"]
        output = log.read_text()
        assert "Hello" in requests.get(f"http://127.0.0.1:{env['INGRESS_PORT']}/", headers={"Host": "hello.production.demo.localhost"}).text
        assert key not in output and "up-test-password" not in output
        deleted = requests.delete(f"{base}/api/projects/demo/", headers={"Authorization": f"Token {key}"}, timeout=120)
        assert deleted.status_code == 204, deleted.text
    finally:
        stop(proc)
