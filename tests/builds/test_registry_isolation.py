"""Issue 10, finding 6: builds read the host's own services. With the classic builder the
Engine fetches `ADD http://…` from the host's network: `ADD http://127.0.0.1:<registry>/v2/_catalog`
printed every project's repositories, and any project could read another's blobs.

Now the embedded registry takes only tokens the platform signs, each scoped to repositories:
a build gets none, the Engine gets pull on the one image it starts, people get pull on the
projects they may view (the `/registry/token` realm)."""

import base64
import json

import docker
import jwt
import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from builds import registry
from builds.models import Build
from builds.services import build_start, component_create
from choreo_site.logstream import read_text
from choreo_site.tokens import token_create
from environments.models import Project
from tests.conftest import BUSYBOX_DOCKERFILE, SERVICE_DESCRIPTOR, run_build_jobs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images")]


def create_project(user, name: str) -> Project:
    client = APIClient()
    client.force_authenticate(user)
    assert client.post("/api/projects/", {"name": name}, format="json").status_code == 201
    return Project.objects.get(name=name)


def build_of(project: Project, repo) -> Build:
    component = component_create(project=project, name="web", repository=str(repo.path))
    build_start(component=component)
    run_build_jobs()
    return Build.objects.filter(component=component).latest("pk")


@pytest.fixture
def alpha_build(make_repo):
    """Alice's project, built and pushed: what another project's build goes after."""
    alice = User.objects.create_user("alice", password="alice-password-123")
    build = build_of(create_project(alice, "alpha"), make_repo())
    assert build.status == Build.SUCCEEDED, read_text(build.log_stream)
    return build


def hostile_build(make_repo, dockerfile: str) -> tuple[Build, str]:
    mallory = User.objects.create_user("mallory", password="mallory-password-123")
    files = {".choreo/component.yaml": SERVICE_DESCRIPTOR, "Dockerfile": dockerfile, "index.html": "x\n"}
    files["openapi.yaml"] = "openapi: 3.0.3\ninfo: {title: web, version: '1'}\npaths: {}\n"
    build = build_of(create_project(mallory, "beta"), make_repo(files))
    return build, read_text(build.log_stream)


def registry_url(path: str) -> str:
    return f"http://127.0.0.1:{settings.REGISTRY_PORT}/v2/{path}"


def test_a_build_cannot_list_the_registry_catalog(make_repo, alpha_build):
    build, log = hostile_build(make_repo, f"FROM choreo/busybox:1\nADD {registry_url('_catalog')} /catalog\nRUN cat /catalog\n")
    assert build.status == Build.FAILED
    assert "401 Unauthorized" in log
    assert "alpha/web" not in log


def test_a_build_cannot_read_another_projects_blobs(make_repo, alpha_build):
    manifest = requests.get(
        registry_url(f"alpha/web/manifests/{alpha_build.digest}"),
        headers={"Authorization": "Bearer " + registry.token({"alpha/web": ("pull",)}, subject="test"), "Accept": registry.MANIFEST_TYPE},
    )
    config_digest = manifest.json()["config"]["digest"]
    build, log = hostile_build(
        make_repo, f"FROM choreo/busybox:1\nADD {registry_url(f'alpha/web/blobs/{config_digest}')} /stolen\nRUN cat /stolen\n"
    )
    assert build.status == Build.FAILED
    assert "401 Unauthorized" in log
    assert "rootfs" not in log  # the config blob's text never reached the build


def test_a_build_cannot_build_from_another_projects_image(make_repo, alpha_build, web_tier_at_public_url):
    image = f"{registry.registry_host()}/alpha/web:{alpha_build.commit}"
    build, log = hostile_build(make_repo, BUSYBOX_DOCKERFILE.replace("FROM choreo/busybox:1", f"FROM {image}"))
    assert build.status == Build.FAILED
    assert "pull access denied" in log or "unauthorized" in log.lower()  # the realm gave an anonymous token: no access


