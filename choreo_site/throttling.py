"""Throttling anonymous and failing callers, in the shared cache (Redis).

Login throttling, one rule for the login page and `POST /api/auth/token/`.

After LOGIN_FAILURE_LIMIT failed attempts within LOGIN_FAILURE_WINDOW seconds, for one
user name or from one client address, every attempt is refused until the window has
passed, the right password included. Failures are counted from Django's
`user_login_failed` signal, which both entry points send, in the shared cache (Redis), so
every web process sees the same counts. The check is an authentication backend, so no
entry point can skip it.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver


def client_address(request) -> str:
    """The client's address. Behind the web front, gunicorn hears a unix socket and the
    front appends the client's address to X-Forwarded-For: the last entry is the one it saw."""
    if request is None:
        return ""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    remote = request.META.get("REMOTE_ADDR", "")
    if forwarded and not remote:
        return forwarded.rsplit(",", 1)[-1].strip()
    return remote


def _keys(request, username: str | None) -> list[str]:
    name = hashlib.sha256((username or "").lower().encode()).hexdigest()[:24]
    return [f"login-failures:user:{name}", f"login-failures:address:{client_address(request)}"]


def wait_seconds(request, username: str | None) -> int:
    """0 when attempts are allowed, else how long until they are again."""
    now = time.time()
    for key in _keys(request, username):
        failures = [t for t in cache.get(key, []) if now - t < settings.LOGIN_FAILURE_WINDOW]
        if len(failures) >= settings.LOGIN_FAILURE_LIMIT:
            return int(settings.LOGIN_FAILURE_WINDOW - (now - failures[-settings.LOGIN_FAILURE_LIMIT])) + 1
    return 0


@receiver(user_login_failed)
def _count_failure(sender, credentials, request=None, **kwargs):
    now = time.time()
    for key in _keys(request, credentials.get("username")):
        recent = [t for t in cache.get(key, []) if now - t < settings.LOGIN_FAILURE_WINDOW]
        cache.set(key, [*recent, now][-settings.LOGIN_FAILURE_LIMIT * 2 :], timeout=settings.LOGIN_FAILURE_WINDOW)


class ThrottledModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        wait = wait_seconds(request, username)
        if wait:
            if request is not None:
                request.login_throttled = wait
            raise PermissionDenied(f"too many failed logins: try again in {wait} s")
        return super().authenticate(request, username=username, password=password, **kwargs)


def refusal(request) -> str | None:
    """The message for a refused login that was throttled, for the page and the API."""
    wait = getattr(request, "login_throttled", 0)
    return f"Too many failed logins for this user or from this address: try again in {wait} s." if wait else None


# A counter per key in a fixed window, for refusals of anonymous callers (webhooks).


def count(key: str) -> int:
    return cache.get(f"counter:{key}", 0)


def add(key: str, *, window: int) -> int:
    """Count one more under `key`; the count starts afresh `window` seconds after its first."""
    cache.add(f"counter:{key}", 0, timeout=window)
    try:
        return cache.incr(f"counter:{key}")
    except ValueError:  # expired between the two calls
        cache.set(f"counter:{key}", 1, timeout=window)
        return 1
