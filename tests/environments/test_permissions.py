"""Issue 10, finding 2: any logged-in user could delete another user's project, set its
configuration and webhook secret, and read its logs over the API, the pages and the log
WebSockets. Now a project is visible only to its members (and superusers), and each role
may do what environments.permissions says, checked in the services every entry point uses."""

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from builds.models import Build, Component
from builds.services import component_create
from choreo_site.asgi import application
from choreo_site.logstream import LogWriter
from environments.models import ConfigValue, Membership, Project
from tests.conftest import api_as, page_as

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alpha(make_repo):
    """Alice's project, made through the API by Alice, a user who is not staff."""
    alice = User.objects.create_user("alice", password="alice-password-123")
    assert api_as(alice).post("/api/projects/", {"name": "alpha"}, format="json").status_code == 201
    project = Project.objects.get(name="alpha")
    component = component_create(project=project, name="web", repository=str(make_repo().path))
    build = Build.objects.create(component=component, commit="a" * 40, status=Build.FAILED)
    LogWriter(build.log_stream).line("alpha's build log")
    return alice, project, build


def test_the_creator_is_the_projects_admin(alpha):
    alice, project, _ = alpha
    assert Membership.objects.get(project=project, user=alice).role == Membership.ADMIN
    assert [p["name"] for p in api_as(alice).get("/api/projects/").json()] == ["alpha"]


def test_another_user_cannot_see_or_touch_the_project(alpha):
    _, project, build = alpha
    bob = api_as(User.objects.create_user("bob"))
    assert bob.get("/api/projects/").json() == []
    for method, path, body in [
        ("get", "/api/projects/alpha/", None),
        ("delete", "/api/projects/alpha/", None),
        ("get", "/api/projects/alpha/components/", None),
        ("patch", "/api/projects/alpha/components/web/", {"webhook_secret": "bob-owns-this-now-1234"}),
        ("put", "/api/projects/alpha/components/web/config/", {"key": "X", "value": "1"}),
        ("get", "/api/projects/alpha/components/web/config/", None),
        ("post", "/api/projects/alpha/components/web/builds/", {}),
        ("get", f"/api/builds/{build.pk}/", None),
        ("get", f"/api/builds/{build.pk}/logs/", None),
        ("post", f"/api/builds/{build.pk}/cancel/", None),
        ("post", "/api/projects/alpha/components/web/deploy/", {}),
        ("get", "/api/projects/alpha/components/web/deployments/", None),
    ]:
        response = getattr(bob, method)(path, body, format="json") if body is not None else getattr(bob, method)(path)
        assert response.status_code == 404, (method, path, response.status_code)
        assert "alpha's build log" not in response.content.decode()
    assert Project.objects.filter(name="alpha").exists()
    assert not ConfigValue.objects.exists()
    assert not project.components.get().webhook_secret

    pages = page_as(User.objects.get(username="bob"))
    for path in ("/projects/alpha/", "/projects/alpha/components/web/build/", "/projects/alpha/components/web/deploy/"):
        assert pages.get(path).status_code == 404, path
    pages.post("/projects/alpha/delete")
    assert Project.objects.filter(name="alpha").exists()
    assert "/projects/alpha/" not in pages.get("/").content.decode()


def test_another_user_cannot_follow_the_projects_logs(alpha):
    _, _, build = alpha

    async def connect(user):
        communicator = WebsocketCommunicator(
            application, f"/ws/logs/{build.log_stream}/?offset=0", headers=[(b"origin", b"http://localhost")]
        )
        communicator.scope["user"] = user
        connected, code = await communicator.connect()
        first = await communicator.receive_json_from() if connected else None
        await communicator.disconnect()
        return connected, code, first

    connected, code, _ = async_to_sync(connect)(User.objects.create_user("mallory"))
    assert not connected and code == 4404
    connected, _, first = async_to_sync(connect)(User.objects.get(username="alice"))
    assert connected and first["lines"][0]["text"] == "alpha's build log"


