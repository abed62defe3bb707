"""Enqueueing after commit: the row is the truth, RQ only carries the work.

Jobs take primary keys, never secrets: RQ keeps job arguments in Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import django_rq
from django.conf import settings
from django.db import transaction


def builds_queue():
    return django_rq.get_queue(settings.BUILDS_QUEUE)


def default_queue():
    return django_rq.get_queue(settings.DEFAULT_QUEUE)


def git_queue():
    """Polls and push events: Git remotes may stall, and nothing else waits behind them."""
    return django_rq.get_queue(settings.GIT_QUEUE)


def tasks_queue():
    """Task executions: they may run for hours, and nothing else waits behind them."""
    return django_rq.get_queue(settings.TASKS_QUEUE)


def enqueue_after_commit(queue, func: Callable, *args: int | str, job_id: str, **options) -> None:
    """Enqueue `func(*args)` once the current transaction commits, under a stable job id."""
    transaction.on_commit(partial(queue.enqueue, func, *args, job_id=job_id, **options))
