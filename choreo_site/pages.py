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


def page_action(request, action: Callable[[], T], *, success: str | Callable[[T], str] | None = None) -> T | None:
    """Run a service call for a POST form. A refusal is shown with its reason; returns None."""
    try:
        result = action()
    except PlatformError as exc:
        messages.error(request, exc.detail)
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
