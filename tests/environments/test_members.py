"""Issue 11: members and roles, managed from the API and the members page. A project keeps
an admin; bad input is refused naming the field, and nothing changes."""

import pytest
from django.contrib.auth.models import User

from environments.models import Membership, Project
from tests.conftest import api_as, page_as

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def users():
    return {name: User.objects.create_user(name, password=f"{name}-password-123") for name in ("alice", "bob", "carol")}


@pytest.fixture
def shop(users):
    assert api_as(users["alice"]).post("/api/projects/", {"name": "shop"}, format="json").status_code == 201
    return Project.objects.get(name="shop")


def roles(project) -> dict[str, str]:
    return dict(project.memberships.values_list("user__username", "role"))


def test_the_creator_is_admin_and_adds_members_through_the_api(users, shop):
    alice = api_as(users["alice"])
    assert roles(shop) == {"alice": "admin"}
    answer = alice.put("/api/projects/shop/members/bob/", {"role": "developer"}, format="json")
    assert answer.status_code == 201 and answer.json()["role"] == "developer"
    assert alice.put("/api/projects/shop/members/bob/", {"role": "viewer"}, format="json").status_code == 200
    listed = alice.get("/api/projects/shop/members/").json()
    assert [(m["username"], m["role"]) for m in listed] == [("alice", "admin"), ("bob", "viewer")]
    # A viewer reads the members, and may not change them (403, naming the role).
    bob = api_as(users["bob"])
    assert bob.get("/api/projects/shop/members/").status_code == 200
    refused = bob.put("/api/projects/shop/members/carol/", {"role": "admin"}, format="json")
    assert refused.status_code == 403 and "viewer" in refused.json()["detail"]
    # A non-member does not see that the project exists.
    assert api_as(users["carol"]).get("/api/projects/shop/members/").status_code == 404
    assert alice.delete("/api/projects/shop/members/bob/").status_code == 204
    assert roles(shop) == {"alice": "admin"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("put", "/api/projects/shop/members/nobody/", {"role": "viewer"}, 400, "username"),
        ("put", "/api/projects/shop/members/bob/", {"role": "owner"}, 400, "role"),
        ("put", "/api/projects/shop/members/bob/", {"role": 3}, 400, "role"),
        ("put", "/api/projects/shop/members/bob/", {}, 400, "role"),
        ("put", "/api/projects/shop/members/bob/", {"role": "viewer", "admin": True}, 400, "admin"),
        ("put", "/api/projects/shop/members/alice/", {"role": "developer"}, 409, "role"),  # the last admin
        ("delete", "/api/projects/shop/members/alice/", None, 409, "role"),  # the last admin
        ("delete", "/api/projects/shop/members/carol/", None, 404, "username"),  # not a member
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(users, shop, method, path, body, status, field):
    alice = api_as(users["alice"])
    alice.put("/api/projects/shop/members/bob/", {"role": "developer"}, format="json")
    before = roles(shop)
    answer = getattr(alice, method)(path, body, format="json") if body is not None else getattr(alice, method)(path)
    assert answer.status_code == status, answer.content
    assert field in answer.json()["errors"], answer.json()
    assert roles(shop) == before


def test_an_admin_can_step_down_once_another_admin_exists(users, shop):
    alice = api_as(users["alice"])
    alice.put("/api/projects/shop/members/bob/", {"role": "admin"}, format="json")
    assert alice.put("/api/projects/shop/members/alice/", {"role": "viewer"}, format="json").status_code == 200
    assert roles(shop) == {"alice": "viewer", "bob": "admin"}
    assert api_as(users["bob"]).delete("/api/projects/shop/members/bob/").status_code == 409


def test_the_members_page_offers_the_forms_to_admins_only_and_says_why(users, shop):
    Membership.objects.create(project=shop, user=users["bob"], role=Membership.DEVELOPER)
    admin_page = page_as(users["alice"]).get("/projects/shop/members/").content.decode()
    assert "Add member" in admin_page and 'name="role"' in admin_page
    developer_page = page_as(users["bob"]).get("/projects/shop/members/").content.decode()
    assert "Add member" not in developer_page and "Remove" not in developer_page
    assert "Only project admins can manage members and environments" in developer_page
    # The form's action refuses too: the page hides the button, the service decides.
    response = page_as(users["bob"]).post("/projects/shop/members/set", {"username": "carol", "role": "admin"})
    assert response.status_code == 403
    assert roles(shop) == {"alice": "admin", "bob": "developer"}
    assert page_as(users["carol"]).get("/projects/shop/members/").status_code == 404


def test_an_admin_manages_members_from_the_page(users, shop):
    alice = page_as(users["alice"])
    alice.post("/projects/shop/members/set", {"username": "bob", "role": "developer"})
    alice.post("/projects/shop/members/set", {"username": "bob", "role": "viewer"})
    assert roles(shop) == {"alice": "admin", "bob": "viewer"}
    answer = alice.post("/projects/shop/members/set", {"username": "nobody", "role": "viewer"}, follow=True)
    assert "There is no user &#x27;nobody&#x27;." in answer.content.decode()
    answer = alice.post("/projects/shop/members/remove", {"username": "alice"}, follow=True)
    assert "last admin" in answer.content.decode()
    alice.post("/projects/shop/members/remove", {"username": "bob"})
    assert roles(shop) == {"alice": "admin"}


def test_pages_hide_what_a_role_may_not_do_and_say_who_may(users, shop, make_repo):
    from builds.services import component_create

    component_create(project=shop, name="web", repository=str(make_repo().path))
    Membership.objects.create(project=shop, user=users["bob"], role=Membership.VIEWER)
    viewer, admin = page_as(users["bob"]), page_as(users["alice"])
    pages = {
        "/projects/shop/": ("Create component", "Only project admins can manage members and environments"),
        "/projects/shop/components/web/build/": ('id="build-latest"', "Only project developers can start and cancel builds."),
        "/projects/shop/components/web/deploy/": ('id="deploy-button"', "Only project developers can deploy, promote and roll back."),
        "/projects/shop/environments/": ("Create environment", "Only project admins can manage members and environments"),
    }
    for url, (button, why) in pages.items():
        as_viewer, as_admin = viewer.get(url).content.decode(), admin.get(url).content.decode()
        assert button not in as_viewer and why in as_viewer, url
        assert button in as_admin and why not in as_admin, url
