"""The systemd units run the same processes as `up`, with the same settings, and pass
`systemd-analyze verify` with nothing to say."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import MANAGE, ROOT


def verify(paths) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", *map(str, paths)], capture_output=True, text=True)


@pytest.fixture
def units(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "WEB_PORT": "8123",
        "REDIS_URL": "redis://:units-redis-password@127.0.0.1:6379/3",
        "BUILD_CONCURRENCY": "3",
        # Settings the units once lost: each setting the settings module reads is passed on.
        "BUILD_MEMORY": "1073741824",
        "REPLICA_CPUS": "0.5",
        "KUBERNETES_IMAGE_REGISTRY": "registry.cluster.test:5000",
        "REGISTRY_PULL_USERNAME": "puller",
    }
    out = tmp_path / "units"
    subprocess.run([*MANAGE, "systemd_units", "--output", str(out)], cwd=ROOT, env=env, check=True, capture_output=True)
    return out


def test_units_run_what_up_runs_and_pass_systemd_analyze(units, tmp_path):
    names = sorted(p.name for p in units.iterdir())
    daemons = ["registry", "ingress", "web-front", "web", "web-async", "build-worker-1", "build-worker-2", "build-worker-3"]
    daemons += ["worker", "git-worker", "task-worker-1", "task-worker-2", "scheduler"]
    assert names == sorted(["choreo.env", "choreo.target", "choreo-prepare.service", *(f"choreo-{d}.service" for d in daemons)])
    result = verify(sorted(units.glob("*.service")) + [units / "choreo.target"])
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr

    web = (units / "choreo-web.service").read_text()
    exec_start = shlex.split(next(line for line in web.splitlines() if line.startswith("ExecStart=")).split("=", 1)[1])
    assert exec_start[:3] == [sys.executable, "-m", "gunicorn"]
    assert f"unix:{tmp_path / 'data' / 'run' / 'wsgi.sock'}" in exec_start
    assert "Requires=choreo-prepare.service" in web and "Restart=always" in web
    worker = (units / "choreo-worker.service").read_text()
    assert f'"{ROOT / "manage.py"}" "rqworker" "default"' in worker

    env_file = units / "choreo.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    env = env_file.read_text()
    for line in ('DATA_DIR="%s"' % (tmp_path / "data"), 'WEB_PORT="8123"', 'REDIS_URL="redis://:units-redis-password@127.0.0.1:6379/3"'):
        assert line in env
    for line in ('BUILD_MEMORY="1073741824"', 'REPLICA_CPUS="0.5"', 'KUBERNETES_IMAGE_REGISTRY="registry.cluster.test:5000"'):
        assert line in env
    assert 'REGISTRY_PULL_USERNAME="puller"' in env
    assert f"EnvironmentFile={env_file}" in web


def test_systemd_analyze_catches_a_broken_unit(units):
    """The check above can fail: a unit with a bad setting does not pass it."""
    broken = units / "choreo-web.service"
    broken.write_text(broken.read_text().replace("Type=simple", "Type=sometimes"))
    result = verify([broken])
    assert "Failed to parse service type" in result.stdout + result.stderr
