"""Issue 11: protected environments. A promotion, deploy, rollback or configuration change
there is a request until a project admin other than the requester approves it; approval
carries out exactly what was asked, with no failed request, and every step is audited."""

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from choreo_site.models import AuditEvent
from deployments import services
from deployments.models import Deployment
from environments.models import ApprovalRequest, ConfigValue, Membership
from tests.conftest import api_as
from tests.deployments.load import KeepAliveLoad
from tests.deployments.test_deploy import build, env, finish, get

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")]
MARKER = "protected-config-marker-77c1"


@pytest.fixture
def team(component):
    """alice and dave are admins of the project, bob a developer; production is protected."""
    users = {name: User.objects.create_user(name, password=f"{name}-password-123") for name in ("alice", "dave", "bob", "root")}
    for name, role in (("alice", Membership.ADMIN), ("dave", Membership.ADMIN), ("bob", Membership.DEVELOPER)):
        Membership.objects.create(project=component.project, user=users[name], role=role)
    users["root"].is_superuser = True
    users["root"].save()
    answer = api_as(users["alice"]).patch("/api/projects/shop/environments/production/", {"protected": True}, format="json")
    assert answer.status_code == 200 and answer.json()["protected"] is True
    return users


def test_a_promotion_to_production_waits_for_another_admin_and_then_serves_with_no_failed_request(component, team):
    prod_host = "web.production.shop.localhost"
    v1 = build(component)
    assert finish(services.deployment_deploy(component=component, build=v1)).status == Deployment.ACTIVE
    first = ApprovalRequest.objects.count()
    # v1 reaches production through a request too, approved by an admin.
    asked = api_as(team["bob"]).post(
        "/api/projects/shop/components/web/promote/", {"from": "development", "to": "production"}, format="json"
    )
    assert asked.status_code == 202, asked.content
    approved = api_as(team["alice"]).post(f"/api/approvals/{asked.json()['approval']['id']}/approve/", {}, format="json")
    assert approved.status_code == 200
    assert finish(Deployment.objects.get(pk=approved.json()["result"]["deployment"])).status == Deployment.ACTIVE
    assert get(prod_host) == (200, "v1")

    v2 = build(component, {"index.html": "v2\n"})
    assert finish(services.deployment_deploy(component=component, build=v2)).status == Deployment.ACTIVE
    bob, alice, dave = (api_as(team[name]) for name in ("bob", "alice", "dave"))
    with KeepAliveLoad(settings.INGRESS_PORT, prod_host) as load:
        asked = bob.post("/api/projects/shop/components/web/promote/?wait=1", {"from": "development", "to": "production"}, format="json")
        assert asked.status_code == 202, asked.content
        approval = asked.json()["approval"]
        assert approval["status"] == "pending" and approval["requested_by"] == "bob" and approval["kind"] == "promote"
        time.sleep(0.5)
        assert get(prod_host) == (200, "v1")  # still the old version: nothing was deployed
        assert bob.get("/api/projects/shop/approvals/?status=pending").json()[0]["id"] == approval["id"]

        # The requester cannot approve; a developer cannot either; another admin can.
        assert bob.post(f"/api/approvals/{approval['id']}/approve/", {}, format="json").status_code == 403
        own = {"environment": "production", "build": v2.pk}
        alice_own = alice.post("/api/projects/shop/components/web/deploy/", own, format="json")
        assert alice_own.status_code == 202  # supersedes bob's request: the newest one stands
        assert ApprovalRequest.objects.get(pk=approval["id"]).status == ApprovalRequest.SUPERSEDED
        assert alice.post(f"/api/approvals/{alice_own.json()['approval']['id']}/approve/", {}, format="json").status_code == 403
        refused = alice.post(f"/api/approvals/{approval['id']}/approve/", {}, format="json")
        assert refused.status_code == 409 and "superseded" in refused.json()["detail"]

        asked = bob.post("/api/projects/shop/components/web/promote/", {"from": "development", "to": "production"}, format="json")
        approval = asked.json()["approval"]
        approved = dave.post(f"/api/approvals/{approval['id']}/approve/", {"comment": "ship it"}, format="json")
        assert approved.status_code == 200, approved.content
        deployment = finish(Deployment.objects.get(pk=approved.json()["result"]["deployment"]))
        assert deployment.status == Deployment.ACTIVE, deployment.error
        assert deployment.release.build_id == v2.pk and deployment.kind == Deployment.PROMOTE
        time.sleep(0.3)
        again = dave.post(f"/api/approvals/{approval['id']}/approve/", {}, format="json")
        assert again.status_code == 409 and again.json()["errors"]["status"] == ["approved"]
    assert load.failures == [] and load.errors == 0 and load.bad == 0
    assert {"v1", "v2"} <= load.bodies and get(prod_host) == (200, "v2")

    trail = [
        (e.action, e.actor, e.interface, e.outcome)
        for e in AuditEvent.objects.filter(project_name="shop", action__startswith="approval.").order_by("id")
    ]
    # Each refused decision is in the trail: bob's and alice's own, alice's of a superseded
    # request, dave's second approval of the same request.
    assert [t for t in trail if t[3] == "refused"] == [
        ("approval.approve", "bob", "api", "refused"),
        ("approval.approve", "alice", "api", "refused"),
        ("approval.approve", "alice", "api", "refused"),
        ("approval.approve", "dave", "api", "refused"),
    ]
    # alice's request superseded bob's first; bob's second superseded alice's; dave approved it.
    assert [t for t in trail if t[3] != "refused"][-5:] == [
        ("approval.supersede", "alice", "api", "ok"),
        ("approval.request", "alice", "api", "requested"),
        ("approval.supersede", "bob", "api", "ok"),
        ("approval.request", "bob", "api", "requested"),
        ("approval.approve", "dave", "api", "ok"),
    ]
    promoted = AuditEvent.objects.filter(action="deployment.promote", environment="production").latest("id")
    assert (promoted.actor, promoted.details["build"]) == ("dave", v2.pk)
    assert ApprovalRequest.objects.count() == first + 4


