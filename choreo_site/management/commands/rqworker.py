"""django-rq's `rqworker`, with start-up housekeeping and short queue names.

Before taking jobs, a worker runs the registered housekeeping (failing builds whose
worker died, re-enqueueing lost jobs), so a crash is cleaned up by the next start.
`builds`, `default`, `git` and `tasks` name this instance's namespaced queues; with no
queue named, the worker serves all four. Its work horse dies with it (choreo_site.processes.Worker).
"""

from django.conf import settings
from django_rq.management.commands.rqworker import Command as RQWorkerCommand

from choreo_site import housekeeping


class Command(RQWorkerCommand):
    def handle(self, *args, **options):
        short = {
            "builds": settings.BUILDS_QUEUE,
            "default": settings.DEFAULT_QUEUE,
            "git": settings.GIT_QUEUE,
            "tasks": settings.TASKS_QUEUE,
        }
        queues = [short.get(name, name) for name in args] or list(short.values())
        options["worker_class"] = options.get("worker_class") or "choreo_site.processes.Worker"
        housekeeping.run_all()
        return super().handle(*queues, **options)
