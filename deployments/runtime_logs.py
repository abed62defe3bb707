"""Runtime logs: what the active replicas of a component print in an environment, each line
with its time and replica, redacted. The API, the Logs page and its WebSocket read them here.

Docker stamps each line (RFC 3339, nanoseconds, trailing zeros trimmed). Stamps are brought
to one width so that they sort and compare as text; a follower asks for lines since the last
stamp it has and drops what it already sent.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime

from choreo_site.errors import PlatformError
from choreo_site.redaction import Redactor, platform_secrets
from deployments import rollout, services
from deployments.runtimes import RuntimeFailure

SINCE_CHOICES = {"5m": 300, "15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
_SINCE = re.compile(r"^(\d{1,7})([smh])$")
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")
MAX_LINES = 5000


@dataclass(frozen=True)
class LogLine:
    at: str  # UTC, "2026-11-29T03:00:00.123456789Z": sorts as text
    replica: str
    text: str

    def __str__(self) -> str:
        return f"{self.at} {self.replica} {self.text}"


def since_seconds(value: str | None) -> int | None:
    """`30s`, `15m`, `2h` as seconds; None when not given. Refuses anything else, naming it."""
    if not value:
        return None
    match = _SINCE.match(value)
    if not match:
        raise PlatformError(f"since {value[:20]!r} must look like 30s, 5m or 2h.", errors={"since": ["Use a number and s, m or h."]})
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def normal_stamp(stamp: str) -> str | None:
    """Docker's stamp at full width, or None for a line without one."""
    match = _STAMP.match(stamp)
    if not match:
        return None
    return f"{match.group(1)}.{(match.group(2) or '').ljust(9, '0')}Z"


def stamp_seconds(stamp: str) -> float:
    """A normalised stamp as a Unix time, for asking the runtime what follows it."""
    whole = datetime.strptime(stamp[:19] + "+0000", "%Y-%m-%dT%H:%M:%S%z").timestamp()
    return whole + int(stamp[20:29]) / 1e9


def replicas(*, component, environment) -> list[str]:
    """The names of the active deployment's replicas, for the filter."""
    active = services.deployment_active(component=component, environment=environment)
    return [r["name"] for r in active.replicas] if active else []


class RedactorCache:
    """A follower's Redactor, made again when the active deployment changes and at least
    every `refresh_every` seconds, instead of on every look (platform_secrets queries and
    decrypts). A replica can print only what its deployment gave it, and those secrets
    exist before it becomes active: a new deployment always gets a fresh Redactor."""

    refresh_every = 5.0

    def __init__(self):
        self._key = None
        self._made_at = float("-inf")
        self._redactor = None

    def get(self, project_id: int, deployment_id: int) -> Redactor:
        now = time.monotonic()
        if self._key != (project_id, deployment_id) or now - self._made_at > self.refresh_every:
            self._redactor = Redactor(platform_secrets(project_id))
            self._key, self._made_at = (project_id, deployment_id), now
        return self._redactor


def lines(
    *,
    component,
    environment,
    since: float | None,
    replica: str | None = None,
    after: str | None = None,
    redactors: RedactorCache | None = None,
) -> list[LogLine]:
    """Lines of the active replicas from Unix time `since` (or all), oldest first; only
    `replica` when given; only those stamped later than `after`. At most MAX_LINES, the newest.
    A follower that asks again and again passes its `redactors`."""
    active = services.deployment_active(component=component, environment=environment)
    if active is None:
        raise PlatformError(
            f"Nothing is deployed in {environment.name}.", errors={"environment": ["No active deployment."]}, status_code=404
        )
    if after is not None:
        since = max(since or 0, stamp_seconds(after) - 1)  # whole seconds at the runtime; the stamp drops the rest
    if since is not None and since <= 0:
        since = None  # `since=9999999h` reaches before 1970: everything
    redact = (redactors or RedactorCache()).get(component.project_id, active.pk)
    found = []
    try:
        pairs = rollout.runtime_log_pairs(deployment=active, since=since)
    except RuntimeFailure as exc:
        raise PlatformError(f"The runtime does not give the logs now: {exc}", status_code=503) from None
    for name, stamp, text in pairs:
        if replica and name != replica:
            continue
        at = normal_stamp(stamp)
        if at is None or (after is not None and at <= after):
            continue
        found.append(LogLine(at, name, redact(text)))
    found.sort(key=lambda line: (line.at, line.replica))
    return found[-MAX_LINES:]


def since_default(value: str | None) -> tuple[str, float]:
    """The Logs page's time range: one of SINCE_CHOICES (15 minutes when not given or unknown)."""
    key = value if value in SINCE_CHOICES else "15m"
    return key, time.time() - SINCE_CHOICES[key]
