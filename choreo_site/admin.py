from django.contrib import admin

from choreo_site.admin_site import ReadOnlyAdmin
from choreo_site.models import AuditEvent, LogLine


@admin.register(LogLine)
class LogLineAdmin(ReadOnlyAdmin):
    list_display = ["stream", "seq", "text", "created_at"]
    search_fields = ["stream"]
    readonly_fields = ["stream", "seq", "text", "created_at"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The platform-wide audit trail, for superusers: read-only, as events are append-only."""

    list_display = ["at", "actor", "superuser", "interface", "action", "project_name", "environment", "target", "outcome"]
    list_filter = ["action", "interface", "outcome", "superuser"]
    search_fields = ["actor", "project_name", "target"]
    date_hierarchy = "at"
