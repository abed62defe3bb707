"""Components, builds, images and push events, read-only (choreo_site.admin_site)."""

from django.contrib import admin

from builds.models import ApiSpec, Build, Component, Image, PushEvent
from choreo_site.admin_site import ReadOnlyAdmin


@admin.register(Component)
class ComponentAdmin(ReadOnlyAdmin):
    list_display = ["name", "project", "type", "repository", "branch", "path", "auto_build_on_commit", "auto_deploy_on_build"]
    list_filter = ["project", "type"]
    search_fields = ["name", "repository"]
    # The webhook secret is write-only: set through the API, never shown.
    exclude = ["webhook_secret", "repository_credentials"]


@admin.register(Build)
class BuildAdmin(ReadOnlyAdmin):
    list_display = ["id", "component", "commit", "status", "trigger", "digest", "created_at", "finished_at"]
    list_filter = ["status", "trigger", "component__project"]
    search_fields = ["commit", "digest"]
    # Status moves only through the pipeline's conditional updates; the admin shows it.
    readonly_fields = [f.name for f in Build._meta.fields]


@admin.register(Image)
class ImageAdmin(ReadOnlyAdmin):
    list_display = ["reference", "component", "commit", "size", "created_at"]
    search_fields = ["digest", "commit"]
    readonly_fields = [f.name for f in Image._meta.fields]


@admin.register(ApiSpec)
class ApiSpecAdmin(ReadOnlyAdmin):
    list_display = ["build", "endpoint", "path"]


@admin.register(PushEvent)
class PushEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "component", "provider", "event", "after", "outcome", "reason"]
    list_filter = ["provider", "outcome"]
    readonly_fields = [f.name for f in PushEvent._meta.fields]
