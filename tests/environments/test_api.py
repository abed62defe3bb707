import pytest
from rest_framework.test import APIClient

from environments.models import Environment, Project

pytestmark = pytest.mark.django_db


def test_create_project_gets_default_environments(api):
    response = api.post("/api/projects/", {"name": "shop"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["environments"] == ["development", "production"]
    assert api.get("/api/projects/shop/").json()["name"] == "shop"
    assert [p["name"] for p in api.get("/api/projects/").json()] == ["shop"]


def test_environment_inserted_after_keeps_promotion_order(api):
    api.post("/api/projects/", {"name": "shop"}, format="json")
    response = api.post("/api/projects/shop/environments/", {"name": "staging", "after": "development"}, format="json")
    assert response.status_code == 201, response.content
    api.post("/api/projects/shop/environments/", {"name": "qa", "after": "development"}, format="json")
    api.post("/api/projects/shop/environments/", {"name": "dr"}, format="json")
    names = [e["name"] for e in api.get("/api/projects/shop/environments/").json()]
    assert names == ["development", "qa", "staging", "production", "dr"]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"name": "Bad Name"}, "name"),
        ({"name": "-x"}, "name"),
        ({"name": "x" * 41}, "name"),
        ({}, "name"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ],
)
def test_bad_project_input_names_the_field(api, payload, field):
    response = api.post("/api/projects/", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"], body
    assert body["detail"]
    assert not Project.objects.exists()


def test_non_object_body_is_refused(api):
    response = api.post("/api/projects/", [1, 2], format="json")
    assert response.status_code == 400
    assert response.json()["detail"]


def test_duplicate_project_is_a_conflict(api):
    api.post("/api/projects/", {"name": "shop"}, format="json")
    response = api.post("/api/projects/", {"name": "shop"}, format="json")
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


def test_bad_environment_input(api):
    api.post("/api/projects/", {"name": "shop"}, format="json")
    unknown_after = api.post("/api/projects/shop/environments/", {"name": "qa", "after": "nope"}, format="json")
    assert unknown_after.status_code == 400
    assert "after" in unknown_after.json()["errors"]
    dup = api.post("/api/projects/shop/environments/", {"name": "production"}, format="json")
    assert dup.status_code == 409
    assert Environment.objects.count() == 2


def test_unknown_project_is_404(api):
    for path in ("/api/projects/nope/", "/api/projects/nope/environments/", "/api/projects/nope/components/"):
        response = api.get(path)
        assert response.status_code == 404
        assert "nope" in response.json()["detail"]


def test_delete_project_removes_its_records(api):
    api.post("/api/projects/", {"name": "shop"}, format="json")
    assert api.delete("/api/projects/shop/").status_code == 204
    assert not Project.objects.exists()
    assert not Environment.objects.exists()


@pytest.mark.parametrize("header", [None, "Token wrong", "Bearer x", "Token "])
def test_missing_or_wrong_token_is_401(header, admin_user):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    for path in ("/api/projects/", "/api/builds/1/", "/api/projects/x/components/"):
        assert client.get(path).status_code == 401, path
    assert client.post("/api/projects/", {"name": "x"}, format="json").status_code == 401


def test_token_endpoint_and_schema(admin_user):
    client = APIClient()
    response = client.post("/api/auth/token/", {"username": "admin", "password": "admin-password-for-tests"}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    bad = client.post("/api/auth/token/", {"username": "admin", "password": "wrong"}, format="json")
    assert bad.status_code == 400
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/projects/{project}/components/{component}/builds/" in paths
    assert "/api/builds/{build_id}/cancel/" in paths


def test_environments_are_moved_renamed_and_deleted(api):
    api.post("/api/projects/", {"name": "shop"}, format="json")
    api.post("/api/projects/shop/environments/", {"name": "staging", "after": "development"}, format="json")

    def names():
        return [e["name"] for e in api.get("/api/projects/shop/environments/").json()]

    moved = api.patch("/api/projects/shop/environments/staging/", {"after": "production"}, format="json")
    assert moved.status_code == 200 and names() == ["development", "production", "staging"]
    assert api.patch("/api/projects/shop/environments/staging/", {"after": ""}, format="json").status_code == 200
    assert names() == ["staging", "development", "production"]
    renamed = api.patch("/api/projects/shop/environments/staging/", {"name": "qa", "after": "development"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "qa"
    assert names() == ["development", "qa", "production"]
    assert api.delete("/api/projects/shop/environments/qa/").status_code == 204
    assert names() == ["development", "production"]
    assert api.delete("/api/projects/shop/environments/production/").status_code == 204
    last = api.delete("/api/projects/shop/environments/development/")
    assert last.status_code == 409 and "environment" in last.json()["errors"]
    assert names() == ["development"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "Bad Name"}, 400, "name"),
        ({"name": "production"}, 409, "name"),
        ({"after": "nowhere"}, 400, "after"),
        ({"after": "development"}, 400, "after"),  # itself
        ({"protected": "maybe"}, 400, "protected"),
        ({"colour": "red"}, 400, "colour"),
    ],
)
def test_bad_environment_changes_name_the_field_and_change_nothing(api, body, status, field):
    api.post("/api/projects/", {"name": "shop"}, format="json")
    before = list(Environment.objects.values_list("name", "position", "protected"))
    answer = api.patch("/api/projects/shop/environments/development/", body, format="json")
    assert answer.status_code == status, answer.content
    assert field in answer.json()["errors"]
    assert list(Environment.objects.values_list("name", "position", "protected")) == before
