"""Issue 11: the audit trail. Every change is one append-only event naming the actor and
the interface; events never hold a secret value, and outlive their project."""

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from choreo_site.models import AuditEvent
from environments.models import Project
from tests.conftest import api_as

pytestmark = pytest.mark.django_db(transaction=True)
MARKER = "audit-marker-secret-4f9a1c"


@pytest.fixture
def alice():
    return User.objects.create_user("alice", password="alice-password-123")


def actions(**filters) -> list[tuple[str, str, str]]:
    return [(e.action, e.actor, e.interface) for e in AuditEvent.objects.filter(**filters).order_by("id")]


@pytest.mark.usefixtures("registry_server")  # deleting the project deletes its images
def test_changes_through_the_api_are_events_with_actor_and_interface_and_no_secret(alice, make_repo):
    User.objects.create_user("bob", password="bob-password-123")
    api = api_as(alice)
    assert api.post("/api/projects/", {"name": "shop"}, format="json").status_code == 201
    assert api.put("/api/projects/shop/members/bob/", {"role": "developer"}, format="json").status_code == 201
    assert api.post("/api/projects/shop/environments/", {"name": "staging", "after": "development"}, format="json").status_code == 201
    repo = str(make_repo().path)
    assert api.post("/api/projects/shop/components/", {"name": "web", "repository": repo}, format="json").status_code == 201
    config = {"key": "DB_PASSWORD", "value": MARKER, "secret": True}
    answer = api.put("/api/projects/shop/components/web/config/", config, format="json")
    assert answer.status_code in (200, 201), answer.content
    assert api.delete("/api/projects/shop/members/bob/").status_code == 204

    project = Project.objects.get(name="shop")
    assert actions(project_id=project.pk) == [
        ("project.create", "alice", "api"),
        ("member.add", "alice", "api"),
        ("environment.create", "alice", "api"),
        ("component.create", "alice", "api"),
        ("config.set", "alice", "api"),
        ("member.remove", "alice", "api"),
    ]
    config_event = AuditEvent.objects.get(action="config.set")
    assert config_event.target == "web DB_PASSWORD" and config_event.details["secret"] is True
    assert isinstance(config_event.details["version"], int)
    dump = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert MARKER not in dump

    # The API lists them, newest first, filtered and paginated.
    listed = api.get("/api/projects/shop/audit/?page_size=2").json()
    assert listed["count"] == 6 and [e["action"] for e in listed["results"]] == ["member.remove", "config.set"]
    assert listed["next"]
    assert [e["action"] for e in api.get("/api/projects/shop/audit/?action=member.").json()["results"]] == ["member.remove", "member.add"]
    assert api.get("/api/projects/shop/audit/?environment=staging").json()["count"] == 1
    assert api.get("/api/projects/shop/audit/?actor=bob").json()["count"] == 0
    assert api.get("/api/projects/shop/audit/?since=2000-01-01").json()["count"] == 6
    refused = api.get("/api/projects/shop/audit/?since=yesterday")
    assert refused.status_code == 400 and "since" in refused.json()["errors"]

    # Deleting the project leaves its events as they were, and adds one.
    before = {e["id"]: e for e in AuditEvent.objects.values()}
    assert api.delete("/api/projects/shop/").status_code == 204
    after = {e["id"]: e for e in AuditEvent.objects.values()}
    assert all(after[pk] == event for pk, event in before.items())
    assert AuditEvent.objects.filter(action="project.delete", project_name="shop").count() == 1


def test_events_are_append_only(alice):
    api_as(alice).post("/api/projects/", {"name": "shop"}, format="json")
    event = AuditEvent.objects.get()
    with pytest.raises(TypeError):
        AuditEvent.objects.update(actor="mallory")
    with pytest.raises(TypeError):
        AuditEvent.objects.all().delete()
    with pytest.raises(TypeError):
        event.delete()
    event.actor = "mallory"
    with pytest.raises(TypeError):
        event.save()
    assert AuditEvent.objects.get().actor == "alice"


