"""The one error type for a refused action, and its one mapping to the API's shape.

Services raise `PlatformError` when they refuse: a missing configurable, a bad commit,
an action the current status does not allow. The API answers it as
`{"detail": ..., "errors": {field: [messages]}}`; pages show `detail` as a message.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class PlatformError(Exception):
    """An action the platform refuses, with the reason and the fields at fault."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: str, *, errors: dict[str, list[str]] | None = None, status_code: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or {}
        if status_code is not None:
            self.status_code = status_code

    def __str__(self) -> str:
        return self.detail


class NotFound(PlatformError, Http404):
    """Also an Http404, so a page that looks up a missing object answers 404."""

    status_code = status.HTTP_404_NOT_FOUND


class Forbidden(PlatformError, PermissionDenied):
    """Also a PermissionDenied, so a page answers 403."""

    status_code = status.HTTP_403_FORBIDDEN


class Conflict(PlatformError):
    status_code = status.HTTP_409_CONFLICT


def _flatten(data) -> dict[str, list[str]]:
    if isinstance(data, dict):
        return {str(k): [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in data.items()}
    if isinstance(data, list):
        return {"non_field_errors": [str(m) for m in data]}
    return {}


def api_exception_handler(exc, context):
    """DRF's handler, reshaped so every 4xx carries `detail` and `errors`."""
    if isinstance(exc, PlatformError):
        return Response({"detail": exc.detail, "errors": exc.errors}, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        first = next(iter(errors.items()), ("", ["Invalid input."]))
        detail = f"{first[0]}: {first[1][0]}" if first[0] and first[0] != "non_field_errors" else first[1][0]
        response.data = {"detail": detail, "errors": errors}
    else:
        response.data = {"detail": str(exc.detail) if hasattr(exc, "detail") else str(exc), "errors": {}}
    return response
