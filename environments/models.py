from django.db import models

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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "position"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="environment_name_unique"),
            models.UniqueConstraint(fields=["project", "position"], name="environment_position_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.project.name}/{self.name}"
