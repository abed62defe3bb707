from django.contrib import admin

from choreo_site.models import LogLine


@admin.register(LogLine)
class LogLineAdmin(admin.ModelAdmin):
    list_display = ["stream", "seq", "text", "created_at"]
    search_fields = ["stream"]
    readonly_fields = ["stream", "seq", "text", "created_at"]
