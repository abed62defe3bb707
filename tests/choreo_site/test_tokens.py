"""Issue 10, finding 4: the database held API tokens in plaintext (as `nobody`, grep printed
the admin's). Tokens are stored as hashes; they expire and can be revoked; the header,
the endpoint and the command stay as SPEC says."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def with_token(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_token_is_stored_only_as_a_hash(admin_user):
    response = APIClient().post("/api/auth/token/", {"username": "admin", "password": "admin-password-for-tests"}, format="json")
    assert response.status_code == 200
    key = response.json()["token"]
    assert response.json()["expiry"]  # API_TOKEN_DAYS
    assert with_token(key).get("/api/projects/").status_code == 200
    rows = [str(row) for row in AuthToken.objects.values()]
    assert rows and not any(key in row for row in rows)
    assert not Token.objects.exists()  # DRF's plaintext table stays empty


def test_tokens_can_be_revoked_one_or_all(admin_user):
    first, second, third = (
        APIClient().post("/api/auth/token/", {"username": "admin", "password": "admin-password-for-tests"}, format="json").json()["token"]
        for _ in range(3)
    )
    assert with_token(first).post("/api/auth/logout/").status_code == 204
    assert with_token(first).get("/api/projects/").status_code == 401
    assert with_token(second).get("/api/projects/").status_code == 200
    assert with_token(second).post("/api/auth/logoutall/").status_code == 204
    assert with_token(third).get("/api/projects/").status_code == 401


def test_an_expired_token_is_refused(admin_user):
    out = io.StringIO()
    call_command("drf_create_token", "admin", stdout=out)
    key = out.getvalue().split()[2]
    assert with_token(key).get("/api/projects/").status_code == 200
    AuthToken.objects.filter(user=admin_user).update(expiry=timezone.now() - timedelta(seconds=1))
    assert with_token(key).get("/api/projects/").status_code == 401


def test_the_command_makes_a_token_and_reset_revokes_the_others(admin_user):
    out = io.StringIO()
    call_command("drf_create_token", "admin", "--days", "0", stdout=out)
    old = out.getvalue().split()[2]
    assert out.getvalue().startswith(f"Generated token {old} for user admin")
    assert AuthToken.objects.get().expiry is None
    out = io.StringIO()
    call_command("drf_create_token", "admin", "--reset", stdout=out)
    new = out.getvalue().split()[2]
    assert with_token(old).get("/api/projects/").status_code == 401
    assert with_token(new).get("/api/projects/").status_code == 200


def test_users_make_see_and_revoke_their_own_tokens_on_the_profile_page(django_user_model):
    from django.test import Client
    from knox.models import AuthToken

    alice = django_user_model.objects.create_user("alice", password="alice-password-123")
    bob = django_user_model.objects.create_user("bob", password="bob-password-123")
    page = Client()
    page.force_login(alice)
    made = page.post("/profile/", {"days": "7"})
    key = made.context["new_key"]
    assert made.status_code == 200 and key in made.content.decode()
    assert Client().get("/api/projects/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    token = AuthToken.objects.get(user=alice)
    assert 6 <= (token.expiry - token.created).days <= 7
    listed = page.get("/profile/").content.decode()
    assert token.token_key in listed and key not in listed  # shown once
    assert "give a number of days" in page.post("/profile/", {"days": "0"}).content.decode()
    assert AuthToken.objects.filter(user=alice).count() == 1

    other = Client()
    other.force_login(bob)
    refused = other.post(f"/profile/tokens/{token.token_key}/revoke", follow=True)
    assert "You have no token" in refused.content.decode() and AuthToken.objects.filter(user=alice).exists()
    page.post(f"/profile/tokens/{token.token_key}/revoke")
    assert not AuthToken.objects.filter(user=alice).exists()
    assert Client().get("/api/projects/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401
