"""`manage.py demo`: the main job, end to end, on the sample in examples/, through the
HTTP API of a running platform. `make up` runs it once the platform is healthy.

It makes a Git repository of examples/hello-service in $DATA_DIR/demo/hello.git,
creates project `demo` and component `hello`, builds the head commit with ?wait=1, and
prints the image reference and where to look.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

SAMPLE = "examples/hello-service"
# Fixed author and dates: the sample's commit, hence its image digest, is the same everywhere.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Platform demo",
    "GIT_AUTHOR_EMAIL": "demo@localhost",
    "GIT_COMMITTER_NAME": "Platform demo",
    "GIT_COMMITTER_EMAIL": "demo@localhost",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


def sample_repository() -> Path:
    repo = settings.DATA_DIR / "demo" / "hello.git"
    if repo.exists():
        return repo
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "hello"
        shutil.copytree(settings.BASE_DIR / SAMPLE, work)
        env = {**GIT_ENV, "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": tmp}
        for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "Hello service"]):
            subprocess.run(argv, cwd=work, env=env, check=True)
        repo.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repo)], env=env, check=True)
    return repo


class Command(BaseCommand):
    help = "Run the main job on the sample component through the API."

    def handle(self, *args, **options):
        api = f"http://{settings.WEB_HOST}:{settings.WEB_PORT}/api"
        token, _ = Token.objects.get_or_create(user=get_user_model().objects.get(username="admin"))
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token.key}"

        def call(method: str, path: str, **kwargs):
            response = session.request(method, api + path, timeout=330, **kwargs)
            if response.status_code >= 400 and response.status_code != 409:
                raise CommandError(f"{method} {path} answered {response.status_code}: {response.text}")
            return response

        repo = sample_repository()
        self.stdout.write(f"demo: sample repository {repo}")
        call("POST", "/projects/", json={"name": "demo"})
        call("POST", "/projects/demo/components/", json={"name": "hello", "repository": str(repo), "branch": "main", "path": "."})
        self.stdout.write("demo: building demo/hello (POST /api/projects/demo/components/hello/builds/?wait=1) …")
        build = call("POST", "/projects/demo/components/hello/builds/?wait=1", json={}).json()
        page = f"{settings.PUBLIC_URL}/projects/demo/components/hello/build/"
        if build["status"] != "succeeded":
            raise CommandError(f"demo: build {build['id']} {build['status']}: {build['error']}\nlogs: {page}")
        self.stdout.write(
            self.style.SUCCESS(
                "\n".join(
                    [
                        f"demo: build {build['id']} succeeded for commit {build['commit'][:12]}",
                        f"  image:      {build['image']}",
                        f"  pull it:    docker pull {build['image']}",
                        f"  Build page: {page}",
                        f"  API:        curl -H 'Authorization: Token {token.key}' {api}/builds/{build['id']}/",
                    ]
                )
            )
        )
