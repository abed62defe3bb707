"""Redaction: every secret the platform knows, masked as `***` in every log it keeps,
streams or prints. No model imports here: the logging configuration loads this module
before the apps are ready."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from django.conf import settings

MASK = "***"
# Secrets shorter than this would mask ordinary words in every log line.
MIN_SECRET_LENGTH = 4


class Redactor:
    """Replaces each secret value, and its base64 and URL-encoded forms, with `***`."""

    def __init__(self, secrets: Iterable[str] = ()):
        forms: set[str] = set()
        for value in secrets:
            if not value or len(value) < MIN_SECRET_LENGTH:
                continue
            raw = value.encode()
            forms.update(
                {
                    value,
                    base64.b64encode(raw).decode().rstrip("="),
                    base64.urlsafe_b64encode(raw).decode().rstrip("="),
                    quote(value, safe=""),
                    quote_plus(value),
                }
            )
        # Longest first, so a secret that contains another is masked whole.
        self._forms = sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


# Apps that keep secrets (configuration secrets, in `environments`) register a function
# answering all of them, current and past; every log asks through `platform_secrets`.
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


def platform_secrets() -> list[str]:
    """Every secret the platform holds that could reach a log."""
    found = [s for s in (settings.REGISTRY_PASSWORD,) if s]
    for source in _secret_sources:
        found.extend(source())
    return found


class RedactingFilter(logging.Filter):
    """Masks secrets in the platform's own log records (what its processes print).

    Asking the database on every record would be slow, and impossible inside an event
    loop or a query's own logging; the secrets are fetched at most every few seconds,
    and the last set is used when they cannot be fetched."""

    refresh_every = 5.0

    def __init__(self, name: str = ""):
        super().__init__(name)
        self._redactor = Redactor(())
        self._fetched_at = float("-inf")
        self._generation = -1
        self._busy = threading.local()

    def _fetch(self) -> list[str]:
        self._busy.on = True  # the queries' own log records must not fetch again
        try:
            return platform_secrets()
        finally:
            self._busy.on = False

    def _fetch_outside_event_loop(self) -> list[str]:
        """Database access is refused inside an event loop (daphne's thread): fetch in a
        short-lived thread, which closes its connection when done."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._fetch()
        result: dict[str, list[str]] = {}

        def run() -> None:
            from django.db import connections

            try:
                result["found"] = self._fetch()
            finally:
                connections.close_all()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(5)
        if "found" not in result:
            raise RuntimeError("could not fetch the secrets")
        return result["found"]

    def _current(self) -> Redactor:
        now = time.monotonic()
        stale = now - self._fetched_at > self.refresh_every or self._generation != _generation
        if stale:
            generation = _generation
            try:
                self._redactor = Redactor(self._fetch_outside_event_loop())
                self._fetched_at, self._generation = now, generation
            except Exception:  # no database yet: keep the last set, try again soon
                self._fetched_at = now - self.refresh_every + 0.5
        return self._redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(self._busy, "on", False):
            return True
        redact = self._current()
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
