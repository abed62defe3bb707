"""Deploy, promote and roll back through the real pipeline, runtime and ingress, while
clients that keep their connections alive and never retry send requests."""

import http.client
import time

import docker
import pytest
from django.conf import settings

from builds.models import Build
from builds.services import build_start
from deployments import services
from deployments.models import Deployment, Route
from environments.services import project_delete
from tests.conftest import our_labels, run_build_jobs, run_default_jobs
from tests.deployments.load import KeepAliveLoad

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
  startupTimeout: STARTUP
replicas: 2
"""
SERVING = (
    'FROM choreo/busybox:1\nCOPY index.html /www/index.html\nCMD ["sh", "-c", "echo serving on 8080 && exec httpd -f -p 8080 -h /www"]\n'
)
NEVER_HEALTHY = 'FROM choreo/busybox:1\nCMD ["sleep", "600"]\n'


def build(component, files=None, trigger=Build.MANUAL) -> Build:
    if files:
        component.repo.commit(files, "change")
    build = build_start(component=component, trigger=trigger)
    run_build_jobs()
    build.refresh_from_db()
    assert build.status == Build.SUCCEEDED, build.error
    return build


def env(component, name):
    return component.project.environments.get(name=name)


def finish(deployment) -> Deployment:
    run_default_jobs()
    deployment.refresh_from_db()
    return deployment


def get(host: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", settings.INGRESS_PORT, timeout=5)
    conn.request("GET", "/", headers={"Host": host})
    response = conn.getresponse()
    return response.status, response.read().decode().strip()


def test_rollouts_promotion_rollback_and_a_bad_version_fail_no_request(component):
    dev_host, prod_host = "web.development.shop.localhost", "web.production.shop.localhost"
    v1 = build(component)
    first = finish(services.deployment_deploy(component=component, build=v1))
    assert first.status == Deployment.ACTIVE, first.error
    assert get(dev_host) == (200, "v1")

    v2 = build(component, {"index.html": "v2\n"})
    v3 = build(component, {"Dockerfile": NEVER_HEALTHY, ".choreo/component.yaml": DESCRIPTOR.replace("STARTUP", "3s")})
    with KeepAliveLoad(settings.INGRESS_PORT, dev_host) as dev_load:
        time.sleep(0.3)
        second = finish(services.deployment_deploy(component=component, build=v2))
        assert second.status == Deployment.ACTIVE, second.error
        time.sleep(0.3)

        promoted = finish(
            services.deployment_promote(component=component, source=env(component, "development"), target=env(component, "production"))
        )
        assert promoted.status == Deployment.ACTIVE, promoted.error
        assert promoted.release_id == second.release_id  # same release: same digest, never rebuilt
        assert get(prod_host) == (200, "v2")

        with KeepAliveLoad(settings.INGRESS_PORT, prod_host) as prod_load:
            rolled = finish(services.deployment_rollback(component=component, environment=env(component, "development")))
            assert rolled.status == Deployment.ACTIVE, rolled.error
            assert rolled.release_id == first.release_id and rolled.rollback_of_id == first.pk
            time.sleep(0.3)

            bad = finish(services.deployment_deploy(component=component, build=v3))
            assert bad.status == Deployment.FAILED
            assert "did not pass its health check (HTTP GET / on port 8080) within 3s" in bad.error
            time.sleep(0.3)

            # Promote the rolled-back v1 to production, replacing v2 there under load.
            again = finish(
                services.deployment_promote(component=component, source=env(component, "development"), target=env(component, "production"))
            )
            assert again.status == Deployment.ACTIVE, again.error
            time.sleep(0.3)

    for load in (dev_load, prod_load):
        assert load.failures == [], load.failures[:5]
        assert load.errors == 0 and load.bad == 0
    assert {"v1", "v2"} <= dev_load.bodies and {"v1", "v2"} <= prod_load.bodies
    assert get(dev_host) == (200, "v1") and get(prod_host) == (200, "v1")
    statuses = dict(Deployment.objects.values_list("pk", "status"))
    assert statuses[first.pk] == Deployment.SUPERSEDED
    assert statuses[second.pk] == Deployment.ROLLED_BACK
    assert statuses[rolled.pk] == Deployment.ACTIVE and statuses[bad.pk] == Deployment.FAILED
    assert statuses[promoted.pk] == Deployment.SUPERSEDED and statuses[again.pk] == Deployment.ACTIVE
    # Only the active deployments' replicas run: 2 in development, 2 in production.
    client = docker.from_env()
    running = client.containers.list(filters={"label": our_labels(project="shop")})
    assert sorted(c.labels["io.choreo.deployment"] for c in running) == sorted([str(rolled.pk)] * 2 + [str(again.pk)] * 2)
    print(f"development: {dev_load.ok} requests, production: {prod_load.ok} requests, 0 failed")


def test_bad_input_is_refused_and_leaves_the_active_deployment(api, component):
    v1 = build(component)
    active = finish(services.deployment_deploy(component=component, build=v1))
    failed_build = Build.objects.create(component=component, commit="0" * 40, status=Build.FAILED)
    url = "/api/projects/shop/components/web"
    cases = [
        ("deploy/", {"build": failed_build.pk}, 400, "only a succeeded build can be deployed"),
        ("deploy/", {"build": 999999}, 400, "is not a build of web"),
        ("deploy/", {"environment": "nope"}, 404, "Environment 'nope' does not exist"),
        ("deploy/", {"colour": "red"}, 400, "colour"),
        ("promote/", {"from": "production", "to": "development"}, 400, "promotion goes up the order"),
        ("promote/", {"from": "development", "to": "nope"}, 404, "does not exist"),
        ("promote/", {"from": "development"}, 400, "to"),
        ("rollback/", {"environment": "development"}, 400, "no earlier deployment"),
        ("rollback/", {"environment": "production"}, 400, "Nothing is deployed in production"),
        ("rollback/", {"environment": "development", "to": active.pk}, 400, "not an earlier deployment"),
    ]
    for path, payload, status, message in cases:
        response = api.post(f"{url}/{path}", payload, format="json")
        assert response.status_code == status, (path, payload, response.content)
        assert message in str(response.json()), (path, payload, response.json())
    assert api.post("/api/projects/shop/components/nope/deploy/", {}, format="json").status_code == 404
    active.refresh_from_db()
    assert active.status == Deployment.ACTIVE
    assert Deployment.objects.count() == 1


def test_the_deployment_api(api, component):
    v1 = build(component)
    response = api.post("/api/projects/shop/components/web/deploy/", {}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "pending"
    run_default_jobs()
    body = api.get(f"/api/deployments/{response.json()['id']}/").json()
    assert body["status"] == "active"
    assert body["digest"] == v1.digest and body["build"] == v1.pk
    assert body["urls"] == [f"http://web.development.shop.localhost:{settings.INGRESS_PORT}/"]
    assert body["config_keys"] == []
    preview = api.post(
        "/api/projects/shop/components/web/promote/", {"from": "development", "to": "production", "dry_run": True}, format="json"
    )
    assert preview.status_code == 200
    assert preview.json()["digest"] == {"current": None, "promoted": v1.digest}
    assert Deployment.objects.count() == 1  # a dry run deploys nothing
    history = api.get("/api/projects/shop/components/web/deployments/?environment=development").json()
    assert [d["id"] for d in history] == [body["id"]]
    assert api.get("/api/projects/shop/components/web/deployments/?environment=production").json() == []
    assert "Deployment" in api.get(f"/api/deployments/{body['id']}/logs/").content.decode()
    logs = api.get("/api/projects/shop/components/web/logs/?environment=development&since=60s")
    assert logs.status_code == 200
    lines = logs.content.decode().splitlines()
    assert len(lines) == 2 and all(line.endswith("serving on 8080") for line in lines)
    assert {line.split()[1].split(f"d{body['id']}-")[1][:2] for line in lines} == {"r0", "r1"}
    assert api.get("/api/projects/shop/components/web/logs/?environment=development&since=soon").status_code == 400
    assert api.get("/api/projects/shop/components/web/logs/?environment=production").status_code == 404


def test_deleting_the_project_removes_what_it_runs(component, platform_ingress):
    v1 = build(component)
    finish(services.deployment_deploy(component=component, build=v1))
    assert get("web.development.shop.localhost")[0] == 200
    slot = f"slot{Route.objects.get().slot}"
    project_delete(project=component.project)
    client = docker.from_env()
    labels = our_labels(project="shop")
    assert client.containers.list(all=True, filters={"label": labels}) == []
    assert client.networks.list(filters={"label": labels}) == []
    assert get("web.development.shop.localhost")[0] == 404
    assert platform_ingress.servers(slot) == []


def test_deleting_an_environment_removes_what_runs_there_and_a_rename_waits_for_it(component, api):
    dev_host = "web.development.shop.localhost"
    v1 = build(component)
    assert finish(services.deployment_deploy(component=component, build=v1)).status == Deployment.ACTIVE
    assert get(dev_host) == (200, "v1")
    renamed = api.patch("/api/projects/shop/environments/development/", {"name": "dev"}, format="json")
    assert renamed.status_code == 409 and renamed.json()["errors"]["name"] == ["In use."]

    assert api.delete("/api/projects/shop/environments/development/").status_code == 204
    assert get(dev_host)[0] == 404
    client = docker.from_env()
    labels = our_labels(project="shop")
    assert client.containers.list(filters={"label": labels}) == []
    assert not Route.objects.exists() and not Deployment.objects.exists()
    assert [e.name for e in component.project.environments.all()] == ["production"]


def _base_image(label: str) -> None:
    """choreo-test/rebase:1, a base image that changes as a team's base images do."""
    import io

    dockerfile = f"FROM choreo/busybox:1\nLABEL io.choreo.test.base={label}\n".encode()
    docker.from_env().images.build(fileobj=io.BytesIO(dockerfile), tag="choreo-test/rebase:1", rm=True)


