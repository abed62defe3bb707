"""The rule for the names of projects, environments and components.

They appear in URLs, Docker names, registry repositories and ingress host names
(`C.E.P.<domain>`), so each must be a DNS label: lower-case letters, digits and
hyphens, starting with a letter, at most 40 characters.
"""

import re

from django.core.validators import RegexValidator

NAME_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?$")
NAME_HELP = "lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen, at most 40 characters"

validate_name = RegexValidator(NAME_RE, f"Enter a valid name: {NAME_HELP}.")
