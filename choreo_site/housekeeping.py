"""Start-up and periodic housekeeping that apps register: failing orphaned builds,
re-enqueueing work whose job was lost, and so on. Run by every worker when it starts
and by the scheduler on each tick, so a crash is cleaned up without anyone asking."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)
_chores: list[Callable[[], object]] = []


def register(chore: Callable[[], object]) -> None:
    if chore not in _chores:
        _chores.append(chore)


def run_all() -> None:
    for chore in _chores:
        try:
            chore()
        except Exception:  # one failing chore must not stop the others, nor the worker
            log.exception("housekeeping chore %s failed", getattr(chore, "__name__", chore))
