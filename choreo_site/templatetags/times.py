"""`{{ build.created_at|when }}`: one time format everywhere, relative ("3 minutes ago"),
with the absolute ISO time (UTC) on hover and in the markup."""

from datetime import UTC

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince, timeuntil

register = template.Library()


@register.filter
def when(moment):
    if not moment:
        return ""
    iso = moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    now = timezone.now()
    words = f"{timesince(moment, now, depth=1)} ago" if moment <= now else f"in {timeuntil(moment, now, depth=1)}"
    return format_html('<time datetime="{}" title="{}">{}</time>', iso, iso, words)
