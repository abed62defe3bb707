"""Deleting a component stops what it runs in every environment and removes its routes,
images, configuration and records; it is refused while the component rolls out."""

import docker
import pytest

from builds import registry
from builds.models import Component
from choreo_site.models import AuditEvent
from deployments import services
from deployments.models import Deployment, Route
from environments.models import ApprovalRequest, ConfigValue
from environments.services import config_set
from tests.conftest import messages_of, our_labels
from tests.deployments.test_deploy import build, env, finish, get

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")]


def running(component_name: str) -> list:
    client = docker.from_env()
    return client.containers.list(all=True, filters={"label": our_labels(project="shop", component=component_name)})


def test_delete_stops_everything_and_forgets_the_name(api, component):
    config_set(project=component.project, component="web", environment=None, key="TOKEN", value="s3cret-value", secret=True)
    v1 = build(component)
    dev = finish(services.deployment_deploy(component=component, build=v1))
    prod = finish(
        services.deployment_promote(component=component, source=env(component, "development"), target=env(component, "production"))
    )
    assert dev.status == prod.status == Deployment.ACTIVE, (dev.error, prod.error)
    assert get("web.production.shop.localhost") == (200, "v1") and len(running("web")) == 4
    digest, repository = v1.digest, component.registry_repository
    assert registry.manifest_exists(repository, digest)

    # While it rolls out, the delete is refused, naming the rollout, and nothing stops.
    busy = Deployment.objects.create(
        component=component, environment=env(component, "development"), release=dev.release, status=Deployment.ROLLING_OUT
    )
    response = api.delete("/api/projects/shop/components/web/")
    assert response.status_code == 409, response.content
    assert f"deployment {busy.pk} to development is rolling-out" in response.json()["detail"]
    assert len(running("web")) == 4 and get("web.development.shop.localhost") == (200, "v1")
    busy.delete()

    response = api.delete("/api/projects/shop/components/web/")
    assert response.status_code == 204, response.content
    assert running("web") == []
    assert get("web.development.shop.localhost")[0] in (404, 503) and get("web.production.shop.localhost")[0] in (404, 503)
    assert not registry.manifest_exists(repository, digest)
    assert not Component.objects.filter(name="web").exists() and not Route.objects.exists() and not Deployment.objects.exists()
    assert not ConfigValue.objects.filter(component="web").exists()  # a later "web" starts without its secrets
    assert AuditEvent.objects.filter(action="component.delete", target="component web").exists()
    assert api.get("/api/projects/shop/components/web/").status_code == 404


def test_the_page_names_what_a_delete_stops_and_wants_the_name_typed(logged_in, component, admin_user):
    v1 = build(component)
    dev = finish(services.deployment_deploy(component=component, build=v1))
    assert dev.status == Deployment.ACTIVE, dev.error
    ApprovalRequest.objects.create(
        project=component.project,
        environment=env(component, "production"),
        component="web",
        kind="deploy",
        summary="deploy",
        payload={},
        requested_by=admin_user,
        expires_at=dev.created_at.replace(year=2100),
    )
    page = logged_in.get("/projects/shop/components/web/build/").content.decode()
    effects = page.split('class="effects"')[1].split("</ul>")[0]
    assert f"deployment #{dev.pk} in development (2 replica(s))" in effects
    assert "the route web.development.shop.localhost" in effects and "1 image in the registry" in effects

    response = logged_in.post("/projects/shop/components/web/delete", {"confirm": "wbe"}, follow=True)
    assert any("Type the component's name, web, to delete it" in m for m in messages_of(response))
    assert len(running("web")) == 2

    response = logged_in.post("/projects/shop/components/web/delete", {"confirm": "web"}, follow=True)
    assert response.redirect_chain[-1][0] == "/projects/shop/"
    assert any("Component web is deleted" in m for m in messages_of(response))
    assert running("web") == [] and not Component.objects.exists()
    assert ApprovalRequest.objects.get().status == ApprovalRequest.SUPERSEDED  # never approved for a later "web"


def test_nothing_starts_while_a_delete_tears_down(component):
    # A deploy that arrives after the delete's checks and before its teardown ends would
    # start replicas the teardown never stops. The delete holds such a deploy off: here a
    # teardown step of the test's own keeps the window open while a deploy is tried.
    import threading

    from builds import services as build_services
    from choreo_site.errors import Conflict
    from tasks.services import execution_run

    v1 = build(component)
    inside, release = threading.Event(), threading.Event()

    def slow_teardown(*, component):
        inside.set()
        assert release.wait(30)

    build_services._component_teardowns.insert(0, (None, slow_teardown, lambda *, component: []))  # runs last
    try:
        deleting = threading.Thread(target=build_services.component_delete, kwargs={"component": component})
        deleting.start()
        assert inside.wait(30)
        assert build_services.component_deleting(component)
        with pytest.raises(Conflict, match="web is being deleted"):
            services.deployment_deploy(component=component, build=v1)
        with pytest.raises(Conflict, match="web is being deleted"):  # nor a task run (tasks.services._check_task)
            execution_run(component=component, environment=env(component, "development"))
        assert not Deployment.objects.exists()
        release.set()
        deleting.join(30)
    finally:
        release.set()
        build_services._component_teardowns.pop(0)
    assert not Component.objects.filter(pk=component.pk).exists() and not build_services.component_deleting(component)