def test_each_role_does_what_the_table_says(alpha):
    _, project, build = alpha
    viewer, developer = User.objects.create_user("vera"), User.objects.create_user("dev")
    Membership.objects.create(project=project, user=viewer, role=Membership.VIEWER)
    Membership.objects.create(project=project, user=developer, role=Membership.DEVELOPER)
    as_viewer, as_developer = api_as(viewer), api_as(developer)

    assert as_viewer.get(f"/api/builds/{build.pk}/logs/").status_code == 200
    refused = as_viewer.put("/api/projects/alpha/components/web/config/", {"key": "X", "value": "1"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "Your role in project 'alpha' (viewer) may not configure there."
    assert as_viewer.delete("/api/projects/alpha/").status_code == 403

    assert as_developer.put("/api/projects/alpha/components/web/config/", {"key": "X", "value": "1"}, format="json").status_code == 200
    assert as_developer.delete("/api/projects/alpha/").status_code == 403
    assert as_developer.post("/api/projects/alpha/environments/", {"name": "staging"}, format="json").status_code == 403
    assert Project.objects.filter(name="alpha").exists()

    # A refused button on a page says why.
    response = page_as(viewer).post("/projects/alpha/components/web/build/start", follow=True)
    assert any("may not build" in str(m) for m in response.context["messages"])


def test_a_role_in_one_project_says_nothing_about_another():
    from environments import permissions
    from environments.services import project_create

    carol = User.objects.create_user("carol", password="carol-password-123")
    alpha, beta, gamma = (project_create(name=name) for name in ("alpha", "beta", "gamma"))
    Membership.objects.create(project=alpha, user=carol, role=Membership.ADMIN)  # the first of her rows
    Membership.objects.create(project=beta, user=carol, role=Membership.VIEWER)

    assert permissions.role_of(carol, alpha) == Membership.ADMIN
    assert permissions.role_of(carol, beta) == Membership.VIEWER
    assert permissions.role_of(carol, gamma) is None
    with pytest.raises(Exception, match=r"\(viewer\) may not deploy"):
        permissions.project_authorize(actor=carol, project=beta, action=permissions.DEPLOY)
    with pytest.raises(Exception, match="does not exist"):
        permissions.project_authorize(actor=carol, project=gamma, action=permissions.VIEW)
    assert sorted(p.name for p in permissions.projects_visible(carol)) == ["alpha", "beta"]
    assert permissions.abilities(carol, beta)["deploy"] is False
    assert permissions.abilities(carol, beta)["role"] == Membership.VIEWER
    outside = permissions.abilities(carol, gamma)  # nothing, and says who may
    assert not any(outside[action] for action in permissions.ACTION_WORDS) and outside["role"] is None
    assert outside["why"]["view"] == "Only project viewers can see this project."
    # A row of a project she is not in is as missing as a row that does not exist.
    component = Component.objects.create(project=gamma, name="web", repository="/nonexistent")
    build = Build.objects.create(component=component, commit="a" * 40)
    for pk in (build.pk, build.pk + 1000):
        with pytest.raises(Exception) as missing:
            permissions.visible_get(Build.objects.all(), pk=pk, noun="Build", actor=carol)
        assert str(missing.value) == f"Build {pk} does not exist." and missing.value.status_code == 404


def test_superusers_and_the_platform_itself_may_do_everything_everywhere():
    from django.contrib.auth.models import AnonymousUser

    from environments import permissions
    from environments.services import project_create

    root = User.objects.create_superuser("root", password="root-password-123")
    alpha = project_create(name="alpha")
    project_create(name="beta")
    for actor in (root, None):  # None: jobs, signed webhooks, commands
        assert permissions.role_of(actor, alpha) == Membership.ADMIN
        for action in permissions.ACTION_WORDS:
            permissions.project_authorize(actor=actor, project=alpha, action=action)
        assert sorted(p.name for p in permissions.projects_visible(actor)) == ["alpha", "beta"]
    assert permissions.abilities(root, alpha)["role"] == "superuser"
    assert permissions.role_of(AnonymousUser(), alpha) is None
    assert list(permissions.projects_visible(AnonymousUser())) == []
