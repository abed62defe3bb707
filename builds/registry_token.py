"""The token endpoint the embedded registry sends Docker clients to (`/registry/token`).

`docker login <registry> -u <user> -p <API token>` (or the account's password), then
`docker pull <image>`: the client asks here for the scopes it needs, and gets pull on the
repositories of the projects its user may view. Nobody gets push or delete: images are
built and pushed by the platform only. Unknown or forbidden repositories are left out
of the token, not refused, as Distribution's token protocol expects; the registry then
answers the pull with 401.
"""

from __future__ import annotations

import base64
import binascii

from django.conf import settings
from django.contrib.auth import authenticate
from django.http import JsonResponse
from django.views.decorators.http import require_GET
from knox.auth import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from builds import registry
from builds.services import component_by_names
from choreo_site import throttling
from choreo_site.errors import PlatformError


def _user(request):
    """The user of a Basic `Authorization` header (API token or password), None if none
    was sent; raises AuthenticationFailed for wrong credentials."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    try:
        username, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationFailed("malformed Basic credentials") from None
    if scheme.lower() != "basic" or not username or not secret:
        raise AuthenticationFailed("send Basic credentials: a user name and an API token")
    try:
        user, _ = TokenAuthentication().authenticate_credentials(secret.encode())
    except AuthenticationFailed:
        user = authenticate(request, username=username, password=secret)  # throttled, like the login page
    if user is None or not user.is_active or user.get_username() != username:
        raise AuthenticationFailed("wrong user name or token")
    return user


def _granted(scope: str, user) -> dict | None:
    """The access a `repository:<name>:<actions>` scope gets: pull at most."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if kind != "repository" or "pull" not in actions.split(",") or name.count("/") != 1:
        return None
    project, component = name.split("/")
    try:
        component_by_names(project=project, component=component, actor=user)
    except PlatformError:
        return None
    return {name: ("pull",)}


@require_GET
def registry_token(request):
    if not settings.REGISTRY_EMBEDDED:
        return JsonResponse({"details": "this platform uses an external registry (REGISTRY_URL): log in there"}, status=404)
    if request.GET.get("service") != registry.TOKEN_SERVICE:
        return JsonResponse({"details": f"unknown service: this endpoint serves {registry.TOKEN_SERVICE}"}, status=400)
    try:
        user = _user(request)
    except AuthenticationFailed as exc:
        response = JsonResponse({"details": throttling.refusal(request) or str(exc.detail)}, status=401)
        response["WWW-Authenticate"] = 'Basic realm="choreo registry"'
        return response
    access: dict = {}
    if user is not None:
        for scope in request.GET.getlist("scope"):
            for part in scope.split():
                access |= _granted(part, user) or {}
    token = registry.token(access, subject=user.get_username() if user else "anonymous")
    return JsonResponse({"token": token, "access_token": token, "expires_in": registry.TOKEN_SECONDS})
