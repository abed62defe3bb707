"""Projects, environments, members and configuration, read-only (choreo_site.admin_site)."""

from django.contrib import admin

from choreo_site.admin_site import ReadOnlyAdmin
from environments.models import ConfigValue, Environment, Membership, Project


class EnvironmentInline(admin.TabularInline):
    model = Environment
    extra = 0
    can_delete = False

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request, obj=None):
        return False


class MembershipInline(EnvironmentInline):
    """Who may do what in the project (environments.permissions); changed on the Members page."""

    model = Membership


@admin.register(Project)
class ProjectAdmin(ReadOnlyAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline, EnvironmentInline]


@admin.register(Environment)
class EnvironmentAdmin(ReadOnlyAdmin):
    list_display = ["name", "project", "position"]
    list_filter = ["project"]


@admin.register(ConfigValue)
class ConfigValueAdmin(ReadOnlyAdmin):
    """Read-only: values are set through the API and the Deploy page, where they are
    checked against the component's configurables. No value is ever shown here."""

    list_display = ["key", "project", "component", "environment", "secret", "is_file", "size", "current", "created_at"]
    list_filter = ["project", "secret", "current"]
    search_fields = ["key", "component"]
    exclude = ["plain", "sealed"]
    readonly_fields = ["project", "component", "environment", "key", "secret", "is_file", "filename", "fingerprint", "size", "current"]
