"""Issue 10, finding 4: a local user (here `nobody`) cannot take the platform over through
its files or sockets. (Redis: tests/choreo_site/test_operable.py.)"""

import subprocess

import pytest
from django.conf import settings

from deployments.ingress import admin_socket

AS_NOBODY = ["runuser", "-u", "nobody", "--"]


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*AS_NOBODY, *argv], capture_output=True, text=True)


def test_the_data_directory_is_the_platforms_alone():
    assert settings.DATA_DIR.stat().st_mode & 0o777 == 0o700
    assert settings.RUN_DIR.stat().st_mode & 0o777 == 0o700
    listing = as_nobody("ls", str(settings.DATA_DIR))
    assert listing.returncode != 0 and "Permission denied" in listing.stderr
    for name in ("secret-key", "config-key", "test-db.sqlite3"):
        path = settings.DATA_DIR / name
        if path.exists():
            read = as_nobody("cat", str(path))
            assert read.returncode != 0 and "Permission denied" in read.stderr, name


@pytest.mark.django_db
def test_a_local_user_cannot_drive_the_ingress(platform_ingress):
    socket_path = admin_socket()
    assert socket_path.is_socket()
    assert socket_path.stat().st_mode & 0o777 == 0o600
    connect = "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'show info\\n'); print(s.recv(100))"
    attempt = as_nobody("/usr/bin/python3", "-c", connect, str(socket_path))
    assert attempt.returncode != 0 and "Permission denied" in attempt.stderr
    assert "Name:" in platform_ingress.command("show info")  # the platform itself still can