def test_expired_rejected_and_superuser_decisions(component, team):
    v1 = build(component)
    finish(services.deployment_deploy(component=component, build=v1))
    bob, alice, root = (api_as(team[name]) for name in ("bob", "alice", "root"))

    def ask():
        answer = bob.post("/api/projects/shop/components/web/promote/", {"from": "development", "to": "production"}, format="json")
        assert answer.status_code == 202
        return answer.json()["approval"]["id"]

    expired = ask()
    ApprovalRequest.objects.filter(pk=expired).update(expires_at=timezone.now() - timedelta(seconds=1))
    answer = alice.post(f"/api/approvals/{expired}/approve/", {}, format="json")
    assert answer.status_code == 409 and answer.json()["errors"]["status"] == ["expired"]
    assert ApprovalRequest.objects.get(pk=expired).status == ApprovalRequest.EXPIRED
    event = AuditEvent.objects.get(action="approval.expire")
    assert (event.actor, event.target.split(":")[0], event.project_name) == ("system", f"request {expired}", "shop")
    own = alice.post("/api/projects/shop/components/web/promote/", {"from": "development", "to": "production"}, format="json")
    own = own.json()["approval"]["id"]
    assert alice.post(f"/api/approvals/{own}/approve/", {}, format="json").status_code == 403
    refused = AuditEvent.objects.filter(action="approval.approve").latest("id")
    assert (refused.actor, refused.outcome, refused.target.split(":")[0]) == ("alice", AuditEvent.REFUSED, f"request {own}")
    assert "another project admin must approve it" in refused.details["reason"]

    rejected = ask()
    assert alice.post(f"/api/approvals/{rejected}/reject/", {"comment": "not today"}, format="json").json()["status"] == "rejected"
    answer = alice.post(f"/api/approvals/{rejected}/approve/", {}, format="json")
    assert answer.status_code == 409 and "rejected" in answer.json()["detail"]
    assert alice.post(f"/api/approvals/{rejected}/approve/", {"comment": 5, "extra": 1}, format="json").status_code == 400

    by_root = ask()
    assert root.post(f"/api/approvals/{by_root}/approve/", {}, format="json").status_code == 200
    event = AuditEvent.objects.filter(action="approval.approve").latest("id")
    assert (event.actor, event.superuser) == ("root", True)
    assert not Deployment.objects.filter(environment__name="production", kind=Deployment.AUTO).exists()
    # A non-member does not learn that the request exists.
    stranger = User.objects.create_user("eve", password="eve-password-123")
    assert api_as(stranger).post(f"/api/approvals/{by_root}/approve/", {}, format="json").status_code == 404


def test_a_configuration_change_in_production_waits_and_never_shows_its_value(component, team):
    bob, dave = api_as(team["bob"]), api_as(team["dave"])
    answer = bob.put(
        "/api/projects/shop/components/web/config/?environment=production",
        {"key": "DB_PASSWORD", "value": MARKER, "secret": True},
        format="json",
    )
    assert answer.status_code == 202, answer.content
    approval = answer.json()["approval"]
    assert approval["kind"] == "config.set" and MARKER not in str(answer.content)
    assert not ConfigValue.objects.filter(key="DB_PASSWORD", current=True).exists()
    assert dave.post(f"/api/approvals/{approval['id']}/approve/", {}, format="json").status_code == 200
    current = ConfigValue.objects.get(key="DB_PASSWORD", current=True)
    assert current.text == MARKER and current.pk == approval["payload"]["version"]
    removal = bob.delete("/api/projects/shop/components/web/config/?environment=production&key=DB_PASSWORD")
    assert removal.status_code == 202
    assert ConfigValue.objects.filter(key="DB_PASSWORD", current=True).exists()
    dave.post(f"/api/approvals/{removal.json()['approval']['id']}/approve/", {}, format="json")
    assert not ConfigValue.objects.filter(key="DB_PASSWORD", current=True).exists()
    dump = str(list(AuditEvent.objects.values())) + str(list(ApprovalRequest.objects.values()))
    assert MARKER not in dump


def test_automatic_deploys_never_go_into_a_protected_environment(component, team):
    from choreo_site.errors import Forbidden

    v1 = build(component)
    development = env(component, "development")
    api_as(team["alice"]).patch("/api/projects/shop/environments/development/", {"protected": True}, format="json")
    development.refresh_from_db()
    with pytest.raises(Forbidden, match="protected"):
        services.deployment_deploy(component=component, build=v1, kind=Deployment.AUTO)
    assert not Deployment.objects.exists() and not ApprovalRequest.objects.exists()


def test_a_newer_request_supersedes_only_a_request_for_the_same_thing(component, team):
    bob = api_as(team["bob"])
    url = "/api/projects/shop/components/web/config/?environment=production"

    def ask(key, value):
        answer = bob.put(url, {"key": key, "value": value}, format="json")
        assert answer.status_code == 202, answer.content
        return answer.json()["approval"]["id"]

    first_url, name, second_url = ask("DB_URL", "postgres://db/1"), ask("DB_NAME", "shop"), ask("DB_URL", "postgres://db/2")
    statuses = dict(ApprovalRequest.objects.values_list("pk", "status"))
    assert statuses == {first_url: "superseded", name: "pending", second_url: "pending"}
