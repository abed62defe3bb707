"""Who may do what in a project: one table of action × role, and one function every entry
point goes through (the lookups in the services: pages, the API and the log WebSockets
all find a project or a component through them).

Superusers may do everything. Anyone else needs a membership; to a user without one, the
project does not exist (404), so names are not revealed. `actor=None` is the platform
itself (jobs, webhooks authenticated by their signature, commands).
"""

from __future__ import annotations

from django.db.models import QuerySet

from choreo_site.errors import Forbidden, NotFound
from environments.models import Membership, Project

VIEW = "view"  # read everything but secret values, which nobody reads
BUILD = "build"  # start and cancel builds
DEPLOY = "deploy"  # deploy, promote, roll back
CONFIGURE = "configure"  # configuration and secrets, a component's settings and webhook secret
RUN = "run"  # run and cancel tasks, pause and resume their schedules
MANAGE = "manage"  # delete the project, its environments, add components

ROLE_ACTIONS: dict[str, frozenset[str]] = {
    Membership.VIEWER: frozenset({VIEW}),
    Membership.DEVELOPER: frozenset({VIEW, BUILD, DEPLOY, CONFIGURE, RUN}),
    Membership.ADMIN: frozenset({VIEW, BUILD, DEPLOY, CONFIGURE, RUN, MANAGE}),
}


# Who may, in words, for a page that hides a button: "Only project admins can …".
ACTION_WORDS: dict[str, str] = {
    VIEW: "see this project",
    BUILD: "start and cancel builds",
    DEPLOY: "deploy, promote and roll back",
    CONFIGURE: "change configuration and component settings",
    RUN: "run and cancel tasks, and pause schedules",
    MANAGE: "manage members and environments, or delete the project",
}


def least_role(action: str) -> str:
    """The lowest role that may do `action` (roles are listed from lowest to highest)."""
    return next(role for role, _ in Membership.ROLE_CHOICES if action in ROLE_ACTIONS[role])


def refusal(action: str) -> str:
    return f"Only project {least_role(action)}s can {ACTION_WORDS[action]}."


def abilities(actor, project: Project) -> dict:
    """What `actor` may do in `project`, for a page: `can.deploy`, and `can.why.deploy`
    saying who may when the actor may not."""
    role = role_of(actor, project)
    allowed = ROLE_ACTIONS.get(role, frozenset())
    can: dict = {action: action in allowed for action in ACTION_WORDS}
    can["why"] = {action: refusal(action) for action in ACTION_WORDS if action not in allowed}
    can["role"] = "superuser" if getattr(actor, "is_superuser", False) else role
    return can


def role_of(actor, project: Project) -> str | None:
    if actor is None or getattr(actor, "is_superuser", False):
        return Membership.ADMIN
    if not getattr(actor, "is_authenticated", False):
        return None
    return Membership.objects.filter(project=project, user=actor).values_list("role", flat=True).first()


def project_authorize(*, actor, project: Project, action: str) -> None:
    """Refuse unless `actor` may do `action` in `project`: 404 to a non-member, 403 naming
    the role to a member whose role does not allow it."""
    role = role_of(actor, project)
    if role is None:
        raise NotFound(f"Project {project.name!r} does not exist.")
    if action not in ROLE_ACTIONS[role]:
        raise Forbidden(f"Your role in project {project.name!r} ({role}) may not {action} there.")


def projects_visible(actor) -> QuerySet[Project]:
    if actor is None or getattr(actor, "is_superuser", False):
        return Project.objects.all()
    if not getattr(actor, "is_authenticated", False):
        return Project.objects.none()
    return Project.objects.filter(memberships__user=actor)


def authorized(obj, *, actor, action: str):
    """`obj` (a project, or anything with a `.project`: a component, a build, a deployment)
    once `actor` may do `action` in its project: for a page's button, inside `page_action`,
    so a refusal is a message."""
    project_authorize(actor=actor, project=obj if isinstance(obj, Project) else obj.project, action=action)
    return obj


def check_view(obj, actor) -> None:
    """For a log stream's row (a build, a deployment): refuse unless `actor` may view it."""
    authorized(obj, actor=actor, action=VIEW)


def visible_get(queryset, *, pk: int, noun: str, actor, action: str = VIEW):
    """The row `pk` of `queryset` (anything with a `.project`) if `actor` may do `action` in
    its project. Missing, or in a project `actor` is not a member of: the same 404."""
    obj = queryset.filter(pk=pk).first()
    if obj is None:
        raise NotFound(f"{noun} {pk} does not exist.")
    try:
        authorized(obj, actor=actor, action=action)
    except NotFound:
        raise NotFound(f"{noun} {pk} does not exist.") from None
    return obj
