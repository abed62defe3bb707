"""The scheduler: one loop per instance that runs periodic work.

Each tick runs the registered housekeeping. A Redis lock makes sure only one scheduler of
an instance works at a time, so a second one started by mistake just waits.
"""

import logging
import signal
import time

import django_rq
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from choreo_site import housekeeping

log = logging.getLogger(__name__)
TICK = 5.0


class Command(BaseCommand):
    help = "Run the platform's scheduler loop (housekeeping, and later polls and task schedules)."

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
        while not stopping:
            if lock.owned():
                lock.reacquire()
                leading = True
            else:
                leading = lock.acquire(blocking=False)
            if leading:
                housekeeping.run_all()
                close_old_connections()
            if once:
                break
            deadline = time.monotonic() + TICK
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.2)
        if lock.owned():
            lock.release()
