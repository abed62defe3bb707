from django.db import models

from builds.models import Build, Component, Image
from choreo_site.models import RunRow
from environments.models import Environment


class Release(models.Model):
    """Immutable: an image digest plus a snapshot of the environment-independent
    configuration. Made in the set-up area when a build is first deployed."""

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="releases")
    build = models.ForeignKey(Build, on_delete=models.RESTRICT, related_name="releases")
    image = models.ForeignKey(Image, on_delete=models.RESTRICT, related_name="releases")
    digest = models.CharField(max_length=71)
    image_reference = models.CharField(max_length=500)
    descriptor = models.JSONField()
    config = models.JSONField(default=dict, blank=True)
    config_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["build", "config_hash"], name="release_build_config_unique")]

    def __str__(self) -> str:
        return f"release {self.pk} of {self.component} ({self.digest[:19]})"


class Deployment(RunRow, models.Model):
    """Immutable: a release in an environment, with a snapshot of that environment's
    configuration. Any change makes a new deployment."""

    run_name = "rollout"

    PENDING, ROLLING_OUT, ACTIVE, FAILED, SUPERSEDED, ROLLED_BACK = (
        "pending",
        "rolling-out",
        "active",
        "failed",
        "superseded",
        "rolled-back",
    )
    STATUS_CHOICES = [(s, s) for s in (PENDING, ROLLING_OUT, ACTIVE, FAILED, SUPERSEDED, ROLLED_BACK)]
    FINAL = (ACTIVE, FAILED, SUPERSEDED, ROLLED_BACK)
    DEPLOY, PROMOTE, ROLLBACK, AUTO = "deploy", "promote", "rollback", "auto"
    KIND_CHOICES = [(k, k) for k in (DEPLOY, PROMOTE, ROLLBACK, AUTO)]

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="deployments")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="deployments")
    release = models.ForeignKey(Release, on_delete=models.RESTRICT, related_name="deployments")
    kind = models.CharField(max_length=10, choices=KIND_CHOICES, default=DEPLOY)
    config = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=STATUS_CHOICES, default=PENDING, db_index=True)
    # The deployment that was active when this one started, and the one a rollback repeats.
    replaces = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    rollback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    replicas = models.JSONField(default=list, blank=True)  # [{"id", "name", "address"}] while it runs
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # written while it rolls out (choreo_site.runs)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"deployment {self.pk} of {self.component} to {self.environment.name}"


class Route(models.Model):
    """An ingress backend ("slot") held by a component in an environment."""

    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="routes")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="routes")
    host = models.CharField(max_length=255, unique=True)
    slot = models.PositiveIntegerField(unique=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["component", "environment"], name="route_component_environment_unique")]

    def __str__(self) -> str:
        return f"{self.host} → slot{self.slot}"
