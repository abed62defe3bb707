"""The one writer for every log the platform keeps: redact, then store, then stream.

A stream is a name such as `build-42`. Lines are stored in `LogLine` with a sequence
number, then sent to the stream's channel group, where `LogConsumer` passes them to
browsers. A consumer replays what is stored from the offset it is given, then streams
live lines, so a reload or a reconnect never loses or repeats a line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Max, Sum
from django.db.models.functions import Length

from choreo_site.errors import PlatformError
from choreo_site.models import LogLine
from choreo_site.redaction import Redactor, owner_project_id, platform_secrets

log = logging.getLogger(__name__)


def group_name(stream: str) -> str:
    return f"{settings.INSTANCE_NAMESPACE}.logs.{stream}"


class LogWriter:
    """Appends lines to one stream. Thread-safe; resumes after the last stored line.

    Bounded, and linear in what it is given: a line longer than LOG_MAX_LINE characters is
    cut, with a marker saying how much, and a stream keeps at most LOG_MAX_BYTES of text,
    then one marker, and at its end how many lines were not kept. A line is redacted
    before it is cut, over enough of its text that a secret at the cut is still masked.
    """

    def __init__(self, stream: str, *, secrets: Iterable[str] = ()):
        self.stream = stream
        self.redact = stream_redactor(stream, also=secrets)
        self._lock = threading.Lock()
        stored = LogLine.objects.filter(stream=stream).aggregate(m=Max("seq"), size=Sum(Length("text")))
        self._next = 0 if stored["m"] is None else stored["m"] + 1
        self._size = stored["size"] or 0
        self._capped = self._size >= settings.LOG_MAX_BYTES
        self._not_kept = 0
        self._keep = settings.LOG_MAX_LINE + self.redact.longest
        self._partial: list[str] = []
        self._partial_len = 0
        self._partial_cut = 0

    def write(self, text: str) -> None:
        """Write a chunk of output; complete lines are stored, a trailing partial line waits."""
        with self._lock:
            pieces = text.replace("\r\n", "\n").split("\n")
            lines = []
            for i, piece in enumerate(pieces):
                self._extend(piece)
                if i < len(pieces) - 1:
                    lines.append(self._take())
            self._store(lines)

    def _extend(self, piece: str) -> None:
        room = self._keep - self._partial_len
        kept = piece[: max(room, 0)]
        if kept:
            self._partial.append(kept)
            self._partial_len += len(kept)
        self._partial_cut += len(piece) - len(kept)

    def _take(self) -> tuple[str, int]:
        line = ("".join(self._partial), self._partial_cut)
        self._partial, self._partial_len, self._partial_cut = [], 0, 0
        return line

    def line(self, text: str) -> None:
        """Write one whole line (any partial line before it is flushed first)."""
        self.write(text.rstrip("\n") + "\n")

    def flush(self) -> None:
        with self._lock:
            if self._partial_len or self._partial_cut:
                self._store([self._take()])

    def end(self, status: str) -> None:
        """Flush, and tell live readers that the stream is over."""
        self.flush()
        with self._lock:
            if self._not_kept:
                self._store([(f"[{self._not_kept} more line(s) were not kept]", 0)], always=True)
                self._not_kept = 0
        self._send({"type": "log.end", "status": status, "next": self._next})

    def _store(self, lines: list[tuple[str, int]], *, always: bool = False) -> None:
        rows = []
        for raw, cut in lines:
            text = self.redact(raw.rstrip("\r"))
            cut += max(len(raw) - settings.LOG_MAX_LINE, 0)
            if cut:
                text = text[: settings.LOG_MAX_LINE] + f" … [{cut} more characters cut]"
            if self._capped and not always:
                self._not_kept += 1
                continue
            if not always and self._size + len(text) > settings.LOG_MAX_BYTES:
                self._capped = True
                self._not_kept += 1
                text = f"[this log reached its limit of {settings.LOG_MAX_BYTES} characters (LOG_MAX_BYTES); later output is not kept]"
            rows.append(LogLine(stream=self.stream, seq=self._next, text=text))
            self._size += len(text)
            self._next += 1
        if not rows:
            return
        LogLine.objects.bulk_create(rows)
        self._send({"type": "log.lines", "lines": [{"seq": r.seq, "text": r.text} for r in rows]})

    def _send(self, message: dict) -> None:
        try:
            async_to_sync(get_channel_layer().group_send)(group_name(self.stream), message)
        except Exception:  # the stored line is the truth; a lost live message is replayed on reconnect
            log.warning("could not send live log lines of %s", self.stream, exc_info=True)


# Lines are redacted when written, and again when read: a value that became a secret
# after it was logged is masked too.


def stream_redactor(stream: str, *, also: Iterable[str] = ()) -> Redactor:
    """Masks the secrets of the project the stream's run belongs to (every project's for a
    stream of no registered kind)."""
    try:
        project_id = owner_project_id(_stream_row(stream)[1])
    except LookupError:
        project_id = None
    return Redactor([*platform_secrets(project_id), *also])


def read_lines(stream: str, *, offset: int = 0, limit: int | None = None) -> list[LogLine]:
    lines = LogLine.objects.filter(stream=stream, seq__gte=offset).order_by("seq")
    lines = list(lines[:limit] if limit else lines)
    if lines:
        redact = stream_redactor(stream)
        for line in lines:
            line.text = redact(line.text)
    return lines


def page_log(stream: str) -> dict:
    """What a page shows of a stream before any JavaScript runs: its stored lines, the
    offset live streaming goes on from, and its final status once it has ended (a page
    without JavaScript then shows the whole log, never "Connecting…")."""
    lines = read_lines(stream)
    return {"lines": lines, "next": lines[-1].seq + 1 if lines else 0, "ended": stream_final_status(stream)}


def read_text(stream: str) -> str:
    redact = stream_redactor(stream)
    return "".join(redact(text) + "\n" for text in LogLine.objects.filter(stream=stream).order_by("seq").values_list("text", flat=True))


# Each app that writes streams registers its kind of stream (choreo_site only knows names).
@dataclass(frozen=True)
class StreamKind:
    """A kind of run whose log is a stream: `build` for `build-42`, with its model, the
    statuses that end it, and who may read it (`readable(row, user)` raises when not)."""

    model: type
    final_statuses: tuple[str, ...]
    readable: Callable


_stream_kinds: dict[str, StreamKind] = {}


def register_stream_kind(kind: str, *, model: type, final_statuses: Iterable[str], readable: Callable) -> None:
    _stream_kinds[kind] = StreamKind(model, tuple(final_statuses), readable)


def _stream_row(stream: str):
    kind, _, ident = stream.rpartition("-")
    registered = _stream_kinds.get(kind)
    if registered is None or not ident.isdigit():
        raise LookupError(stream)
    row = registered.model.objects.filter(pk=int(ident)).first()
    if row is None:
        raise LookupError(stream)
    return registered, row


def stream_final_status(stream: str) -> str | None:
    """The run's final status, or None while its log is still being written."""
    registered, row = _stream_row(stream)
    return row.status if row.status in registered.final_statuses else None


def stream_check_reader(stream: str, user) -> None:
    """LookupError unless the stream exists and `user` may read it: to anyone else it
    does not exist."""
    registered, row = _stream_row(stream)
    try:
        registered.readable(row, user)
    except PlatformError:  # not a member (404) or not allowed (403): the same to the reader
        raise LookupError(stream) from None
