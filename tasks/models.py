from django.db import models

from builds.models import Component
from choreo_site.models import RunRow
from deployments.models import Deployment
from environments.models import Environment


class Schedule(models.Model):
    """A scheduled task's schedule in one environment, from its active deployment's
    descriptor. `next_due` is the earliest due time not handled yet: the scheduler claims
    it with a conditional update, in the same transaction that records its execution."""

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="schedules")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="schedules")
    expression = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC")
    paused = models.BooleanField(default=False)
    next_due = models.DateTimeField(null=True, blank=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["component", "environment"], name="schedule_component_environment_unique")]

    def __str__(self) -> str:
        return f"schedule of {self.component} in {self.environment.name}: {self.expression}"

    @property
    def project(self):
        return self.component.project


class Execution(RunRow, models.Model):
    """One run of a task in one environment, on the deployment (revision) that was active
    when it was recorded. Its status follows choreo_site.runs."""

    run_name = "execution"

    QUEUED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, SKIPPED = (
        "queued",
        "running",
        "succeeded",
        "failed",
        "timed-out",
        "cancelled",
        "skipped",
    )
    STATUS_CHOICES = [(s, s) for s in (QUEUED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, SKIPPED)]
    FINAL = (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, SKIPPED)
    SCHEDULE, MANUAL, RETRY = "schedule", "manual", "retry"
    TRIGGER_CHOICES = [(t, t) for t in (SCHEDULE, MANUAL, RETRY)]

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="executions")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="executions")
    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="executions")
    schedule = models.ForeignKey(Schedule, null=True, blank=True, on_delete=models.SET_NULL, related_name="executions")
    trigger = models.CharField(max_length=10, choices=TRIGGER_CHOICES)
    # When it was due (schedule, retry) or asked for (manual).
    triggered_at = models.DateTimeField(db_index=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    # When a failed attempt's retry is due; cleared (conditionally) when the retry is recorded.
    retry_at = models.DateTimeField(null=True, blank=True, db_index=True)
    args = models.JSONField(null=True, blank=True)  # replaces the image's command arguments
    requested_by = models.CharField(max_length=150, blank=True)
    status = models.CharField(max_length=12, choices=STATUS_CHOICES, default=QUEUED, db_index=True)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)  # why it failed or was skipped
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-triggered_at", "-id"]
        indexes = [models.Index(fields=["component", "environment", "-triggered_at"], name="execution_history")]
        constraints = [
            # Two schedulers never record the same due time twice.
            models.UniqueConstraint(
                fields=["schedule", "triggered_at"],
                condition=models.Q(trigger="schedule"),
                name="execution_schedule_due_unique",
            ),
            # A failed attempt has at most one retry.
            models.UniqueConstraint(fields=["retry_of"], name="execution_one_retry"),
        ]

    def __str__(self) -> str:
        return f"execution {self.pk} of {self.component} in {self.environment.name}"

    @property
    def duration(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None
