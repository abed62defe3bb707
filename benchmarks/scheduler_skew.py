"""Scheduler skew: N scheduled tasks all due at the same second, and for each, how late
after its due time its execution was recorded (the row) and enqueued (the RQ job's
enqueued_at). Runs a whole platform (`manage.py up`); one task is built and deployed
through the API, and the other schedules are rows on the same deployment (what a build
and a deploy of each would leave), so that the figure is the scheduler's alone.

All schedules are `* * * * *`: they are due together at the next minute. The platform
runs with no task workers (TASK_CONCURRENCY=0), so the executions only queue: starting
1,000 containers on 2 cores would measure the machine, not the scheduler.

Prints p50, p99 and the worst, for each N. Usage: .venv/bin/python -m benchmarks.scheduler_skew [N ...]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

from benchmarks.platform import ROOT, deployed_task, platform_shell, running_platform

DESCRIPTOR = "schemaVersion: 1\ntype: scheduled-task\nschedule: '* * * * *'\ntask: {concurrency: allow, startingDeadline: 10m}\n"

ADD_SCHEDULES = """
from builds.models import Component
from deployments.models import Deployment
from tasks.services import schedule_sync
active = Deployment.objects.get(component__name="job", status="active")
have = Component.objects.filter(project=active.component.project).count()
for i in range(have, {total}):
    component = Component.objects.create(
        project=active.component.project,
        name=f"job{{i}}",
        repository=active.component.repository,
        type="scheduled-task",
        poll_enabled=False,
    )
    Deployment.objects.create(component=component, environment=active.environment, release=active.release, status="active")
    schedule_sync(component=component, environment=active.environment)
print(Component.objects.filter(project=active.component.project).count())
"""

SKEWS = """
import json
from datetime import datetime, timezone
import django_rq
from django.conf import settings
from rq.job import Job
from tasks.models import Execution
due = datetime.fromisoformat("{due}")
rows = Execution.objects.filter(trigger="schedule", triggered_at=due)
connection = django_rq.get_connection(settings.TASKS_QUEUE)
out = []
for execution in rows:
    job = Job.fetch(execution.job_id, connection=connection)
    enqueued = job.enqueued_at if job.enqueued_at.tzinfo else job.enqueued_at.replace(tzinfo=timezone.utc)
    out.append([(execution.created_at - due).total_seconds(), (enqueued - due).total_seconds(), execution.status])
print(json.dumps(out))
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(tmp, total: int) -> tuple[list[float], list[float]]:
    count = int(platform_shell(tmp, ADD_SCHEDULES.format(total=total)).strip())
    assert count == total, count
    now = datetime.now(UTC)
    due = now.replace(second=0, microsecond=0).timestamp() + 60
    if due - now.timestamp() < 5:  # too close to the boundary to be sure every schedule is in place
        due += 60
    time.sleep(max(0.0, due - time.time()) + min(30, 3 + total / 50))
    due_at = datetime.fromtimestamp(due, UTC).isoformat()
    for _ in range(60):
        rows = json.loads(platform_shell(tmp, SKEWS.format(due=due_at)))
        if len(rows) >= total:
            break
        time.sleep(1)
    assert len(rows) == total, f"{len(rows)} of {total} recorded"
    return [r[0] for r in rows], [r[1] for r in rows]


def main(sizes: list[int]) -> None:
    subprocess.run([str(ROOT / "scripts" / "base-images.sh"), "busybox"], check=True)
    results = []
    with running_platform("bench-scheduler-", TASK_CONCURRENCY="0", REGISTRY_GC_INTERVAL="0") as (tmp, base, session):
        deployed_task(tmp, base, session, descriptor=DESCRIPTOR, command='["true"]')
        for total in sizes:
            recorded, enqueued = measure(tmp, total)
            results.append((total, recorded, enqueued))
    print(f"machine: {os.uname().nodename}, {os.cpu_count()} cores; SQLite; one scheduler; schedules all due at the same second")
    for total, recorded, enqueued in results:
        for label, values in (("recorded", recorded), ("enqueued", enqueued)):
            print(
                f"{total:5d} schedules, due → {label}: p50 {percentile(values, 50) * 1000:.0f} ms, "
                f"p99 {percentile(values, 99) * 1000:.0f} ms, worst {max(values) * 1000:.0f} ms, "
                f"mean {statistics.mean(values) * 1000:.0f} ms"
            )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [200, 1000])