def test_logins_and_tokens_are_audited(alice):
    page = Client()
    page.post("/login/", {"username": "alice", "password": "wrong-password"})
    page.post("/login/", {"username": "alice", "password": "alice-password-123"})
    token = Client().post("/api/auth/token/", {"username": "alice", "password": "alice-password-123"}, content_type="application/json")
    key = token.json()["token"]
    Client().post("/api/auth/logout/", HTTP_AUTHORIZATION=f"Token {key}")
    events = [(e.action, e.actor, e.interface, e.outcome) for e in AuditEvent.objects.order_by("id")]
    assert AuditEvent.objects.order_by("id").first().target == "user alice"
    assert events == [
        ("login", "anonymous", "page", "refused"),  # anyone can type alice's name
        ("login", "alice", "page", "ok"),
        ("token.create", "alice", "api", "ok"),
        ("token.revoke", "alice", "api", "ok"),
    ]
    assert key not in json.dumps(list(AuditEvent.objects.values()), default=str)


def test_the_platform_wide_trail_is_for_superusers(alice, admin_user):
    api_as(alice).post("/api/projects/", {"name": "shop"}, format="json")
    assert api_as(alice).get("/api/audit/").status_code == 403
    listed = api_as(admin_user).get("/api/audit/?project=shop").json()
    assert [e["action"] for e in listed["results"]] == ["project.create"]
    admin = Client()
    admin.force_login(admin_user)
    assert admin.get("/admin/choreo_site/auditevent/").status_code == 200
    event = AuditEvent.objects.get(action="project.create")
    assert admin.post(f"/admin/choreo_site/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_the_audit_page_filters(alice):
    api_as(alice).post("/api/projects/", {"name": "shop"}, format="json")
    page = Client()
    page.force_login(alice)
    html = page.get("/projects/shop/audit/").content.decode()
    assert "project.create" in html and "alice" in html
    assert "No event matches these filters" in page.get("/projects/shop/audit/?actor=bob").content.decode()
    assert "is not a time" in page.get("/projects/shop/audit/?since=soon", follow=True).content.decode()
    assert Client().get("/projects/shop/audit/").status_code == 302  # the login page


def test_a_webhook_and_the_schedule_are_actors_of_their_own(tmp_path):
    from builds.services import component_update, polls_enqueue_due
    from tests.builds.test_webhooks import SECRET as WEBHOOK_SECRET
    from tests.builds.test_webhooks import Remote, _deliver, payload_for
    from tests.conftest import run_default_jobs

    remote = Remote(tmp_path)
    remote.push({".choreo/component.yaml": "schemaVersion: 1\ntype: service\n", "Dockerfile": "FROM choreo/busybox:1\n"})
    from builds.services import component_create
    from environments.services import project_create

    component = component_create(project=project_create(name="shop"), name="web", repository=str(remote.bare))
    component_update(component=component, auto_build_on_commit=True, webhook_secret=WEBHOOK_SECRET, poll_enabled=True)
    before, after, changes = remote.push({"README": "pushed\n"})
    assert _deliver("github", payload_for("github", before, after, changes)).status_code == 202
    remote.push({"README": "polled\n"})
    polls_enqueue_due()
    run_default_jobs()
    builds = [(e.actor, e.interface) for e in AuditEvent.objects.filter(action="build.start").order_by("id")]
    assert builds == [("webhook", "webhook"), ("schedule", "schedule")]
    # Its settings were changed by the platform itself here (no request): `system`.
    assert AuditEvent.objects.get(action="component.settings").actor == "system"


def test_the_admin_refuses_everyone_but_superusers(alice, admin_user):
    """Django's per-model permissions know nothing of project roles: a staff user with every
    model permission still gets no admin page."""
    from django.contrib.auth.models import Permission

    alice.is_staff = True
    alice.save()
    alice.user_permissions.set(Permission.objects.all())
    staff = Client()
    staff.force_login(alice)
    assert staff.get("/admin/environments/project/").status_code == 302  # to the admin's login
    assert staff.get("/admin/").status_code == 302
    root = Client()
    root.force_login(admin_user)
    assert root.get("/admin/environments/project/").status_code == 200
