from django.contrib import admin

from environments.models import ConfigValue, Environment, Membership, Project


class EnvironmentInline(admin.TabularInline):
    model = Environment
    extra = 0


class MembershipInline(admin.TabularInline):
    """Who may do what in the project (environments.permissions)."""

    model = Membership
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline, EnvironmentInline]


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "position"]
    list_filter = ["project"]


@admin.register(ConfigValue)
class ConfigValueAdmin(admin.ModelAdmin):
    """Read-only: values are set through the API and the Deploy page, where they are
    checked against the component's configurables. No value is ever shown here."""

    list_display = ["key", "project", "component", "environment", "secret", "is_file", "size", "current", "created_at"]
    list_filter = ["project", "secret", "current"]
    search_fields = ["key", "component"]
    exclude = ["plain", "sealed"]
    readonly_fields = ["project", "component", "environment", "key", "secret", "is_file", "filename", "fingerprint", "size", "current"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
