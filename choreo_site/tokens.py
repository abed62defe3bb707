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


def token_create(*, user, days: int | None = None) -> tuple[str, object]:
    """Make a token for `user`; returns the key (shown once) and its expiry (None: never)."""
    days = settings.API_TOKEN_DAYS if days is None else days
    instance, key = AuthToken.objects.create(user, expiry=timedelta(days=days) if days else None)
    return key, instance.expiry


def token_revoke_all(*, user) -> int:
    """Revoke every token of `user`; returns how many there were."""
    count, _ = AuthToken.objects.filter(user=user).delete()
    return count
