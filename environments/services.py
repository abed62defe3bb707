"""State changes of projects and environments. Pages, the API and commands call these."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from choreo_site.errors import Conflict, NotFound, PlatformError
from environments.models import Environment, Project
from environments.names import NAME_HELP, NAME_RE

DEFAULT_ENVIRONMENTS = ("development", "production")


def _check_name(field: str, name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PlatformError(f"{field} {name!r} is not a valid name: {NAME_HELP}.", errors={field: [f"Use {NAME_HELP}."]})


def project_get(*, name: str) -> Project:
    try:
        return Project.objects.get(name=name)
    except Project.DoesNotExist:
        raise NotFound(f"Project {name!r} does not exist.") from None


def environment_get(*, project: Project, name: str) -> Environment:
    try:
        return project.environments.get(name=name)
    except Environment.DoesNotExist:
        raise NotFound(
            f"Environment {name!r} does not exist in project {project.name!r}.", errors={"environment": ["Unknown environment."]}
        ) from None


@transaction.atomic
def project_create(*, name: str) -> Project:
    """Create a project with the default environments, `development` then `production`."""
    _check_name("name", name)
    if Project.objects.filter(name=name).exists():
        raise Conflict(f"Project {name!r} already exists.", errors={"name": ["A project with this name exists."]})
    project = Project.objects.create(name=name)
    Environment.objects.bulk_create(
        Environment(project=project, name=env_name, position=i) for i, env_name in enumerate(DEFAULT_ENVIRONMENTS)
    )
    return project


@transaction.atomic
def environment_create(*, project: Project, name: str, after: str | None = None) -> Environment:
    """Create an environment placed right after `after` in the promotion order.

    Without `after`, it goes last. Environments after it move up one place.
    """
    _check_name("name", name)
    project = Project.objects.select_for_update().get(pk=project.pk)
    if project.environments.filter(name=name).exists():
        raise Conflict(f"Environment {name!r} already exists in {project.name!r}.", errors={"name": ["Exists already."]})
    envs = list(project.environments.order_by("position"))
    if after is None or after == "":
        position = envs[-1].position + 1 if envs else 0
    else:
        anchor = next((e for e in envs if e.name == after), None)
        if anchor is None:
            raise PlatformError(
                f"Cannot place {name!r} after {after!r}: no such environment in {project.name!r}.",
                errors={"after": [f"Unknown environment {after!r}."]},
            )
        position = anchor.position + 1
        # Shift in descending order so the unique (project, position) never collides.
        for env in sorted((e for e in envs if e.position >= position), key=lambda e: -e.position):
            Environment.objects.filter(pk=env.pk).update(position=F("position") + 1)
    return Environment.objects.create(project=project, name=name, position=position)


# Apps that run things for a project (builds, deployments, tasks) register how to stop
# and remove them; `project_delete` calls each before the records go. Registered in each
# app's `AppConfig.ready`, so imports still flow one way.
_project_teardowns: list = []


def register_project_teardown(func) -> None:
    if func not in _project_teardowns:
        _project_teardowns.append(func)


def project_delete(*, project: Project) -> None:
    """Stop and remove everything the project runs, then delete its records."""
    for teardown in reversed(_project_teardowns):
        teardown(project=project)
    project.delete()
