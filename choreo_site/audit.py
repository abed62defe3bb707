"""The audit trail: every change is recorded once, by the service that makes it.

Who acted and through what comes from the context: `AuditMiddleware` names the request
(its user once authenticated, DRF's token users included, and the interface from its
path); workers and commands say it with `acting(...)`: a webhook's processing acts as
`webhook`, the scheduler as `schedule`, anything else unnamed is `system`. A service can
also name its actor explicitly.

Events hold names, ids and versions, never a secret value, and their texts are redacted
with their project's secrets before they are stored.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, time

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.utils import timezone

from choreo_site.models import AuditEvent


@dataclass(frozen=True)
class Acting:
    actor: object  # a user, or one of "webhook", "schedule", "system"
    interface: str


_acting: ContextVar[Acting | None] = ContextVar("audit_acting", default=None)
_request: ContextVar[object | None] = ContextVar("audit_request", default=None)


@contextlib.contextmanager
def acting(actor, interface: str):
    """Record changes made inside as made by `actor` (a user, or a name such as
    "webhook") through `interface`."""
    token = _acting.set(Acting(actor, interface))
    try:
        yield
    finally:
        _acting.reset(token)


def interface_of(path: str) -> str:
    for prefix, interface in (("/api/", "api"), ("/admin/", "admin"), ("/hooks/", "webhook"), ("/registry/", "api")):
        if path.startswith(prefix):
            return interface
    return "page"


class AuditMiddleware:
    """Names the request for the events recorded while it is served. The user is read when
    an event is recorded: by then DRF has authenticated a token's user too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


def current_user():
    """The authenticated user of the request being served, if any."""
    request = _request.get()
    user = getattr(request, "user", None) if request is not None else None
    return user if getattr(user, "is_authenticated", False) else None


def _current(actor) -> tuple[object, str]:
    acting_now = _acting.get()
    request = _request.get()
    interface = acting_now.interface if acting_now else interface_of(request.path) if request is not None else "system"
    if actor is None:
        if acting_now is not None:
            actor = acting_now.actor
        elif request is not None:
            user = getattr(request, "user", None)
            actor = user if getattr(user, "is_authenticated", False) else ("webhook" if interface == "webhook" else "anonymous")
        else:
            actor = "system"
    return actor, interface


def record(
    action: str,
    *,
    project=None,
    environment=None,
    target: str = "",
    outcome: str = AuditEvent.OK,
    details: dict | None = None,
    actor=None,
) -> AuditEvent:
    """Append one event. `project` is a Project (or None for platform-wide events),
    `environment` an Environment or a name, `actor` a user or a name (default: the context's)."""
    from choreo_site.redaction import Redactor, platform_secrets

    actor, interface = _current(actor)
    is_user = not isinstance(actor, str)
    owner_id = project.pk if project is not None else None
    redact = Redactor(platform_secrets(owner_id))

    def clean(value):
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return AuditEvent.objects.create(
        actor=actor.get_username() if is_user else actor,
        actor_user_id=actor.pk if is_user else None,
        superuser=bool(is_user and actor.is_superuser),
        interface=interface,
        action=action,
        project_id=owner_id,
        project_name=project.name if project is not None else "",
        environment=getattr(environment, "name", environment) or "",
        target=clean(target)[:200],
        outcome=outcome,
        details=clean(details or {}),
    )


# Logins and logouts, through Django's signals: the login page, and knox's token logout
# views (which send `user_logged_out` when they revoke a token).


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    record("login", target=f"user {user.get_username()}", actor=user)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    # Anyone can type a name: the attempt is the anonymous caller's, against that name.
    name = str(credentials.get("username", ""))[:100]
    record("login", target=f"user {name}", outcome=AuditEvent.REFUSED, actor="anonymous")


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        action = "token.revoke" if request is not None and interface_of(request.path) == "api" else "logout"
        record(action, target=f"user {user.get_username()}", actor=user)


# Reading the trail: one filter for the pages and the API.

FILTERS = ("actor", "action", "environment", "since")


def events_filtered(events, params) -> object:
    """`events` narrowed by `actor`, `action` (exact, or a prefix ending in "." such as
    "deployment."), `environment` and `since` (an ISO 8601 time) from `params`; newest first.
    A `since` that is not a time is refused, naming it."""
    from django.utils.dateparse import parse_date, parse_datetime

    from choreo_site.errors import PlatformError

    if params.get("actor"):
        events = events.filter(actor=params["actor"])
    action = params.get("action")
    if action:
        events = events.filter(action__startswith=action) if action.endswith(".") else events.filter(action=action)
    if params.get("environment"):
        events = events.filter(environment=params["environment"])
    since = params.get("since")
    if since:
        try:
            moment = parse_datetime(since) or (parse_date(since) and datetime.combine(parse_date(since), time.min))
        except ValueError:
            moment = None
        if not moment:
            detail = f"since {since!r} is not a time: use ISO 8601, such as 2026-11-28T14:00:00Z."
            raise PlatformError(detail, errors={"since": ["Not a time."]})
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, UTC)
        events = events.filter(at__gte=moment)
    return events.order_by("-at", "-id")
