"""Issue 10: the login form and /api/auth/token/ answered 30 wrong passwords, then the
right one. Both are throttled, per user name and per client address, across processes
(the counts live in Redis)."""

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from choreo_site.throttling import _keys

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_counts(admin_user):
    class Request:
        META = {"REMOTE_ADDR": "127.0.0.1"}

    for name in ("admin", "someone-else"):
        cache.delete_many(_keys(Request, name))
    yield
    for name in ("admin", "someone-else"):
        cache.delete_many(_keys(Request, name))


def test_the_token_endpoint_refuses_even_the_right_password_after_many_wrong_ones(settings):
    api = APIClient()
    answers = [api.post("/api/auth/token/", {"username": "admin", "password": f"wrong-{i}"}, format="json") for i in range(30)]
    assert [a.status_code for a in answers[:10]] == [400] * 10
    assert {a.status_code for a in answers[10:]} == {429}
    right = api.post("/api/auth/token/", {"username": "admin", "password": "admin-password-for-tests"}, format="json")
    assert right.status_code == 429
    assert "Too many failed logins" in right.json()["detail"] and "token" not in right.json()


def test_the_login_page_is_throttled_too_and_shares_the_count():
    api = APIClient()
    for i in range(10):
        api.post("/api/auth/token/", {"username": "admin", "password": f"wrong-{i}"}, format="json")
    page = Client()
    response = page.post("/login/", {"username": "admin", "password": "admin-password-for-tests"})
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in page.session


def test_a_few_mistakes_are_forgiven(settings):
    page = Client()
    for i in range(3):
        assert page.post("/login/", {"username": "admin", "password": f"wrong-{i}"}).status_code == 200
    assert page.post("/login/", {"username": "admin", "password": "admin-password-for-tests"}).status_code == 302
