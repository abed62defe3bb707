"""An external registry, by URL and credentials, instead of the embedded one: a second
Distribution with TLS (a certificate made for the test) and htpasswd authentication."""

import json
import shutil
import subprocess
import time

import pytest
import requests

from builds import registry
from builds.models import Build
from builds.services import build_start, component_create
from choreo_site.logstream import read_text
from environments.services import project_create
from tests.conftest import free_port, run_build_jobs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("base_images")]
USER, PASSWORD = "ci-user", "ci-registry-pass-8d1f"
# Another account, for pulls (read-only at a registry that has roles; htpasswd has none).
PULLER, PULL_PASSWORD = "ci-puller", "ci-pull-pass-51c7"


@pytest.fixture
def authed_registry(tmp_path):
    yield from _registry(tmp_path, tls=True)


@pytest.fixture
def plain_http_registry(tmp_path):
    yield from _registry(tmp_path, tls=False)


def _registry(tmp_path, *, tls: bool):
    port = free_port()
    htpasswd = "".join(
        subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True).stdout.strip() + "\n"
        for user, password in ((USER, PASSWORD), (PULLER, PULL_PASSWORD))
    )
    (tmp_path / "htpasswd").write_text(htpasswd)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True,
        capture_output=True,
    )
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "storage")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "auth": {"htpasswd": {"realm": "ci", "path": str(tmp_path / "htpasswd")}},
    }
    if tls:
        config["http"]["tls"] = {"certificate": str(tmp_path / "cert.pem"), "key": str(tmp_path / "key.pem")}
    (tmp_path / "config.yml").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [shutil.which("docker-registry"), "serve", str(tmp_path / "config.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    ca = str(tmp_path / "cert.pem")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert requests.get(url + "/v2/", timeout=1, verify=ca).status_code == 401  # credentials required
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the registry did not start"
                time.sleep(0.1)
        yield url, ca
    finally:
        proc.terminate()
        proc.wait(10)


def build_with(settings, make_repo, *, url: str, ca: str = "", password: str = PASSWORD) -> Build:
    """Build the sample component with the registry at `url` and these credentials."""
    settings.REGISTRY_URL, settings.REGISTRY_CA_FILE, settings.REGISTRY_EMBEDDED = url, ca, False
    settings.REGISTRY_USERNAME, settings.REGISTRY_PASSWORD = USER, password
    repo = make_repo()
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    build_start(component=component)
    run_build_jobs()
    return Build.objects.get()


def test_build_pushes_to_an_external_registry_with_credentials(authed_registry, settings, make_repo):
    url, ca = authed_registry
    build = build_with(settings, make_repo, url=url, ca=ca)
    assert build.status == Build.SUCCEEDED, build.error
    host = url.removeprefix("https://")
    assert build.image_reference == f"{host}/shop/web@{build.digest}"
    manifest = f"{url}/v2/shop/web/manifests/{build.digest}"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    assert requests.get(manifest, headers=accept, timeout=5, verify=ca).status_code == 401
    assert requests.get(manifest, headers=accept, auth=(USER, PASSWORD), timeout=5, verify=ca).status_code == 200
    assert PASSWORD not in read_text(build.log_stream)


def test_what_only_pulls_uses_the_read_only_credentials_when_they_are_set(authed_registry, settings, make_repo):
    url, ca = authed_registry
    build = build_with(settings, make_repo, url=url, ca=ca)
    assert build.status == Build.SUCCEEDED, build.error
    assert registry.engine_auth(build.image_reference) == {"username": USER, "password": PASSWORD}  # none set: the platform's
    settings.REGISTRY_PULL_USERNAME, settings.REGISTRY_PULL_PASSWORD = PULLER, PULL_PASSWORD
    auth = registry.engine_auth(build.image_reference)
    assert auth == {"username": PULLER, "password": PULL_PASSWORD}
    # The Docker Engine gets those, and the registry serves the image to them.
    manifest = f"{url}/v2/shop/web/manifests/{build.digest}"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    response = requests.get(manifest, headers=accept, auth=(auth["username"], auth["password"]), timeout=5, verify=ca)
    assert response.status_code == 200


def test_wrong_registry_credentials_fail_the_build_with_the_reason(authed_registry, settings, make_repo):
    url, ca = authed_registry
    build = build_with(settings, make_repo, url=url, ca=ca, password="not-the-password")
    assert build.status == Build.FAILED
    assert "401" in build.error or "nauthorized" in build.error
    assert build.digest == ""


def test_credentials_over_plain_http_are_refused_with_the_reason(plain_http_registry, settings, make_repo):
    url, _ = plain_http_registry
    build = build_with(settings, make_repo, url=url)
    assert build.status == Build.FAILED
    assert "only sent over HTTPS" in build.error
