"""What every app's pages share: a refused action becomes a message on the page."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.contrib import messages
from django.contrib.auth import views as auth_views

from choreo_site import throttling
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
