"""The one writer for every log the platform keeps: redact, then store, then stream.

A stream is a name such as `build-42`. Lines are stored in `LogLine` with a sequence
number, then sent to the stream's channel group, where `LogConsumer` passes them to
browsers. A consumer replays what is stored from the offset it is given, then streams
live lines, so a reload or a reconnect never loses or repeats a line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Max

from choreo_site.models import LogLine
from choreo_site.redaction import Redactor, platform_secrets

log = logging.getLogger(__name__)


def group_name(stream: str) -> str:
    return f"{settings.INSTANCE_NAMESPACE}.logs.{stream}"


class LogWriter:
    """Appends lines to one stream. Thread-safe; resumes after the last stored line."""

    def __init__(self, stream: str, *, secrets: Iterable[str] = ()):
        self.stream = stream
        self.redact = Redactor([*platform_secrets(), *secrets])
        self._lock = threading.Lock()
        last = LogLine.objects.filter(stream=stream).aggregate(m=Max("seq"))["m"]
        self._next = 0 if last is None else last + 1
        self._partial = ""

    def write(self, text: str) -> None:
        """Write a chunk of output; complete lines are stored, a trailing partial line waits."""
        with self._lock:
            text = self._partial + text.replace("\r\n", "\n")
            *lines, self._partial = text.split("\n")
            self._store(lines)

    def line(self, text: str) -> None:
        """Write one whole line (any partial line before it is flushed first)."""
        self.write(text.rstrip("\n") + "\n")

    def flush(self) -> None:
        with self._lock:
            if self._partial:
                lines, self._partial = [self._partial], ""
                self._store(lines)

    def end(self, status: str) -> None:
        """Flush, and tell live readers that the stream is over."""
        self.flush()
        self._send({"type": "log.end", "status": status, "next": self._next})

    def _store(self, lines: list[str]) -> None:
        if not lines:
            return
        rows = []
        for raw in lines:
            rows.append(LogLine(stream=self.stream, seq=self._next, text=self.redact(raw.rstrip("\r"))))
            self._next += 1
        LogLine.objects.bulk_create(rows)
        self._send({"type": "log.lines", "lines": [{"seq": r.seq, "text": r.text} for r in rows]})

    def _send(self, message: dict) -> None:
        try:
            async_to_sync(get_channel_layer().group_send)(group_name(self.stream), message)
        except Exception:  # the stored line is the truth; a lost live message is replayed on reconnect
            log.warning("could not send live log lines of %s", self.stream, exc_info=True)


# Lines are redacted when written, and again when read: a value that became a secret
# after it was logged is masked too.


def read_lines(stream: str, *, offset: int = 0, limit: int | None = None) -> list[LogLine]:
    lines = LogLine.objects.filter(stream=stream, seq__gte=offset).order_by("seq")
    lines = list(lines[:limit] if limit else lines)
    if lines:
        redact = Redactor(platform_secrets())
        for line in lines:
            line.text = redact(line.text)
    return lines


def read_text(stream: str) -> str:
    redact = Redactor(platform_secrets())
    return "".join(redact(text) + "\n" for text in LogLine.objects.filter(stream=stream).order_by("seq").values_list("text", flat=True))


# Each app that writes streams says how to tell whether one of its streams has ended:
# `kind` is the stream name's prefix (`build` for `build-42`), and the function takes the
# id and answers the final status, or None while the stream is still being written.
_stream_kinds: dict[str, callable] = {}


def register_stream_kind(kind: str, final_status) -> None:
    _stream_kinds[kind] = final_status


def stream_final_status(stream: str) -> str | None:
    kind, _, ident = stream.rpartition("-")
    resolver = _stream_kinds.get(kind)
    if resolver is None or not ident.isdigit():
        raise LookupError(stream)
    return resolver(int(ident))
