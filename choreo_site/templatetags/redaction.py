"""`{{ text|redacted }}`: a stored text (an error, a reason) shown with every secret masked."""

from django import template

from choreo_site.redaction import redact

register = template.Library()


@register.filter
def redacted(text: str) -> str:
    return redact(text)