def test_the_engine_pulls_an_image_with_a_token_for_that_repository_only(alpha_build):
    auth = registry.engine_auth(alpha_build.image_reference)
    claims = jwt.decode(auth["registrytoken"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "alpha/web", "actions": ["pull"]}]
    engine = docker.from_env()
    engine.images.pull(alpha_build.image_reference, auth_config=auth)
    with pytest.raises(docker.errors.APIError):  # nothing at all without a token
        engine.images.remove(alpha_build.image_reference, force=True)
        engine.images.pull(alpha_build.image_reference, auth_config={})


# The realm: people pull with their user name and an API token.


def basic(username: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode()


def realm(authorization: str | None, *scopes: str, service: str = registry.TOKEN_SERVICE):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    return Client().get("/registry/token", {"service": service, "scope": list(scopes)}, **headers)


def test_the_realm_grants_pull_on_viewable_projects_only(make_repo, alpha_build):
    bob = User.objects.create_user("bob", password="bob-password-123")
    component_create(project=create_project(bob, "beta"), name="api", repository=str(make_repo().path))
    key, _ = token_create(user=User.objects.get(username="alice"))
    answer = realm(basic("alice", key), "repository:alpha/web:pull,push,delete", "repository:beta/api:pull", "registry:catalog:*")
    assert answer.status_code == 200
    token = answer.json()["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "alpha/web", "actions": ["pull"]}]
    assert claims["sub"] == "alice"

    # The registry honours exactly that: alpha's manifest, and nothing else.
    bearer = {"Authorization": "Bearer " + token, "Accept": registry.MANIFEST_TYPE}
    assert requests.get(registry_url(f"alpha/web/manifests/{alpha_build.digest}"), headers=bearer).status_code == 200
    assert requests.get(registry_url("beta/api/tags/list"), headers=bearer).status_code == 401
    assert requests.get(registry_url("_catalog"), headers=bearer).status_code == 401
    pushed = requests.post(registry_url("alpha/web/blobs/uploads/"), headers=bearer)
    assert pushed.status_code == 401


def test_the_realm_refuses_wrong_credentials_and_other_services(alpha_build):
    assert realm(basic("alice", "not-the-token"), "repository:alpha/web:pull").status_code == 401
    assert realm("Bearer abc", "repository:alpha/web:pull").status_code == 401
    assert realm("Basic !!!", "repository:alpha/web:pull").status_code == 401
    key, _ = token_create(user=User.objects.get(username="alice"))
    assert realm(basic("someone-else", key), "repository:alpha/web:pull").status_code == 401
    answer = realm(basic("alice", key), "repository:alpha/web:pull", service="docker.io")
    assert answer.status_code == 400 and "unknown service" in answer.json()["details"]
    # Anonymous clients get a token that grants nothing.
    anonymous = jwt.decode(realm(None, "repository:alpha/web:pull").json()["token"], options={"verify_signature": False})
    assert anonymous["access"] == []


def test_docker_pulls_through_the_realm_with_an_api_token(alpha_build, web_tier_at_public_url):
    key, _ = token_create(user=User.objects.get(username="alice"))
    engine = docker.from_env()
    engine.images.pull(alpha_build.image_reference, auth_config={"username": "alice", "password": key})
    out = engine.containers.run(alpha_build.image_reference, ["cat", "/www/built.txt"], remove=True)
    assert out == b"built\n"
    mallory = User.objects.create_user("mallory", password="mallory-password-123")
    stranger_key, _ = token_create(user=mallory)
    engine.images.remove(alpha_build.image_reference, force=True)
    with pytest.raises(docker.errors.APIError, match="denied|unauthorized"):
        engine.images.pull(alpha_build.image_reference, auth_config={"username": "mallory", "password": stranger_key})


def test_the_registry_configuration_names_the_realm_and_the_signing_certificate():
    config = json.loads((settings.DATA_DIR / "registry" / "config.yml").read_text())
    assert config["auth"]["token"]["realm"] == settings.PUBLIC_URL + "/registry/token"
    key = settings.DATA_DIR / "registry" / "token-signing.key"
    assert key.stat().st_mode & 0o077 == 0
