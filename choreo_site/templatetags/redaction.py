"""`{{ build.error|redacted:build }}`: a stored text (an error, a reason) shown with the
secrets of its owner's project masked (every project's when no owner is given)."""

from django import template

from choreo_site.redaction import redact

register = template.Library()


@register.filter
def redacted(text: str, owner=None) -> str:
    return redact(text, owner=owner)
