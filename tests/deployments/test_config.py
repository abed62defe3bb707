"""Configuration and secrets end to end: real builds, real replicas behind the real ingress,
real workers' jobs in Redis, the real database. Secrets are random markers; after the
platform has used them, they must be found nowhere but inside the replicas."""

import base64
import gzip
import http.client
import io
import json
import os
import secrets
import signal
import subprocess
import tarfile
import time
import zlib

import docker
import pytest
import redis
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection

from builds.models import Build, Component
from builds.services import component_create, component_update
from deployments.models import Deployment
from environments.keyring import read_key_file, stale_count
from environments.models import ConfigValue, Project
from environments.services import project_create, project_delete
from tests.conftest import MANAGE, our_labels, run_default_jobs, start_process
from tests.deployments.test_deploy import build

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")]

DESCRIPTOR = """\
schemaVersion: 1
type: service
endpoints:
  - name: web
    port: 8080
health:
  http: { path: /, port: 8080 }
  interval: 200ms
  timeout: 1s
  startupTimeout: 20s
replicas: 1
configurations:
  - name: GREETING
    required: true
  - name: DB_PASSWORD
    secret: true
    required: true
  - name: MAX_CONNECTIONS
    type: integer
    default: 10
  - name: app-config
    type: file
    mountPath: /etc/app/config.toml
  - name: tls-key
    type: file
    secret: true
    required: true
    mountPath: /etc/app/tls.key
"""
# The application shows what it got, and prints its secrets to its log, as careless
# applications do.
START = """\
mkdir -p /www
{
  echo "GREETING=$GREETING"
  echo "DB_PASSWORD=$DB_PASSWORD"
  echo "MAX_CONNECTIONS=$MAX_CONNECTIONS"
  echo "config=$(cat /etc/app/config.toml)"
  echo "tls=$(tr '\\n' '|' < /etc/app/tls.key)"
  echo "modes=$(stat -c '%a:%u' /etc/app/config.toml /etc/app/tls.key | tr '\\n' ' ')"
} > /www/index.html
echo "starting with password $DB_PASSWORD ($(printf %s "$DB_PASSWORD" | base64)) and key $(cat /etc/app/tls.key)"
exec httpd -f -p 8080 -h /www
"""
DOCKERFILE = 'FROM choreo/busybox:1\nCOPY start.sh /start.sh\nCMD ["sh", "/start.sh"]\n'
API = "/api/projects/shop/components/web"


@pytest.fixture
def component(make_repo):
    repo = make_repo({".choreo/component.yaml": DESCRIPTOR, "Dockerfile": DOCKERFILE, "start.sh": START})
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    component.repo = repo
    yield component
    for leftover in Project.objects.filter(name="shop"):
        project_delete(project=leftover)


