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


@register.filter
def running_for(started):
    """`{{ build.started_at|running_for }}`: how long a run has been running, to the second
    ("1 min 05 s"), for a list that refreshes while it runs."""
    if not started:
        return ""
    seconds = max(int((timezone.now() - started).total_seconds()), 0)
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
