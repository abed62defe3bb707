"""What every app's pages share: a refused action becomes a message on the page."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from choreo_site import throttling, tokens
from choreo_site.errors import PlatformError

T = TypeVar("T")
KEPT = "kept-form:"


def kept_form(request, form: str) -> dict:
    """What a refused POST of `form` had typed, and each field's error, once: {"values",
    "errors"}. Empty when the last POST was not refused."""
    return request.session.pop(KEPT + form, None) or {"values": {}, "errors": {}}


def rules(request) -> dict:
    """A context processor: the rule of each kind of field, shown next to it."""
    from environments.names import NAME_HELP
    from environments.values import ENV_NAME_HELP

    return {"rules": {"name": NAME_HELP, "name_pattern": NAME_PATTERN, "config_key": ENV_NAME_HELP}}


# environments.names.NAME_RE for a browser's `pattern` attribute (which anchors it itself).
NAME_PATTERN = "[a-z]([a-z0-9\\-]{0,38}[a-z0-9])?"


def page_action(
    request, action: Callable[[], T], *, success: str | Callable[[T], str] | None = None, keep: tuple[str, dict[str, str]] | None = None
) -> T | None:
    """Run a service call for a POST form. A refusal is shown with its reason; returns None.

    `keep=(form, values)`: on a refusal, what was typed (`values`, by field) and the error of
    each field are kept for the page the user is sent back to (`kept_form`). Never pass a
    secret: the session stores them."""
    try:
        result = action()
    except PlatformError as exc:
        messages.error(request, exc.detail)
        if keep is not None:
            form, values = keep
            request.session[KEPT + form] = {
                "values": {name: str(value)[:2000] for name, value in values.items()},
                "errors": {name: [str(m) for m in messages_] for name, messages_ in exc.errors.items() if isinstance(messages_, list)},
            }
        return None
    if success:
        messages.success(request, success(result) if callable(success) else success)
    return result


class LoginView(auth_views.LoginView):
    """Django's login page, answering 429 with the reason when logins are throttled."""

    def form_invalid(self, form):
        response = super().form_invalid(form)
        reason = throttling.refusal(self.request)
        if reason:
            response.context_data["throttled"] = reason
            response.status_code = 429
        return response


# The profile page: a user's own API tokens (choreo_site/tokens.py).

TOKEN_DAYS_MAX = 3650


@login_required
def profile(request):
    new_key = None
    if request.method == "POST":
        days_text = request.POST.get("days", "").strip()
        if not days_text.isdigit() or not 1 <= int(days_text) <= TOKEN_DAYS_MAX:
            messages.error(request, f"Expiry: give a number of days from 1 to {TOKEN_DAYS_MAX}.")
        else:
            # Shown in this answer only, never in a redirect's message (messages live in a cookie).
            new_key, _ = tokens.token_create(user=request.user, days=int(days_text))
    context = {"tokens": tokens.token_list(user=request.user), "new_key": new_key, "days_max": TOKEN_DAYS_MAX}
    return render(request, "profile.html", context)


@login_required
@require_POST
def token_revoke(request, token_key):
    page_action(request, lambda: tokens.token_revoke(user=request.user, token_key=token_key), success=f"Token {token_key}… revoked.")
    return redirect("profile")
