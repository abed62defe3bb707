"""Schedules and executions, read-only: they change only through tasks.services (runs,
cancels, pauses, the scheduler), which the admin must not bypass. Errors and arguments
are shown redacted."""

from django.contrib import admin

from choreo_site.admin_site import ReadOnlyAdmin
from choreo_site.redaction import redact
from tasks.models import Execution, Schedule


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyAdmin):
    list_display = ["id", "component", "environment", "expression", "timezone", "paused", "next_due"]
    list_filter = ["paused", "component__project"]
    search_fields = ["component__name"]


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = ["id", "component", "environment", "trigger", "triggered_at", "status", "exit_code", "finished_at"]
    list_filter = ["status", "trigger", "component__project"]
    search_fields = ["component__name"]
    exclude = ["error", "args"]
    readonly_fields = ["redacted_error", "redacted_args"]

    @admin.display(description="error")
    def redacted_error(self, obj: Execution) -> str:
        return redact(obj.error, owner=obj)

    @admin.display(description="args")
    def redacted_args(self, obj: Execution) -> str:
        return redact(repr(obj.args), owner=obj) if obj.args is not None else ""
