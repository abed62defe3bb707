"""`GET /healthz`: 200 once web, workers, ingress and registry are up; 503 naming what is not.
Like the URLs, it looks at every app's parts."""

import django_rq
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from rq import Worker

from builds import registry
from deployments.ingress import ingress


def _checks() -> dict[str, str]:
    checks = {}
    try:
        connection.ensure_connection()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {exc}"
    try:
        queue = django_rq.get_queue(settings.BUILDS_QUEUE)
        queue.connection.ping()
        workers = {
            name: len([w for w in Worker.all(connection=queue.connection) if name in w.queue_names()])
            for name in (settings.BUILDS_QUEUE, settings.DEFAULT_QUEUE)
        }
        checks["redis"] = "ok"
        checks["workers"] = "ok" if all(workers.values()) else "no worker on " + ", ".join(q for q, n in workers.items() if not n)
    except Exception as exc:
        checks["redis"] = checks["workers"] = f"down: {exc}"
    checks["registry"] = "ok" if registry.is_up() else f"not answering at {settings.REGISTRY_URL}"
    checks["ingress"] = "ok" if ingress().is_up() else "HAProxy's runtime API is not answering"
    return checks


def healthz(request):
    checks = _checks()
    healthy = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503)
