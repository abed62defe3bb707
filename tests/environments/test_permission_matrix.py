"""Issue 11: the permission matrix. Every API endpoint and every page action of a project,
for each role and for a non-member, against what `environments.permissions.ROLE_ACTIONS`
(the single table) says. The routes are read from the URL resolver: a new project route
that is missing from ROUTES below fails `test_every_project_route_is_in_the_matrix`.

Allowed calls get inputs an allowed user could send (some are refused for other reasons,
such as a build that cannot be cancelled any more: that is not a permission refusal).
A refusal is a 404 naming the project for a non-member, a 403 naming the role for a
member, or, for a page's form, the same reasons as the page's message."""

import html
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from builds.models import Build, Image
from builds.services import component_create
from environments.models import ApprovalRequest, Membership
from environments.permissions import BUILD, CONFIGURE, DEPLOY, MANAGE, ROLE_ACTIONS, RUN, VIEW
from environments.services import project_create
from tasks.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server")]

P = "projects/<str:project>/"
C = P + "components/<str:component>/"
# route → {method: (action, body)}. Bodies are sent as JSON to the API, as a form to pages.
ROUTES: dict[str, dict[str, tuple[str, dict | None]]] = {
    # API
    "api/" + P: {"GET": (VIEW, None), "DELETE": (MANAGE, None)},
    "api/" + P + "environments/": {"GET": (VIEW, None), "POST": (MANAGE, {"name": "staging"})},
    "api/" + P + "environments/<str:environment>/": {"PATCH": (MANAGE, {"protected": False}), "DELETE": (MANAGE, None)},
    "api/" + P + "approvals/": {"GET": (VIEW, None)},
    "api/approvals/<int:approval_id>/approve/": {"POST": (MANAGE, {})},
    "api/approvals/<int:approval_id>/reject/": {"POST": (MANAGE, {})},
    "api/" + P + "members/": {"GET": (VIEW, None)},
    "api/" + P + "members/<str:username>/": {"PUT": (MANAGE, {"role": "viewer"}), "DELETE": (MANAGE, None)},
    "api/" + P + "audit/": {"GET": (VIEW, None)},
    "api/" + P + "components/": {"GET": (VIEW, None), "POST": (MANAGE, {"name": "api", "repository": "{repo}"})},
    "api/" + C: {"GET": (VIEW, None), "PATCH": (CONFIGURE, {"poll_enabled": False}), "DELETE": (MANAGE, None)},
    "api/" + C + "builds/": {"GET": (VIEW, None), "POST": (BUILD, {})},
    "api/" + C + "events/": {"GET": (VIEW, None)},
    "api/" + C + "deploy/": {"POST": (DEPLOY, {})},
    "api/" + C + "promote/": {"POST": (DEPLOY, {"from": "development", "to": "production", "dry_run": True})},
    "api/" + C + "rollback/": {"POST": (DEPLOY, {"environment": "development"})},
    "api/" + C + "deployments/": {"GET": (VIEW, None)},
    "api/" + C + "logs/": {"GET": (VIEW, None)},
    "api/" + C + "config/": {"GET": (VIEW, None), "PUT": (CONFIGURE, {"key": "MODE", "value": "fast"}), "DELETE": (CONFIGURE, None)},
    "api/builds/<int:build_id>/": {"GET": (VIEW, None)},
    "api/builds/<int:build_id>/logs/": {"GET": (VIEW, None)},
    "api/builds/<int:build_id>/cancel/": {"POST": (BUILD, {})},
    "api/deployments/<int:deployment_id>/": {"GET": (VIEW, None)},
    "api/deployments/<int:deployment_id>/logs/": {"GET": (VIEW, None)},
    "api/" + C + "executions/": {"GET": (VIEW, None), "POST": (RUN, {"environment": "development"})},
    "api/" + C + "executions/count/": {"GET": (VIEW, None)},
    "api/" + C + "schedule/": {"GET": (VIEW, None), "PATCH": (RUN, {"paused": True})},
    "api/executions/<int:execution_id>/": {"GET": (VIEW, None)},
    "api/executions/<int:execution_id>/logs/": {"GET": (VIEW, None)},
    "api/executions/<int:execution_id>/cancel/": {"POST": (RUN, {})},
    # Pages and their forms
    P: {"GET": (VIEW, None)},
    P + "delete": {"POST": (MANAGE, {})},
    P + "environments/": {"GET": (VIEW, None)},
    P + "environments/new": {"POST": (MANAGE, {"name": "staging"})},
    P + "environments/<str:environment>/protect": {"POST": (MANAGE, {"protected": "on"})},
    P + "environments/<str:environment>/update": {"POST": (MANAGE, {"after": ""})},
    P + "environments/<str:environment>/delete": {"POST": (MANAGE, {"confirm": "production"})},
    P + "members/": {"GET": (VIEW, None)},
    P + "members/set": {"POST": (MANAGE, {"username": "dora", "role": "viewer"})},
    P + "members/remove": {"POST": (MANAGE, {"username": "dora"})},
    P + "audit/": {"GET": (VIEW, None)},
    P + "components/new": {"POST": (MANAGE, {"name": "api", "repository": "{repo}", "branch": "main", "path": "."})},
    C + "build/": {"GET": (VIEW, None)},
    C + "delete": {"POST": (MANAGE, {"confirm": "web"})},
    C + "logs/": {"GET": (VIEW, None)},
    C + "build/start": {"POST": (BUILD, {})},
    C + "build/rows": {"GET": (VIEW, None)},
    C + "build/auto": {"POST": (CONFIGURE, {})},
    C + "builds/<int:build_id>/": {"GET": (VIEW, None)},
    C + "builds/<int:build_id>/cancel": {"POST": (BUILD, {})},
    C + "deploy/": {"GET": (VIEW, None)},
    C + "deploy/start": {"POST": (DEPLOY, {})},
    C + "deploy/promote": {"POST": (DEPLOY, {"from": "development", "to": "production"})},
    C + "deploy/rollback": {"POST": (DEPLOY, {"environment": "development"})},
    C + "deploy/auto": {"POST": (CONFIGURE, {})},
    C + "deploy/approvals/<int:approval_id>/<str:decision>": {"POST": (MANAGE, {})},
    C + "deploy/config": {"POST": (CONFIGURE, {"key": "MODE", "value": "fast"})},
    C + "deploy/config/remove": {"POST": (CONFIGURE, {"key": "MODE"})},
    C + "deployments/<int:deployment_id>/": {"GET": (VIEW, None)},
    C + "execute/": {"GET": (VIEW, None)},
    C + "execute/run": {"POST": (RUN, {"environment": "development", "args": "--once"})},
    C + "execute/pause": {"POST": (RUN, {"environment": "development", "paused": "on"})},
    C + "executions/<int:execution_id>/": {"GET": (VIEW, None)},
    C + "executions/<int:execution_id>/cancel": {"POST": (RUN, {})},
}
# Webhooks name a project but are authenticated by their signature, not by a role
# (tests/builds/test_webhooks.py).
SIGNED_ROUTES = {"hooks/<str:project>/<str:component>/"}