def served(environment: str) -> dict[str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", settings.INGRESS_PORT, timeout=5)
    conn.request("GET", "/", headers={"Host": f"web.{environment}.shop.localhost"})
    response = conn.getresponse()
    assert response.status == 200
    return dict(line.split("=", 1) for line in response.read().decode().splitlines())


def put(api, key, value, environment=None, secret=False):
    url = f"{API}/config/" + (f"?environment={environment}" if environment else "")
    if isinstance(value, bytes):
        body = {"key": key, "secret": "true" if secret else "false", "file": SimpleUploadedFile(key, value)}
        response = api.put(url, body, format="multipart")
    else:
        response = api.put(url, {"key": key, "value": value, "secret": secret}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def deploy(api, path="deploy/", **body) -> dict:
    response = api.post(f"{API}/{path}", body, format="json")
    assert response.status_code == 201, response.json()
    run_default_jobs()  # the rollout, as a worker would run it
    deployment = api.get(f"/api/deployments/{response.json()['id']}/").json()
    assert deployment["status"] == "active", deployment["error"]
    return deployment


def configure(api, marker: str, key_marker: str) -> None:
    put(api, "GREETING", "hello from everywhere")
    put(api, "GREETING", "hello development", environment="development")
    put(api, "DB_PASSWORD", marker, secret=True)
    put(api, "app-config", b"name = 'shop'\n")
    put(api, "tls-key", f"-----BEGIN KEY-----\n{key_marker}\n".encode(), environment="development", secret=True)


def replicas_of(deployment_id: int) -> list:
    return docker.from_env().containers.list(filters={"label": our_labels(deployment=deployment_id)})


def test_values_arrive_promote_roll_back_exactly_and_no_plaintext_anywhere(api, component, logged_in):
    marker, key_marker, prod_key_marker, marker2 = (f"{name}-{secrets.token_hex(12)}" for name in ("pw", "key", "prodkey", "pw2"))
    v1 = build(component)

    refused = api.post(f"{API}/deploy/", {}, format="json")
    assert refused.status_code == 400
    assert set(refused.json()["errors"]) == {"GREETING", "DB_PASSWORD", "tls-key"}, refused.json()
    assert "GREETING" in refused.json()["detail"] and "tls-key" in refused.json()["detail"]
    assert Deployment.objects.count() == 0

    configure(api, marker, key_marker)
    first = deploy(api)
    got = served("development")
    # Environment-specific wins over environment-independent; defaults fill the rest.
    assert got["GREETING"] == "hello development"
    assert got["DB_PASSWORD"] == marker
    assert got["MAX_CONNECTIONS"] == "10"
    assert got["config"] == "name = 'shop'"
    assert got["tls"] == f"-----BEGIN KEY-----|{key_marker}|"
    assert got["modes"].split() == ["400:0", "400:0"]  # read-only files, for the image's user (root here)
    # A secret given as a file does not show in the Engine's description of the replica.
    for container in replicas_of(first["id"]):
        assert key_marker not in json.dumps(container.attrs)
    keys = {k["key"]: k for k in first["config_keys"]}
    assert keys["DB_PASSWORD"]["secret"] and keys["GREETING"]["scope"] == "environment"
    assert keys["app-config"]["scope"] == "all environments"

    # Promotion: production lacks the required tls-key; the dry run says so, the real one refuses.
    preview = api.post(f"{API}/promote/", {"from": "development", "to": "production", "dry_run": True}, format="json").json()
    assert [m["key"] for m in preview["missing_configurables"]] == ["tls-key"]
    promote_refused = api.post(f"{API}/promote/", {"from": "development", "to": "production"}, format="json")
    assert promote_refused.status_code == 400 and "tls-key" in promote_refused.json()["errors"]
    put(api, "tls-key", f"{prod_key_marker}\n".encode(), environment="production", secret=True)
    promoted = deploy(api, "promote/", **{"from": "development", "to": "production"})
    assert promoted["release"] == first["release"] and promoted["digest"] == v1.digest
    prod = served("production")
    assert prod["GREETING"] == "hello from everywhere" and prod["DB_PASSWORD"] == marker and prod_key_marker in prod["tls"]

    # Setting a value changes no running deployment; redeploying takes it.
    put(api, "DB_PASSWORD", marker2, secret=True)
    assert served("development")["DB_PASSWORD"] == marker
    redeployed = deploy(api)
    assert redeployed["digest"] == v1.digest and redeployed["release"] != first["release"]
    assert served("development")["DB_PASSWORD"] == marker2
    assert served("production")["DB_PASSWORD"] == marker  # production runs the release it was promoted

    # Rollback restores the configuration and the secret versions of the deployment rolled back to.
    rolled = deploy(api, "rollback/", environment="development")
    assert rolled["rollback_of"] == first["id"] and rolled["release"] == first["release"]
    assert served("development")["DB_PASSWORD"] == marker
    assert Deployment.objects.get(pk=rolled["id"]).config == Deployment.objects.get(pk=first["id"]).config

    # The application printed its secrets: every log the platform shows masks them.
    runtime_logs = api.get(f"{API}/logs/?environment=development").content.decode()
    assert "starting with password ***" in runtime_logs and "and key ***" in runtime_logs

    assert_nowhere([marker, marker2, key_marker, prod_key_marker], api, logged_in, v1)


def read_from_another_process(path: str) -> bytes:
    """Read a file SQLite has open in this process without opening it here: closing any
    descriptor of it would drop this process's SQLite locks, and a worker process writing
    meanwhile would corrupt the database (sqlite.org/howtocorrupt.html, 2.2)."""
    return subprocess.run(["cat", path], capture_output=True, check=True).stdout


def assert_nowhere(markers: list[str], api, logged_in, build: Build) -> None:
    forms = {m: [m, base64.b64encode(m.encode()).decode().rstrip("=")] for m in markers}

    def check(where: str, data: bytes | str) -> None:
        blob = data if isinstance(data, bytes) else data.encode()
        for marker, variants in forms.items():
            for variant in variants:
                assert variant.encode() not in blob, f"{marker} found in {where}"

    # Every API response and page that concerns the component.
    deployments = list(Deployment.objects.values_list("pk", flat=True))
    urls = [
        f"{API}/config/",
        f"{API}/config/?environment=development",
        f"{API}/config/?environment=production",
        f"{API}/deployments/",
        f"{API}/logs/?environment=development",
        f"{API}/logs/?environment=production",
        f"/api/builds/{build.pk}/",
        f"/api/builds/{build.pk}/logs/",
        *(f"/api/deployments/{pk}/" for pk in deployments),
        *(f"/api/deployments/{pk}/logs/" for pk in deployments),
    ]
    for url in urls:
        response = api.get(url)
        assert response.status_code == 200, url
        check(url, response.content)
    preview = api.post(f"{API}/promote/", {"from": "development", "to": "production", "dry_run": True}, format="json")
    check("the promotion dry run", preview.content)
    for url in ["/projects/shop/components/web/deploy/", *(f"/projects/shop/components/web/deployments/{pk}/" for pk in deployments)]:
        response = logged_in.get(url)
        assert response.status_code == 200, url
        check(url, response.content)

    # The database: its file, or a dump of it.
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        for suffix in ("", "-wal", "-journal"):
            if os.path.exists(str(db["NAME"]) + suffix):
                check("the SQLite database", read_from_another_process(str(db["NAME"]) + suffix))
    else:
        env = {**os.environ, "PGPASSWORD": db["PASSWORD"] or ""}
        dump = subprocess.run(
            ["pg_dump", "-h", db["HOST"], "-p", str(db["PORT"]), "-U", db["USER"], db["NAME"]], env=env, capture_output=True, check=True
        ).stdout
        assert b"environments_configvalue" in dump
        check("a PostgreSQL dump", dump)

    # Redis: job arguments, results, channel messages; RQ compresses job data.
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter():
        kind = client.type(key).decode()
        values: list[bytes] = []
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "hash":
            values = [v for pair in client.hgetall(key).items() for v in pair]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = client.zrange(key, 0, -1)
        elif kind == "stream":
            values = [json.dumps({k.decode(): v.decode(errors="replace") for k, v in e[1].items()}).encode() for e in client.xrange(key)]
        for value in values:
            check(f"Redis key {key!r}", value)
            try:
                check(f"Redis key {key!r} (decompressed)", zlib.decompress(value))
            except zlib.error:
                pass

    # The data directory (registry storage, workspaces, logs, keys), gzip members opened.
    for root, _, files in os.walk(settings.DATA_DIR):
        for name in files:
            path = os.path.join(root, name)
            try:
                data = read_from_another_process(path) if ".sqlite3" in name else open(path, "rb").read()
            except OSError:
                continue
            check(path, data)
            if data[:2] == b"\x1f\x8b":
                try:
                    check(f"{path} (gunzipped)", gzip.decompress(data))
                except (OSError, EOFError):
                    pass

    # Every layer of the image.
    saved = b"".join(docker.from_env().images.get(build.image_reference).save())
    with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                data = tar.extractfile(member).read()
                check(f"image member {member.name}", data)
                if data[:2] == b"\x1f\x8b":
                    check(f"image member {member.name} (gunzipped)", gzip.decompress(data))


def test_missing_or_invalid_configurables_refuse_every_way_in(api, component, logged_in):
    v1 = build(component)
    configure(api, "pw-" + secrets.token_hex(8), "key-" + secrets.token_hex(8))
    put(api, "RETRIES", "many")  # not declared by v1: any text will do
    active = deploy(api)

    api.delete(f"{API}/config/?key=GREETING")
    api.delete(f"{API}/config/?key=GREETING&environment=development")
    refused = api.post(f"{API}/deploy/", {"build": v1.pk}, format="json")
    assert refused.status_code == 400 and set(refused.json()["errors"]) == {"GREETING"}
    page = logged_in.post("/projects/shop/components/web/deploy/start", {"build": v1.pk, "environment": "development"}, follow=True)
    assert any("GREETING" in str(m) for m in page.context["messages"])
    # A newer build declares RETRIES an integer: the stored text is now invalid.
    v2 = build(component, {".choreo/component.yaml": DESCRIPTOR + "  - name: RETRIES\n    type: integer\n"})
    put(api, "GREETING", "back")
    invalid = api.post(f"{API}/deploy/", {"build": v2.pk}, format="json")
    assert invalid.status_code == 400
    assert invalid.json()["errors"] == {"RETRIES": ["declared as integer: it must be an integer, got 'many'"]}
    assert Deployment.objects.count() == 1
    assert Deployment.objects.get(pk=active["id"]).status == Deployment.ACTIVE
    assert served("development")["GREETING"] == "hello development"

    # Automatic build then deploy: the pipeline stops before the rollout and keeps the reason.
    component_update(component=Component.objects.get(pk=component.pk), auto_build_on_commit=True, auto_deploy_on_build=True)
    auto = build(component, {"index.html": "v3\n"}, trigger=Build.POLL)
    run_default_jobs()
    auto.refresh_from_db()
    assert "RETRIES" in auto.auto_deploy_error
    assert "RETRIES" in api.get(f"/api/builds/{auto.pk}/").json()["auto_deploy_error"]
    assert "Auto deploy refused" in api.get(f"/api/builds/{auto.pk}/logs/").content.decode()
    assert Deployment.objects.count() == 1

    put(api, "RETRIES", 3)
    assert deploy(api, build=auto.pk)["build"] == auto.pk


def test_a_rollback_to_history_that_lacks_a_required_value_is_refused(api, component):
    """No API path makes such history today, so it is made directly: the check before a
    rollback is a guard for data written by older versions or by hand."""
    v1 = build(component)
    configure(api, "pw-" + secrets.token_hex(8), "key-" + secrets.token_hex(8))
    first = deploy(api)
    v2 = build(component, {"start.sh": START + "# v2\n"})
    second = deploy(api, build=v2.pk)
    old = Deployment.objects.select_related("release").get(pk=first["id"])
    assert old.release.build_id == v1.pk and old.release_id != second["release"]
    old.release.config.pop("GREETING")
    type(old.release).objects.filter(pk=old.release_id).update(config=old.release.config)
    Deployment.objects.filter(pk=old.pk).update(config={k: v for k, v in old.config.items() if k != "GREETING"})

    refused = api.post(f"{API}/rollback/", {"environment": "development"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"] == {"GREETING": ["required, and has no value"]}
    assert "roll back development to deployment" in refused.json()["detail"]
    assert Deployment.objects.count() == 2
    assert Deployment.objects.get(pk=second["id"]).status == Deployment.ACTIVE


def ciphertexts() -> dict[int, bytes]:
    """The stored bytes of each secret, as the database holds them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, sealed FROM environments_configvalue WHERE sealed IS NOT NULL")
        return {pk: bytes(raw) for pk, raw in cursor.fetchall()}


def test_key_rotation_keeps_every_secret_readable_and_deployments_running(api, component, platform_env, tmp_path):
    build(component)
    marker = "pw-" + secrets.token_hex(12)
    configure(api, marker, "key-" + secrets.token_hex(12))
    component_update(component=Component.objects.get(pk=component.pk), webhook_secret="a-webhook-secret-of-some-length")
    # A real worker process runs the rollouts: it started with the old key and is never restarted.
    worker = start_process([*MANAGE, "rqworker", "default"], platform_env, tmp_path / "worker.log")
    try:
        active = deploy_by_worker(api)
        containers = {c.id for c in replicas_of(active["id"])}
        old_keys = read_key_file(settings.CONFIG_KEY_FILE)
        old_ciphertext = ciphertexts()

        out = io.StringIO()
        call_command("rotate_config_key", grace=0, stdout=out)
        assert "re-encrypted 4 value(s)" in out.getvalue()  # two secrets, the webhook secret, the repository credentials
        new_keys = read_key_file(settings.CONFIG_KEY_FILE)
        assert len(new_keys) == 1 and new_keys[0] not in old_keys
        assert oct(os.stat(settings.CONFIG_KEY_FILE).st_mode & 0o777) == "0o600"
        assert stale_count() == 0

        # Every secret still reads, now under the new key only.
        assert ConfigValue.objects.get(key="DB_PASSWORD").text == marker
        assert Component.objects.get(pk=component.pk).webhook_secret == "a-webhook-secret-of-some-length"
        new_ciphertext = ciphertexts()
        assert new_ciphertext.keys() == old_ciphertext.keys() and len(new_ciphertext) == 2
        assert all(new_ciphertext[pk] != old_ciphertext[pk] for pk in new_ciphertext)
        # Nothing running was touched.
        assert {c.id for c in replicas_of(active["id"])} == containers
        assert served("development")["DB_PASSWORD"] == marker
        assert Deployment.objects.get(pk=active["id"]).status == Deployment.ACTIVE
        # The worker, still running, decrypts with the new key for the next deployment.
        deploy_by_worker(api)
        assert served("development")["DB_PASSWORD"] == marker
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
    # The worker process's own output (what an operator's terminal shows) has no secret.
    output = (tmp_path / "worker.log").read_text()
    assert "default" in output and marker not in output


def deploy_by_worker(api) -> dict:
    response = api.post(f"{API}/deploy/", {}, format="json")
    assert response.status_code == 201, response.json()
    deadline = time.monotonic() + 90
    while True:
        deployment = api.get(f"/api/deployments/{response.json()['id']}/").json()
        if deployment["status"] not in ("pending", "rolling-out"):
            break
        assert time.monotonic() < deadline, deployment
        time.sleep(0.2)
    assert deployment["status"] == "active", deployment["error"]
    return deployment
