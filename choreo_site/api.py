"""What every app's API shares: strict serializers, `?wait=1`, and the API's root."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import wraps

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.http import JsonResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.decorators import api_view, schema
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from choreo_site import throttling
from choreo_site.errors import Forbidden
from choreo_site.models import AuditEvent
from choreo_site.tokens import token_create

WAIT_LIMIT = 300.0
# Poll often at first (a reused image is ready in a tenth of a second), then back off.
WAIT_POLL_FIRST, WAIT_POLL_MAX = 0.02, 0.5


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know, instead of silently ignoring a typo."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": [f"Expected a JSON object, got {type(data).__name__}."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)

    @classmethod
    def validated(cls, data) -> dict:
        serializer = cls(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


def wants_wait(request) -> bool:
    return request.GET.get("wait", "").lower() in ("1", "true", "yes")


def waitable(fetch: Callable[[int], tuple[dict, bool]]):
    """Wrap a DRF view so that `?wait=1` blocks until the created object is final.

    `fetch(id)` returns the object's API representation and whether it is final. The wait
    is asynchronous: under ASGI it holds no thread, so other requests go on meanwhile.
    """

    def decorator(view):
        sync_view = sync_to_async(view)

        @wraps(view)
        async def wrapper(request, *args, **kwargs):
            response = await sync_view(request, *args, **kwargs)
            # 200: an object under way already (a build of a commit that is building)
            if not wants_wait(request) or response.status_code not in (200, 201, 202) or "id" not in response.data:
                return response  # not made (an approval request waits for a person, not for a worker)
            ident = response.data["id"]
            deadline = time.monotonic() + WAIT_LIMIT
            data, final = await database_sync_to_async(fetch)(ident)
            pause = WAIT_POLL_FIRST
            while not final and time.monotonic() < deadline:
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, WAIT_POLL_MAX)
                data, final = await database_sync_to_async(fetch)(ident)
            return JsonResponse(data, status=200 if final else 202)

        wrapper.csrf_exempt = getattr(view, "csrf_exempt", False)
        return wrapper

    return decorator


@api_view(["GET"])
@schema(None)
def api_root(request):
    """`GET /api/`: where the documentation is, and every endpoint with its methods."""
    from drf_spectacular.generators import SchemaGenerator

    document = SchemaGenerator().get_schema(request=None, public=True)
    endpoints = [
        {"path": path, "methods": sorted(m.upper() for m in operations if m in HTTP_METHODS), "summary": _summary(operations)}
        for path, operations in document["paths"].items()
    ]
    return Response(
        {
            "docs": request.build_absolute_uri(reverse("api-docs")),
            "schema": request.build_absolute_uri(reverse("api-schema")),
            "endpoints": endpoints,
        }
    )


HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def _summary(operations: dict) -> str:
    for method in HTTP_METHODS:
        if method in operations:
            return (operations[method].get("description") or "").strip().split("\n")[0]
    return ""


class RedactedTextField(serializers.CharField):
    """A stored text (an error, a reason) as the API shows it: the secrets of the project
    of the row it belongs to masked (choreo_site.redaction.owner_project_id)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def get_attribute(self, instance):
        return instance, super().get_attribute(instance)

    def to_representation(self, value) -> str | None:
        from choreo_site.redaction import redact

        owner, text = value
        return None if text is None else redact(super().to_representation(text), owner=owner)


class ObtainToken(APIView):
    """`POST /api/auth/token/` `{"username", "password"}` → `{"token", "expiry"}`: a new token,
    stored hashed (choreo_site/tokens.py). Throttled like the login page: 429 with the reason."""

    authentication_classes: list = []
    permission_classes: list = []
    serializer_class = AuthTokenSerializer

    def post(self, request, *args, **kwargs):
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        if not serializer.is_valid():
            reason = throttling.refusal(request)
            if reason:
                return Response({"detail": reason, "errors": {}}, status=429)
            raise ValidationError(serializer.errors)
        key, expiry = token_create(user=serializer.validated_data["user"])
        return Response({"token": key, "expiry": expiry})


class AuditEventSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="project_name", read_only=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor", "superuser", "interface", "action", "project", "environment", "target", "outcome", "details"]


class AuditPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def audit_response(request, view, events) -> Response:
    """A page of `events`, filtered by the query (choreo_site.audit.events_filtered)."""
    from choreo_site import audit

    paginator = AuditPagination()
    page = paginator.paginate_queryset(audit.events_filtered(events, request.query_params), request, view=view)
    return paginator.get_paginated_response(AuditEventSerializer(page, many=True).data)


class PlatformAudit(APIView):
    """`GET /api/audit/`: every event, for superusers; the same filters, and `project`."""

    @extend_schema(parameters=[OpenApiParameter(name, str) for name in ("actor", "action", "environment", "since", "project")])
    def get(self, request):
        if not request.user.is_superuser:
            raise Forbidden("Only superusers can read the platform-wide audit trail.")
        events = AuditEvent.objects.all()
        if request.query_params.get("project"):
            events = events.filter(project_name=request.query_params["project"])
        return audit_response(request, self, events)
