"""The admin site: for superusers only (INSTALLED_APPS names `PlatformAdminConfig`), and
read-only (`ReadOnlyAdmin`).

Everyone else works through the pages and the API, where project roles decide
(environments.permissions): Django's per-model permissions know nothing of projects, so a
staff user must not get in on them. And every change goes through the services, which
check the rules (a project keeps an admin, teardown before delete) and write the audit
trail: the admin shows, it does not change. No model imports here: the app registry
loads it.
"""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class PlatformAdminSite(admin.AdminSite):
    site_header = "Platform administration"

    def has_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser


class PlatformAdminConfig(AdminConfig):
    default_site = "choreo_site.admin_site.PlatformAdminSite"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows rows; adding, changing and deleting go through the pages and the API."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
