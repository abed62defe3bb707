"""Redaction: every secret a project holds, masked as `***` in every log and text of that
project the platform keeps, streams or shows; every secret in the platform's own logs.
No model imports here: the logging configuration loads this module before the apps are
ready."""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit

from ahocorasick_rs import AhoCorasick, MatchKind
from django.conf import settings

MASK = "***"
# Secrets shorter than this would mask ordinary words in every log line.
MIN_SECRET_LENGTH = 4


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 of `raw` wherever it starts in a longer encoded text (as in an HTTP Basic
    header, `user:password`): for each of the three alignments, the part that depends on
    `raw` alone."""
    forms = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for shift in range(3):
            encoded = encode(b"\0" * shift + raw).decode()
            start = 4 if shift else 0  # the first group mixes in the bytes before
            end = len(encoded) if (shift + len(raw)) % 3 == 0 else len(encoded) - 4  # the last mixes in those after
            forms.add(encoded[start:end])
        forms.add(encode(raw).decode().rstrip("="))
    return forms


class Redactor:
    """Replaces each secret value, its lines, and its base64 and URL-encoded forms with `***`."""

    def __init__(self, secrets: Iterable[str] = ()):
        values: set[str] = set()
        for value in secrets:
            if value:
                values.add(value)
                # Logs are read line by line: a multi-line secret is masked line by line too.
                values.update(line.strip() for line in value.splitlines() if len(line.strip()) >= 8)
        forms: set[str] = set()
        for value in values:
            if len(value) < MIN_SECRET_LENGTH:
                continue
            forms.update({value, quote(value, safe=""), quote_plus(value)} | _base64_forms(value.encode()))
        self._forms = sorted(f for f in forms if len(f) >= MIN_SECRET_LENGTH)
        self.longest = max(map(len, self._forms), default=0)
        # One pass over the text whatever the number of secrets (Aho-Corasick); leftmost-
        # longest, so a secret that contains another is masked whole.
        self._matcher = AhoCorasick(self._forms, matchkind=MatchKind.LeftmostLongest) if self._forms else None

    def __call__(self, text: str) -> str:
        if self._matcher is None:
            return text
        matches = self._matcher.find_matches_as_indexes(text)
        if not matches:
            return text
        parts, last = [], 0
        for _, start, end in matches:
            parts.append(text[last:start])
            parts.append(MASK)
            last = end
        parts.append(text[last:])
        return "".join(parts)


# Apps that keep secrets (configuration secrets in `environments`, repository credentials
# in `builds`) register a function answering them, current and past: those of one project
# (`source(project_id)`), or of every project (`source(None)`).
_secret_sources: list = []


def register_secret_source(func) -> None:
    if func not in _secret_sources:
        _secret_sources.append(func)


# Bumped when this process changes a secret, so its log filters refresh at once; other
# processes refresh within `RedactingFilter.refresh_every` seconds.
_generation = 0


def secrets_changed() -> None:
    global _generation
    _generation += 1


def platform_secrets(project_id: int | None = None) -> list[str]:
    """The secrets that could reach a text of project `project_id`: its own and the
    platform's (the passwords of its services). With None, every project's too: for the
    platform's own logs, and texts that belong to no project.

    Per project, so that one project's short secret masks nothing in another's logs, and a
    build cannot learn another project's secret by printing guesses and watching for `***`."""
    service_passwords = (urlsplit(url).password for url in (settings.REDIS_URL, os.environ.get("DATABASE_URL", "")))
    found = [s for s in (settings.REGISTRY_PASSWORD, settings.REGISTRY_PULL_PASSWORD, *service_passwords) if s]
    for source in _secret_sources:
        found.extend(source(project_id))
    return found


def owner_project_id(owner) -> int | None:
    """The project a row's texts belong to: a component's, or that of the component of a
    build, a deployment, a push event; or a project's id. None when there is none (every
    secret masks it)."""
    if owner is None or isinstance(owner, int):  # a project's id itself
        return owner
    if hasattr(owner, "project_id"):
        return owner.project_id
    component = getattr(owner, "component", None)
    return component.project_id if component is not None else None


class RedactingFilter(logging.Filter):
    """Masks secrets in the platform's own log records (what its processes print).

    Asking the database on every record would be slow; the secrets are fetched at most
    every few seconds (at once after this process changes one), and the last set is used
    when they cannot be fetched."""

    refresh_every = 5.0
    fetch_wait = 5.0  # at most this long a record waits for a fetch, then the last set is used

    def __init__(self, name: str = ""):
        super().__init__(name)
        self._redactor = Redactor(())
        self._fetched_at = float("-inf")
        self._generation = -1
        self._busy = threading.local()

    def _fetch(self) -> list[str]:
        """Ask in a short-lived thread of its own: with its own database connection, a
        failure cannot break the caller's transaction, and it works in daphne's event loop
        too, where queries are refused."""
        result: dict[str, list[str]] = {}

        def run() -> None:
            from django.db import connections

            self._busy.on = True  # the queries' own log records must not fetch again
            try:
                result["found"] = platform_secrets()
            finally:
                connections.close_all()

        thread = threading.Thread(target=run, name="redaction-fetch", daemon=True)
        thread.start()
        thread.join(self.fetch_wait)
        if "found" not in result:
            raise RuntimeError("could not fetch the secrets")
        return result["found"]

    def _current(self) -> Redactor:
        now = time.monotonic()
        stale = now - self._fetched_at > self.refresh_every or self._generation != _generation
        if stale:
            generation = _generation
            try:
                self._redactor = Redactor(self._fetch())
                self._fetched_at, self._generation = now, generation
            except Exception:  # no database yet: keep the last set, try again soon
                # The generation too: a filter that never fetched would otherwise stay
                # stale, and ask again on every record.
                self._fetched_at, self._generation = now - self.refresh_every + 0.5, generation
        return self._redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(self._busy, "on", False):
            return True
        redact = self._current()
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it when it formats the record
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def redact(text: str, *, owner=None) -> str:
    """Mask the secrets of `owner`'s project (see `owner_project_id`; every project's when
    it has none) in a text it stores or shows (an error, an event's reason): asked afresh
    each time, so a secret set a moment ago is masked too."""
    if not text:
        return text
    return Redactor(platform_secrets(owner_project_id(owner)))(text)
