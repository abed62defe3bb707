"""`manage.py demo`: the main job, end to end, on the sample in examples/, through the
HTTP API of a running platform. `make up` runs it once the platform is healthy.

It makes a Git repository of examples/hello-service in examples/repositories/<instance>/hello.git,
creates project `demo` and component `hello`, builds the head commit, deploys it to
development, promotes it to production (each with ?wait=1), and prints the URLs and where
to look.
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

from choreo_site.tokens import token_create

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
    repo = settings.DEMO_REPOSITORY_DIR / "hello.git"  # under LOCAL_REPOSITORY_ROOTS by default
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
        # A short-lived token of its own, stored hashed, revoked when the demo is done.
        key, _ = token_create(user=get_user_model().objects.get(username="admin"), days=1)
        session = requests.Session()
        session.headers["Authorization"] = f"Token {key}"

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
        self.stdout.write(f"demo: build {build['id']} succeeded for commit {build['commit'][:12]}: {build['image']}")
        self.stdout.write("demo: production gets its own GREETING (PUT .../config/?environment=production)")
        call(
            "PUT",
            "/projects/demo/components/hello/config/?environment=production",
            json={"key": "GREETING", "value": "Hello from production"},
        )
        self.stdout.write("demo: deploying to development (POST .../deploy/?wait=1) …")
        dev = call("POST", "/projects/demo/components/hello/deploy/?wait=1", json={"build": build["id"]}).json()
        if dev["status"] != "active":
            raise CommandError(f"demo: deployment {dev['id']} {dev['status']}: {dev['error']}")
        self.stdout.write("demo: promoting to production (POST .../promote/?wait=1) …")
        prod = call("POST", "/projects/demo/components/hello/promote/?wait=1", json={"from": "development", "to": "production"}).json()
        if prod["status"] != "active":
            raise CommandError(f"demo: deployment {prod['id']} {prod['status']}: {prod['error']}")
        lines = [
            f"demo: done. One image, built once, runs in both environments: {build['digest']}",
            f"  development: {dev['urls'][0]}",
            f"  production:  {prod['urls'][0]}",
            f"  try:         curl -H 'Host: {prod['urls'][0].split('/')[2].split(':')[0]}' http://127.0.0.1:{settings.INGRESS_PORT}/",
            f"  pull it:     docker login {build['image'].split('/')[0]} -u admin  (the password: an API token)",
            f"               docker pull {build['image']}",
            f"  Build page:  {page}",
            f"  Deploy page: {settings.PUBLIC_URL}/projects/demo/components/hello/deploy/",
            # Never the token itself: terminals are scrolled back, logged and shared.
            f"  API:         curl -H \"Authorization: Token $(.venv/bin/python manage.py drf_create_token admin | awk '{{print $3}}')\" "
            f"{api}/projects/demo/components/hello/deployments/",
        ]
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
        session.post(api + "/auth/logout/", timeout=30)
