"""What a configuration value may be: its key, its type and its size.

The descriptor checks its configurables' defaults with these rules, the config API and
the Deploy page check what users set, and a deployment checks what it would run with.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from choreo_site.errors import PlatformError

CONFIG_TYPES = ("string", "integer", "number", "boolean", "file")

# A value that is not a file becomes an environment variable: a name a shell accepts.
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
ENV_NAME_HELP = "letters, digits and '_', not starting with a digit, at most 128 characters"
# A file value is named like a file.
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
FILE_NAME_HELP = "letters, digits, '.', '_' and '-', at most 128 characters"


def kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__
    )


def coerce_config_value(ctype: str, value: Any, *, reveal: bool = True) -> str:
    """Check `value` against a configurable's type; return it as the string the container gets.

    Raises ValueError with the reason, which quotes the value unless `reveal` is false (a
    secret's value must not reach an error message). Strings from forms and the API are
    accepted for every type when they read as one (`"10"` for an integer, `"true"` for a
    boolean).
    """
    try:
        return _coerce(ctype, value)
    except ValueError as exc:
        if reveal:
            raise
        raise ValueError(str(exc).split(", got ")[0] + f", got {kind_of(value)} that is not one") from None


def _coerce(ctype: str, value: Any) -> str:
    if ctype == "string" or ctype == "file":
        if isinstance(value, (dict, list)) or value is None:
            raise ValueError(f"must be a {ctype}, got {kind_of(value)}")
        return value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    if ctype == "boolean":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower()
        raise ValueError(f"must be true or false, got {value!r}")
    if ctype == "integer":
        if isinstance(value, bool):
            raise ValueError(f"must be an integer, got {value!r}")
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,30}", value.strip()):
            return str(int(value.strip()))
        raise ValueError(f"must be an integer, got {value!r}")
    if ctype == "number":
        if isinstance(value, bool):
            raise ValueError(f"must be a number, got {value!r}")
        if isinstance(value, (int, float)) and value == value and value not in (float("inf"), float("-inf")):
            return repr(value) if isinstance(value, float) else str(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", value.strip()):
            return value.strip()
        raise ValueError(f"must be a number, got {value!r}")
    raise ValueError(f"unknown type {ctype!r}")


def check_request_size(content_length: int) -> None:
    """Refuse a request that could hold a file larger than any file value, before it is read.

    Uploads are kept in memory only (FILE_UPLOAD_HANDLERS), so a request past this limit
    would otherwise lose its file silently."""
    limit = 2 * settings.CONFIG_FILE_MAX_BYTES
    if content_length > limit:
        raise PlatformError(
            f"The request is {content_length} bytes; a configuration value or file must fit in {settings.CONFIG_FILE_MAX_BYTES} bytes.",
            errors={"file": ["Too large."]},
            status_code=413,
        )
