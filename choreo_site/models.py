from django.db import models


class RunRow:
    """What the row of a long run (a build, a rollout, an execution) offers the run
    lifecycle (choreo_site.runs) and the pages. A mixin: each model keeps its own table and
    statuses, and names its kind in `run_name`, the prefix of its log stream and job."""

    run_name: str
    FINAL: tuple[str, ...]

    @property
    def project(self):
        return self.component.project

    @property
    def log_stream(self) -> str:
        return f"{self.run_name}-{self.pk}"

    @property
    def job_id(self) -> str:
        return f"{self.run_name}-{self.pk}"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL


class LogLine(models.Model):
    """One stored, already redacted line of a log stream (a build, a rollout, a task run).

    The stream name says what it belongs to (`build-42`); `seq` orders lines within it and
    is the offset a WebSocket client resumes from.
    """

    stream = models.CharField(max_length=100)
    seq = models.PositiveIntegerField()
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["stream", "seq"], name="logline_stream_seq_unique")]
        ordering = ["stream", "seq"]

    def __str__(self) -> str:
        return f"{self.stream}#{self.seq}"


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("audit events are append-only: they are never updated")

    def delete(self):
        raise TypeError("audit events are append-only: they are never deleted")


class AuditEvent(models.Model):
    """One change, as it happened: who, when, through what, what, on which object, and the
    outcome (SPEC: audit event). Append-only: saving an existing event, updating or deleting
    any raises. Projects are kept by id and name, not by a foreign key, so an event outlives
    its project unchanged. Never holds a secret value (configuration: key and version only).
    """

    USER, WEBHOOK, SCHEDULE, SYSTEM = "user", "webhook", "schedule", "system"
    INTERFACES = ("page", "api", "admin", "webhook", "schedule", "system", "command")
    OK, REFUSED, FAILED, REQUESTED = "ok", "refused", "failed", "requested"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150, help_text="a user name, or webhook, schedule, system")
    actor_user_id = models.IntegerField(null=True, blank=True)
    superuser = models.BooleanField(default=False, help_text="the actor acted as a superuser, not as a member")
    interface = models.CharField(max_length=10)
    action = models.CharField(max_length=40, db_index=True)
    project_id = models.IntegerField(null=True, blank=True)
    project_name = models.CharField(max_length=100, blank=True)
    environment = models.CharField(max_length=100, blank=True)
    target = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=10, default=OK)
    details = models.JSONField(default=dict, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["project_id", "-at"], name="audit_project_at_idx")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target} ({self.outcome})"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise TypeError("audit events are append-only: they are never updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("audit events are append-only: they are never deleted")
