"""The scheduler: one loop per instance that runs the periodic work.

Four times a second it records what task schedules have due, and the retries that are due
(tasks.services); every TICK seconds it runs the registered housekeeping. A Redis lock
makes one scheduler of an instance do the work at a time, so a second one started by
mistake just waits. The lock is only an economy: schedules are claimed in the database,
so two schedulers that both believe they lead still never run a due time twice.
"""

import logging
import signal
import time

import django_rq
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from choreo_site import housekeeping
from tasks import services as tasks

log = logging.getLogger(__name__)
TICK = 5.0
SCHEDULE_TICK = 0.25


class Command(BaseCommand):
    help = "Run the platform's scheduler loop (task schedules and retries, housekeeping)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Run one tick and exit.")

    def handle(self, *args, once=False, **options):
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        redis = django_rq.get_connection(settings.DEFAULT_QUEUE)
        lock = redis.lock(f"{settings.INSTANCE_NAMESPACE}:scheduler", timeout=TICK * 3)
        next_housekeeping = 0.0
        while not stopping:
            if lock.owned():
                lock.reacquire()
                leading = True
            else:
                leading = lock.acquire(blocking=False)
            if leading:
                try:
                    tasks.schedules_tick()
                    tasks.retries_tick()
                except Exception:  # the database may be away for a moment; the next tick tries again
                    log.exception("the task schedules could not be handled")
                if time.monotonic() >= next_housekeeping:
                    housekeeping.run_all()
                    next_housekeeping = time.monotonic() + TICK
                close_old_connections()
            if once:
                break
            deadline = time.monotonic() + SCHEDULE_TICK
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.05)
        if lock.owned():
            lock.release()