def project_routes() -> set[str]:
    found = set()

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                found.add(prefix + str(pattern.pattern))

    walk(get_resolver().url_patterns, "")
    scoped = {
        route for route in found if "<str:project>" in route or route.startswith(("api/builds/", "api/deployments/", "api/executions/"))
    }
    return (scoped | {route for route in found if route.startswith("api/approvals/")}) - SIGNED_ROUTES


def test_every_project_route_is_in_the_matrix():
    missing = project_routes() - set(ROUTES)
    assert not missing, f"add these routes to the permission matrix: {sorted(missing)}"
    assert not set(ROUTES) - project_routes(), "the matrix names routes that no longer exist"


@pytest.fixture
def shop(make_repo):
    project = project_create(name="shop")
    repo = str(make_repo().path)
    component = component_create(project=project, name="web", repository=repo)
    image = Image.objects.create(component=component, commit="a" * 40, digest="sha256:" + "b" * 64, reference="r", inputs_key="k")
    build = Build.objects.create(component=component, commit="a" * 40, status=Build.FAILED, image=image)
    users = {}
    for role in (None, Membership.VIEWER, Membership.DEVELOPER, Membership.ADMIN):
        user = User.objects.create(username=f"user-{role or 'stranger'}")  # no password to hash: sessions are forced
        if role:
            Membership.objects.create(project=project, user=user, role=role)
        users[role] = user
    Membership.objects.create(project=project, user=User.objects.create(username="dora"), role=Membership.VIEWER)
    approval = ApprovalRequest.objects.create(
        project=project,
        environment=project.environments.get(name="production"),
        component="web",
        kind="config.delete",
        summary="remove MODE",
        payload={"key": "MODE"},
        requested_by=User.objects.get(username="dora"),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    execution = Execution.objects.create(
        component=component,
        environment=project.environments.get(name="development"),
        trigger=Execution.MANUAL,
        triggered_at=timezone.now(),
        status=Execution.SUCCEEDED,
    )
    return {"project": project, "repo": repo, "build": build, "users": users, "approval": approval, "execution": execution}


def fill(route: str, shop) -> str:
    return "/" + (
        route.replace("<str:project>", "shop")
        .replace("<str:component>", "web")
        .replace("<int:build_id>", str(shop["build"].pk))
        .replace("<int:deployment_id>", "999999")
        .replace("<int:execution_id>", str(shop["execution"].pk))
        .replace("<str:username>", "dora")
        .replace("<str:environment>", "production")
        .replace("<int:approval_id>", str(shop["approval"].pk))
        .replace("<str:decision>", "reject")
    )


CASES = [
    (route, method, role)
    for route, methods in ROUTES.items()
    for method in methods
    for role in (None, Membership.VIEWER, Membership.DEVELOPER, Membership.ADMIN)
]


@pytest.mark.parametrize(("route", "method", "role"), CASES, ids=[f"{m} {r} as {role or 'non-member'}" for r, m, role in CASES])
def test_matrix(shop, route, method, role):
    action, body = ROUTES[route][method]
    if body:
        body = {k: v.replace("{repo}", shop["repo"]) if isinstance(v, str) else v for k, v in body.items()}
    user = shop["users"][role]
    url = fill(route, shop)
    if route.startswith("api/"):
        client = APIClient()
        client.force_authenticate(user)
        call = getattr(client, method.lower())
        response = call(url, body, format="json") if body is not None else call(url)
        text = response.content.decode(errors="replace")
    else:
        client = Client()
        client.force_login(user)
        response = client.get(url) if method == "GET" else client.post(url, body or {}, follow=True)
        shown = [str(m) for m in response.context["messages"]] if response.context and "messages" in response.context else []
        text = html.unescape(response.content.decode(errors="replace")) + " ".join(shown)
    seen = (response.status_code, text[:300])
    stranger_refusal = response.status_code == 404 or "Project 'shop' does not exist" in text
    member_refusal = response.status_code == 403 or "Your role in project 'shop'" in text
    if role is None:
        assert stranger_refusal and not member_refusal, seen  # not a 403: the project's existence is not revealed
    elif action in ROLE_ACTIONS[role]:
        assert not member_refusal and "Project 'shop' does not exist" not in text, seen
    else:
        assert member_refusal, seen
