"""Issue 11: the number of queries a request makes does not grow with the number of
projects a user can see, nor with the members a project has."""

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from builds.models import Component
from environments.models import Environment, Membership, Project

pytestmark = pytest.mark.django_db


def queries_of(call) -> int:
    seen = []

    def count(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = call()
    assert response.status_code == 200
    return len(seen)


def grow(user, projects: int, members: int) -> None:
    """Give `user` `projects` more projects, each with `members` more members."""
    start = Project.objects.count()
    made = Project.objects.bulk_create([Project(name=f"p{start + i}") for i in range(projects)])
    made = list(Project.objects.filter(name__in=[p.name for p in made]))
    Environment.objects.bulk_create([Environment(project=p, name=n, position=i) for p in made for i, n in enumerate(("dev", "prod"))])
    Component.objects.bulk_create([Component(project=p, name="web", repository="/nowhere") for p in made])
    others = User.objects.bulk_create([User(username=f"u{start}-{i}") for i in range(members)])
    others = list(User.objects.filter(username__in=[u.username for u in others]))
    Membership.objects.bulk_create(
        [Membership(project=p, user=user, role="developer") for p in made]
        + [Membership(project=p, user=o, role="viewer") for p in made for o in others]
    )


@pytest.mark.parametrize("as_superuser", [False, True])
def test_lists_make_as_many_queries_for_1_project_as_for_30(as_superuser):
    user = User.objects.create_user("alice", password="alice-password-123", is_superuser=as_superuser)
    api, page = APIClient(), Client()
    api.force_authenticate(user)
    page.force_login(user)
    calls = {
        "API project list": lambda: api.get("/api/projects/"),
        "project list page": lambda: page.get("/"),
        "members": lambda: api.get("/api/projects/p0/members/"),
        "project page": lambda: page.get("/projects/p0/"),
        "audit": lambda: api.get("/api/projects/p0/audit/"),
    }
    grow(user, projects=1, members=1)
    few = {name: queries_of(call) for name, call in calls.items()}
    grow(user, projects=29, members=8)
    Membership.objects.bulk_create(
        [Membership(project=Project.objects.get(name="p0"), user=u, role="viewer") for u in User.objects.filter(username__startswith="u1-")]
    )
    many = {name: queries_of(call) for name, call in calls.items()}
    assert many == few