def test_a_rebuild_with_changed_inputs_keeps_the_deployed_image_to_roll_back_to(component):
    from builds import registry

    dev_host = "web.development.shop.localhost"
    _base_image("1")
    try:
        v1 = build(component, {"Dockerfile": SERVING.replace("choreo/busybox:1", "choreo-test/rebase:1")})
        first = finish(services.deployment_deploy(component=component, build=v1))
        assert first.status == Deployment.ACTIVE, first.error

        _base_image("2")  # the same commit, built again on a newer base: a new image
        rebuilt = build_start(component=component, commit=v1.commit)
        run_build_jobs()
        rebuilt.refresh_from_db()
        assert rebuilt.status == Build.SUCCEEDED, rebuilt.error
        assert rebuilt.commit == v1.commit and rebuilt.digest != v1.digest and not rebuilt.reused
    finally:
        docker.from_env().images.remove("choreo-test/rebase:1", force=True)

    # The deployed image was not pruned with the commit's older images: still pullable.
    assert registry.manifest_exists(component.registry_repository, v1.digest)
    assert component.images.filter(digest=v1.digest).exists()
    second = finish(services.deployment_deploy(component=component, build=rebuilt))
    assert second.status == Deployment.ACTIVE, second.error
    for image in (v1.image_reference, rebuilt.image_reference):  # the rollback must pull it again
        try:
            docker.from_env().images.remove(image, force=True)
        except docker.errors.ImageNotFound:
            pass
    rolled = finish(services.deployment_rollback(component=component, environment=env(component, "development")))
    assert rolled.status == Deployment.ACTIVE, rolled.error
    assert rolled.release.digest == v1.digest and get(dev_host) == (200, "v1")
