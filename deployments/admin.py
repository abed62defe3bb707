"""Releases, deployments and ingress routes, read-only: they change only through the
services (deploy, promote, rollback), which the admin must not bypass. Configuration
snapshots hold version ids, never values, and errors are shown redacted."""

from django.contrib import admin

from choreo_site.admin_site import ReadOnlyAdmin
from choreo_site.redaction import redact
from deployments.models import Deployment, Release, Route


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ["id", "component", "build", "digest", "created_at"]
    list_filter = ["component__project"]
    search_fields = ["digest", "component__name"]
    exclude = ["descriptor"]


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = ["id", "component", "environment", "kind", "status", "created_at", "finished_at"]
    list_filter = ["status", "kind", "component__project"]
    search_fields = ["component__name", "release__digest"]
    exclude = ["error"]
    readonly_fields = ["redacted_error"]

    @admin.display(description="error")
    def redacted_error(self, obj: Deployment) -> str:
        return redact(obj.error, owner=obj)


@admin.register(Route)
class RouteAdmin(ReadOnlyAdmin):
    list_display = ["host", "component", "environment", "slot"]
    search_fields = ["host"]
