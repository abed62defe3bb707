"""`GET /metrics`: the Prometheus text format, for a token like the API.

- HTTP requests by status and latency: django-prometheus's middleware. The web tier runs
  several gunicorn processes, so `manage.py up` points prometheus-client's multiprocess mode
  at DATA_DIR/run/metrics and this view merges every process's figures.
- RQ queue depths and workers: django-rq's collector.
- Builds and rollouts by outcome, with duration histograms, and the ingress's routes: read
  from the database at each scrape. The rows are the truth, so the figures survive restarts
  and count work done by any worker process.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from rest_framework.decorators import api_view, schema

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def reset_process_files() -> None:
    """For `manage.py up`, before it starts the web tier: an empty directory for the web
    processes' figures, named in the environment every child inherits."""
    directory = settings.RUN_DIR / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROC_ENV] = str(directory)


@dataclass(frozen=True)
class RunKind:
    """A kind of run whose rows have a status and start and finish times."""

    name: str  # builds, rollouts, executions
    noun: str  # build, rollout, execution
    model_path: str
    final_statuses: tuple[str, ...]


RUN_KINDS = (
    RunKind("builds", "build", "builds.Build", ("succeeded", "failed", "cancelled")),
    RunKind("rollouts", "rollout", "deployments.Deployment", ("active", "failed", "superseded", "rolled-back")),
    RunKind("executions", "execution", "tasks.Execution", ("succeeded", "failed", "timed-out", "cancelled")),
)


class PlatformCollector:
    """Runs by outcome and their durations, and the ingress's routes, from the database."""

    def collect(self):
        from django.apps import apps

        for kind in RUN_KINDS:
            model = apps.get_model(kind.model_path)
            counts = CounterMetricFamily(f"choreo_{kind.name}", f"{kind.noun.capitalize()}s by status.", labels=["status"])
            for row in model.objects.order_by().values("status").annotate(n=Count("pk")):
                counts.add_metric([row["status"]], row["n"])
            yield counts
            duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
            finished = model.objects.filter(status__in=kind.final_statuses, started_at__isnull=False, finished_at__isnull=False)
            figures = (
                finished.order_by()
                .annotate(duration=duration)
                .aggregate(
                    total=Count("pk"),
                    seconds=Sum("duration"),
                    **{f"le_{i}": Count("pk", filter=Q(duration__lte=timedelta(seconds=b))) for i, b in enumerate(DURATION_BUCKETS)},
                )
            )
            histogram = HistogramMetricFamily(
                f"choreo_{kind.noun}_duration_seconds", f"How long finished {kind.name} ran, from start to a final status."
            )
            buckets = [(str(float(b)), figures[f"le_{i}"]) for i, b in enumerate(DURATION_BUCKETS)]
            total_seconds = figures["seconds"].total_seconds() if figures["seconds"] else 0.0
            histogram.add_metric([], [*buckets, ("+Inf", figures["total"])], sum_value=total_seconds)
            yield histogram
        routes = GaugeMetricFamily("choreo_ingress_routes", "Component environments the ingress routes.")
        routes.add_metric([], apps.get_model("deployments.Route").objects.count())
        yield routes


def _platform_registry() -> CollectorRegistry:
    from django_rq.contrib.prometheus import RQCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector())
    registry.register(RQCollector())
    return registry


_platform = None


@api_view(["GET"])
@schema(None)
def metrics_view(request):
    """The platform's figures in Prometheus's text format (token needed, like the API)."""
    global _platform
    if _platform is None:
        _platform = _platform_registry()
    if os.environ.get(MULTIPROC_ENV):
        web = CollectorRegistry()
        multiprocess.MultiProcessCollector(web)
    else:
        web = REGISTRY
    body = generate_latest(web) + generate_latest(_platform)
    return HttpResponse(body, content_type="text/plain; version=0.0.4; charset=utf-8")
