from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce

from environments.keyring import sealed
from environments.names import validate_name


class Project(models.Model):
    """A group of components that share environments."""

    name = models.CharField(max_length=40, unique=True, validators=[validate_name])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Environment(models.Model):
    """An isolated deployment area of a project. `position` is the promotion order."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="environments")
    name = models.CharField(max_length=40, validators=[validate_name])
    position = models.PositiveIntegerField()
    # Deploys, promotions, rollbacks and configuration changes here wait for an admin's
    # approval (environments.approvals).
    protected = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "position"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="environment_name_unique"),
            models.UniqueConstraint(fields=["project", "position"], name="environment_position_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.project.name}/{self.name}"


class ConfigValue(models.Model):
    """One version of a configuration value of a component.

    Versions are never changed: setting a key adds a version and makes it `current`;
    deleting a key clears `current`. Releases and deployments keep the ids of the versions
    they were made with, so a rollback gets exactly those values back, secrets included.
    `environment` is empty for an environment-independent value. Components belong to
    the builds app, so a value names its component instead of pointing at it.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="config_values")
    component = models.CharField(max_length=40)
    environment = models.ForeignKey(Environment, null=True, blank=True, on_delete=models.CASCADE, related_name="config_values")
    key = models.CharField(max_length=200)
    secret = models.BooleanField(default=False)
    is_file = models.BooleanField(default=False)
    filename = models.CharField(max_length=255, blank=True)
    plain = models.BinaryField(null=True, blank=True)  # the value of a non-secret
    sealed = sealed(models.BinaryField(null=True, blank=True))  # the value of a secret, encrypted
    # An HMAC of the value: shows that a value changed without revealing it.
    fingerprint = models.CharField(max_length=64)
    size = models.PositiveIntegerField(default=0)
    current = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key", "-id"]
        indexes = [models.Index(fields=["project", "component", "environment", "current"], name="config_current_idx")]
        constraints = [
            # One current version per key and scope; an environment-independent value has
            # no environment, and NULLs never collide in a unique index, hence the 0.
            models.UniqueConstraint(
                F("project"),
                F("component"),
                Coalesce(F("environment"), Value(0)),
                F("key"),
                condition=Q(current=True),
                name="config_one_current_version",
            )
        ]

    def __str__(self) -> str:
        scope = self.environment.name if self.environment_id else "all environments"
        return f"{self.project.name}/{self.component} {self.key} ({scope}, version {self.pk})"

    @property
    def value(self) -> bytes:
        return bytes(self.sealed if self.secret else self.plain or b"")

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", errors="replace")


class Membership(models.Model):
    """A user's role in a project (environments.permissions says what each role may do)."""

    VIEWER, DEVELOPER, ADMIN = "viewer", "developer", "admin"
    ROLE_CHOICES = [(r, r) for r in (VIEWER, DEVELOPER, ADMIN)]

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=ROLE_CHOICES)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "user"]
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project}"


class ApprovalRequest(models.Model):
    """A change asked for in a protected environment, waiting for a project admin other
    than the requester. `payload` pins exactly what will be done on approval (a release
    and configuration versions, a version to make current), so approval carries out what
    was asked, not what is current by then. Never holds a secret value."""

    PENDING, APPROVED, REJECTED, EXPIRED, SUPERSEDED = "pending", "approved", "rejected", "expired", "superseded"
    STATUS_CHOICES = [(s, s) for s in (PENDING, APPROVED, REJECTED, EXPIRED, SUPERSEDED)]

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="approval_requests")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="approval_requests")
    component = models.CharField(max_length=40)
    kind = models.CharField(max_length=20)  # deploy, promote, rollback, config.set, config.delete, run
    summary = models.CharField(max_length=300)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=PENDING, db_index=True)
    requested_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="approval_requests")
    requested_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    decided_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="approval_decisions")
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.CharField(max_length=1000, blank=True)
    result = models.JSONField(default=dict, blank=True)  # what approval made, e.g. {"deployment": 12}

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["environment", "component", "status"], name="approval_pending_idx")]

    def __str__(self) -> str:
        return f"request {self.pk}: {self.summary} ({self.status})"
