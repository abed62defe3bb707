from django.contrib import admin

from environments.models import Environment, Project


class EnvironmentInline(admin.TabularInline):
    model = Environment
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [EnvironmentInline]


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "position"]
    list_filter = ["project"]
