"""The scheduler: one loop per instance that runs the periodic work.

It records what task schedules have due, and the retries that are due (tasks.services),
waking at the earliest due time and at least four times a second; every TICK seconds it
runs the registered housekeeping in a thread of its own, so a slow chore never delays a
due time. A Redis lock makes one scheduler of an instance do the work at a time, so a
second one started by mistake just waits. The lock is only an economy: schedules are
claimed in the database, so two schedulers that both believe they lead still never run
a due time twice.
"""

import logging
import signal
import threading
import time

import django_rq
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection
from django.utils import timezone

from choreo_site import housekeeping
from tasks import services as tasks

log = logging.getLogger(__name__)
TICK = 5.0
SCHEDULE_TICK = 0.25


def _housekeeping() -> None:
    try:
        housekeeping.run_all()
    finally:
        connection.close()  # this thread's own


class Command(BaseCommand):
    help = "Run the platform's scheduler loop (task schedules and retries, housekeeping)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Run one tick and exit.")

    def handle(self, *args, once=False, **options):
        stopping = threading.Event()

        def stop(signum, frame):
            stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        redis = django_rq.get_connection(settings.DEFAULT_QUEUE)
        lock = redis.lock(f"{settings.INSTANCE_NAMESPACE}:scheduler", timeout=TICK * 3)
        chores: threading.Thread | None = None
        next_housekeeping = 0.0
        while not stopping.is_set():
            if lock.owned():
                lock.reacquire()
                leading = True
            else:
                leading = lock.acquire(blocking=False)
            wait = SCHEDULE_TICK
            if leading:
                try:
                    tasks.schedules_tick()
                    tasks.retries_tick()
                    wake = tasks.next_wake()
                    ahead = (wake - timezone.now()).total_seconds() if wake is not None else wait
                    if ahead > 0:  # (a due time still behind us failed just now: try it again next tick)
                        wait = min(wait, ahead)
                except Exception:  # the database may be away for a moment; the next tick tries again
                    log.exception("the task schedules could not be handled")
                    close_old_connections()
                if once:
                    _housekeeping()
                    break
                if time.monotonic() >= next_housekeeping and (chores is None or not chores.is_alive()):
                    chores = threading.Thread(target=_housekeeping, name="housekeeping", daemon=True)
                    chores.start()
                    next_housekeeping = time.monotonic() + TICK
            elif once:
                break
            stopping.wait(wait)
        if chores is not None:
            chores.join(timeout=30)
        if lock.owned():
            lock.release()
