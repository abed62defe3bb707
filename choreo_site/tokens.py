"""API tokens: `Authorization: Token <key>`, stored only as hashes (django-rest-knox).

A token expires after API_TOKEN_DAYS (0: never) and can be revoked: the one in use with
`POST /api/auth/logout/`, all of a user's with `POST /api/auth/logoutall/`, or
`manage.py drf_create_token --reset`. Only its first characters are kept in clear, to
find the row; the key itself is shown once, when it is made.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from knox.models import AuthToken

from choreo_site import audit


def token_create(*, user, days: int | None = None) -> tuple[str, object]:
    """Make a token for `user`; returns the key (shown once) and its expiry (None: never)."""
    days = settings.API_TOKEN_DAYS if days is None else days
    instance, key = AuthToken.objects.create(user, expiry=timedelta(days=days) if days else None)
    # Made by the user (POST /api/auth/token/) or for them (a command, the profile page).
    audit.record("token.create", target=f"token {instance.token_key}… of {user.get_username()}", details={"days": days}, actor=_actor(user))
    return key, instance.expiry


def token_revoke_all(*, user) -> int:
    """Revoke every token of `user`; returns how many there were."""
    count, _ = AuthToken.objects.filter(user=user).delete()
    audit.record("token.revoke", target=f"every token of {user.get_username()}", details={"count": count}, actor=_actor(user))
    return count


def token_list(*, user) -> list[AuthToken]:
    """The user's tokens, newest first: their first characters, creation and expiry."""
    return list(AuthToken.objects.filter(user=user).order_by("-created"))


def token_revoke(*, user, token_key: str) -> None:
    """Revoke one of `user`'s tokens, named by its first characters."""
    from choreo_site.errors import NotFound

    count, _ = AuthToken.objects.filter(user=user, token_key=token_key).delete()
    if not count:
        raise NotFound(f"You have no token {token_key}….", errors={"token": ["No such token."]})
    audit.record("token.revoke", target=f"token {token_key}… of {user.get_username()}", actor=_actor(user))


def _actor(user):
    """The user acting: the request's when there is one (an admin acting for a user), else `user`."""
    return None if audit.current_user() is not None else user
