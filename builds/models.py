from django.db import models

from choreo_site.models import RunRow
from environments.keyring import sealed
from environments.models import Project
from environments.names import validate_name


class Component(models.Model):
    """One deployable unit of a project: a Git repository, a branch and a path in it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="components")
    name = models.CharField(max_length=40, validators=[validate_name])
    # Shown everywhere: never holds credentials. Those of an https URL are kept apart,
    # write-only and encrypted at rest; `fetch_url` puts them back for Git alone.
    repository = models.CharField(max_length=1000)
    repository_credentials = sealed(models.CharField(max_length=1000, blank=True, default=""))
    branch = models.CharField(max_length=200, default="main")
    path = models.CharField(max_length=500, default=".", blank=True)
    # The type and descriptor of the newest successful build; empty before the first one.
    type = models.CharField(max_length=20, blank=True)
    auto_build_on_commit = models.BooleanField(default=False)
    auto_deploy_on_build = models.BooleanField(default=False)
    # Write-only: verifies webhook signatures. Encrypted at rest, never shown again.
    webhook_secret = sealed(models.CharField(max_length=200, blank=True, default=""))
    # Auto build triggers: polling for remotes that cannot send webhooks, and skipping
    # pushes that change nothing under `path` (for monorepos).
    poll_enabled = models.BooleanField(default=True)
    build_on_path_changes_only = models.BooleanField(default=True)
    last_seen_commit = models.CharField(max_length=40, blank=True)
    poll_next_at = models.DateTimeField(null=True, blank=True)
    poll_failures = models.PositiveIntegerField(default=0)
    poll_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="component_name_unique")]

    @property
    def fetch_url(self) -> str:
        """The URL Git fetches from, credentials included. Never show or store it."""
        from builds.git import join_credentials

        return join_credentials(self.repository, self.repository_credentials)

    def __str__(self) -> str:
        return f"{self.project.name}/{self.name}"

    @property
    def registry_repository(self) -> str:
        return f"{self.project.name}/{self.name}"


class Image(models.Model):
    """An image in the registry, always addressed by digest. Newest one per commit is kept."""

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="images")
    commit = models.CharField(max_length=40)
    digest = models.CharField(max_length=71)
    reference = models.CharField(max_length=500)
    # Hash of everything that decides the image's bytes (commit, descriptor build section,
    # base images, recipe): the same key means a rebuild can reuse this image.
    inputs_key = models.CharField(max_length=64)
    size = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["component", "digest"], name="image_digest_unique")]

    def __str__(self) -> str:
        return self.reference

    def is_referenced(self) -> bool:
        """Whether anything other than builds still points at this image (a deployment,
        a release). Apps later in the import order hold those references, so they are
        found through the model's reverse relations."""
        for rel in self._meta.related_objects:
            if rel.related_model is Build:
                continue
            if rel.related_model._default_manager.filter(**{rel.field.name: self}).exists():
                return True
        return False


class Build(RunRow, models.Model):
    """One run of the build pipeline for one commit."""

    run_name = "build"

    QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
    STATUS_CHOICES = [(s, s) for s in (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)]
    FINAL = (SUCCEEDED, FAILED, CANCELLED)
    MANUAL, WEBHOOK, POLL = "manual", "webhook", "poll"
    TRIGGER_CHOICES = [(t, t) for t in (MANUAL, WEBHOOK, POLL)]

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="builds")
    requested_commit = models.CharField(max_length=40, blank=True)
    commit = models.CharField(max_length=40, blank=True)
    commit_message = models.CharField(max_length=500, blank=True)
    commit_author = models.CharField(max_length=200, blank=True)
    trigger = models.CharField(max_length=10, choices=TRIGGER_CHOICES, default=MANUAL)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=QUEUED, db_index=True)
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="builds")
    digest = models.CharField(max_length=71, blank=True)
    image_reference = models.CharField(max_length=500, blank=True)
    descriptor = models.JSONField(null=True, blank=True)
    endpoints = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    # Why Auto Deploy on Build did not deploy this build (a missing configurable, say).
    auto_deploy_error = models.TextField(blank=True)
    reused = models.BooleanField(default=False, help_text="The image of an earlier build with the same inputs was reused.")
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"build {self.pk} of {self.component}"

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class ApiSpec(models.Model):
    """An endpoint's API specification (its `schemaFile`) as it was at the build's commit."""

    build = models.ForeignKey(Build, on_delete=models.CASCADE, related_name="api_specs")
    endpoint = models.CharField(max_length=40)
    path = models.CharField(max_length=500)
    content = models.TextField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["build", "endpoint"], name="apispec_endpoint_unique")]


class PushEvent(models.Model):
    """A push a Git host told us about (webhook) or polling found, and what came of it.

    Every delivery is kept, refused ones too, so a user can see why a push did or did not
    build.
    """

    QUEUED, BUILT, IGNORED, REJECTED = "queued", "built", "ignored", "rejected"
    OUTCOME_CHOICES = [(o, o) for o in (QUEUED, BUILT, IGNORED, REJECTED)]

    component = models.ForeignKey(Component, null=True, blank=True, on_delete=models.CASCADE, related_name="push_events")
    # As addressed, for deliveries to a component that does not exist.
    project_name = models.CharField(max_length=100)
    component_name = models.CharField(max_length=100)
    provider = models.CharField(max_length=20)
    delivery_id = models.CharField(max_length=100, blank=True)
    event = models.CharField(max_length=50, blank=True)
    ref = models.CharField(max_length=300, blank=True)
    before = models.CharField(max_length=40, blank=True)
    after = models.CharField(max_length=40, blank=True)
    paths = models.JSONField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=OUTCOME_CHOICES)
    reason = models.CharField(max_length=500, blank=True)
    build = models.ForeignKey(Build, null=True, blank=True, on_delete=models.SET_NULL, related_name="push_events")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["component", "provider", "delivery_id"], name="pushevent_delivery_idx")]

    def __str__(self) -> str:
        return f"{self.provider} {self.event} {self.after[:12]}: {self.outcome}"
