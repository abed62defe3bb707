"""Issue 10, finding 12: credentials in a repository URL were served in plaintext by the
API, the project page and the admin. They are kept apart, write-only and encrypted at rest;
the URL is shown without them everywhere, and Git still gets them."""

import base64
import functools
import http.server
import secrets
import subprocess
import threading

import pytest
from django.db import connection

from builds.models import Build, Component
from builds.services import build_start
from choreo_site.logstream import read_text
from tests.conftest import run_build_jobs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images")]


@pytest.fixture
def private_remote(make_repo, tmp_path):
    """A repository served over Git's dumb HTTP protocol, to Basic auth only."""
    repo = make_repo()
    bare = tmp_path / "private.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(bare)], check=True)
    subprocess.run(["git", "update-server-info"], cwd=bare, check=True)
    token = "tok-" + secrets.token_hex(12)
    expected = "Basic " + base64.b64encode(f"deploy:{token}".encode()).decode()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/private.git", token
    server.shutdown()


def test_repository_credentials_are_write_only_and_encrypted(api, logged_in, private_remote):
    url, token = private_remote
    assert api.post("/api/projects/", {"name": "shop"}, format="json").status_code == 201
    created = api.post("/api/projects/shop/components/", {"name": "web", "repository": f"http://deploy:{token}@{url[7:]}"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["repository"] == url and created.json()["repository_credentials_set"] is True

    component = Component.objects.get()
    build_start(component=component)
    run_build_jobs()
    build = Build.objects.get()
    assert build.status == Build.SUCCEEDED, build.error  # Git got the credentials

    shown = [
        api.get("/api/projects/shop/components/").content.decode(),
        api.get("/api/projects/shop/components/web/").content.decode(),
        logged_in.get("/projects/shop/").content.decode(),
        logged_in.get("/projects/shop/components/web/build/").content.decode(),
        logged_in.get("/admin/builds/component/").content.decode(),
        logged_in.get(f"/admin/builds/component/{component.pk}/change/").content.decode(),
        read_text(build.log_stream),
    ]
    for text in shown:
        assert token not in text
    with connection.cursor() as cursor:
        cursor.execute("SELECT repository, repository_credentials FROM builds_component")
        stored = cursor.fetchone()
    assert stored[0] == url
    assert token not in str(stored[1])  # ciphertext


def test_a_wrong_token_is_refused_without_being_shown(api, private_remote):
    url, token = private_remote
    api.post("/api/projects/", {"name": "shop"}, format="json")
    wrong = f"http://deploy:wrong-{token}@{url[7:]}"
    refused = api.post("/api/projects/shop/components/", {"name": "web", "repository": wrong}, format="json")
    assert refused.status_code == 400
    assert token not in refused.content.decode()
