"""State changes of projects and environments. Pages, the API and commands call these."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.crypto import salted_hmac

from choreo_site import audit, redaction
from choreo_site.errors import Conflict, NotFound, PlatformError
from environments import approvals, permissions
from environments.models import ApprovalRequest, ConfigValue, Environment, Membership, Project
from environments.names import NAME_HELP, NAME_RE
from environments.values import ENV_NAME_HELP, ENV_NAME_RE, FILE_NAME_HELP, FILE_NAME_RE, coerce_config_value

DEFAULT_ENVIRONMENTS = ("development", "production")


def _check_name(field: str, name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PlatformError(f"{field} {name!r} is not a valid name: {NAME_HELP}.", errors={field: [f"Use {NAME_HELP}."]})


def project_get(*, name: str, actor, action: str = permissions.VIEW) -> Project:
    """The project `actor` may do `action` in (environments.permissions); `actor=None` is the
    platform itself."""
    try:
        project = Project.objects.get(name=name)
    except Project.DoesNotExist:
        raise NotFound(f"Project {name!r} does not exist.") from None
    permissions.project_authorize(actor=actor, project=project, action=action)
    return project


def environment_get(*, project: Project, name: str) -> Environment:
    try:
        return project.environments.get(name=name)
    except Environment.DoesNotExist:
        raise NotFound(
            f"Environment {name!r} does not exist in project {project.name!r}.", errors={"environment": ["Unknown environment."]}
        ) from None


@transaction.atomic
def project_create(*, name: str, actor=None) -> Project:
    """Create a project with the default environments, `development` then `production`.
    The user who creates it becomes its admin."""
    _check_name("name", name)
    if Project.objects.filter(name=name).exists():
        raise Conflict(f"Project {name!r} already exists.", errors={"name": ["A project with this name exists."]})
    project = Project.objects.create(name=name)
    if actor is not None and getattr(actor, "is_authenticated", False):
        Membership.objects.create(project=project, user=actor, role=Membership.ADMIN)
    Environment.objects.bulk_create(
        Environment(project=project, name=env_name, position=i) for i, env_name in enumerate(DEFAULT_ENVIRONMENTS)
    )
    audit.record("project.create", project=project, target=f"project {name}")
    return project


# Members. A project always keeps an admin: the last one can be neither removed nor given
# another role. Checked under a lock on the project row, so two admins demoting each other
# at once cannot both succeed.


def member_list(*, project: Project) -> list[Membership]:
    return list(project.memberships.select_related("user").order_by("user__username"))


def _member_user(username: str, *, active: bool = True):
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(username=username)
    user = (users.filter(is_active=True) if active else users).first() if isinstance(username, str) else None
    if user is None:
        raise PlatformError(f"There is no user {username!r}.", errors={"username": ["No such user."]})
    return user


def _keeps_an_admin(project: Project, *, losing) -> None:
    admins = project.memberships.filter(role=Membership.ADMIN, user__is_active=True).exclude(user=losing)
    if not admins.exists():
        raise Conflict(
            f"{losing.username} is the last admin of {project.name!r}: make another member admin first.",
            errors={"role": ["A project keeps at least one admin."]},
        )


@transaction.atomic
def member_set(*, project: Project, username: str, role: str) -> tuple[Membership, bool]:
    """Give `username` the role `role` in the project; returns the membership and whether it is new."""
    roles = [r for r, _ in Membership.ROLE_CHOICES]
    if role not in roles:
        raise PlatformError(f"{role!r} is not a role: use one of {', '.join(roles)}.", errors={"role": [f"Use one of {', '.join(roles)}."]})
    user = _member_user(username)
    project = Project.objects.select_for_update().get(pk=project.pk)
    membership = project.memberships.filter(user=user).first()
    if membership is None:
        audit.record("member.add", project=project, target=f"user {user.username}", details={"role": role})
        return Membership.objects.create(project=project, user=user, role=role), True
    if membership.role == Membership.ADMIN and role != Membership.ADMIN:
        _keeps_an_admin(project, losing=user)
    audit.record("member.role", project=project, target=f"user {user.username}", details={"role": role, "was": membership.role})
    membership.role = role
    membership.save(update_fields=["role"])
    return membership, False


@transaction.atomic
def member_remove(*, project: Project, username: str) -> None:
    user = _member_user(username, active=False)  # a deactivated user can still be removed
    project = Project.objects.select_for_update().get(pk=project.pk)
    membership = project.memberships.filter(user=user).first()
    if membership is None:
        raise NotFound(f"{username} is not a member of {project.name!r}.", errors={"username": ["Not a member."]})
    if membership.role == Membership.ADMIN:
        _keeps_an_admin(project, losing=user)
    audit.record("member.remove", project=project, target=f"user {user.username}", details={"was": membership.role})
    membership.delete()


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
    environment = Environment.objects.create(project=project, name=name, position=position)
    audit.record("environment.create", project=project, environment=environment, target=f"environment {name}", details={"after": after})
    return environment


@transaction.atomic
def environment_update(
    *, environment: Environment, protected: bool | None = None, name: str | None = None, after: str | None = None
) -> Environment:
    """Protect an environment (changes there then need an admin's approval) or stop; move it
    right after `after` in the promotion order ("" for first); rename it.

    A rename is refused once anything has been deployed or routed there: its URLs, its
    network and its replicas' labels are named after it (and an ingress route stays)."""
    project = Project.objects.select_for_update().get(pk=environment.project_id)
    environment = project.environments.get(pk=environment.pk)
    if name is not None and name != environment.name:
        _check_name("name", name)
        if project.environments.filter(name=name).exists():
            raise Conflict(f"Environment {name!r} already exists in {project.name!r}.", errors={"name": ["Exists already."]})
        if _environment_in_use(environment):
            raise Conflict(
                f"{environment.name} has deployments or routes: its URLs and network are named after it. "
                "Delete the environment's deployments (or the environment) before renaming it.",
                errors={"name": ["In use."]},
            )
        audit.record(
            "environment.rename", project=project, environment=environment, target=f"environment {environment.name}", details={"to": name}
        )
        environment.name = name
        environment.save(update_fields=["name"])
    if after is not None:
        _environment_move(project, environment, after)
        audit.record(
            "environment.move", project=project, environment=environment, target=f"environment {environment.name}", details={"after": after}
        )
    if protected is not None and environment.protected != protected:
        environment.protected = protected
        environment.save(update_fields=["protected"])
        action = "environment.protect" if protected else "environment.unprotect"
        audit.record(action, project=project, environment=environment, target=f"environment {environment.name}")
    environment.refresh_from_db()
    return environment


def _environment_move(project: Project, environment: Environment, after: str) -> None:
    order = [e for e in project.environments.order_by("position") if e.pk != environment.pk]
    if after == "":
        index = 0
    else:
        anchor = next((i for i, e in enumerate(order) if e.name == after), None)
        if anchor is None:
            raise PlatformError(
                f"Cannot place {environment.name!r} after {after!r}: no such other environment in {project.name!r}.",
                errors={"after": [f"Unknown environment {after!r}."]},
            )
        index = anchor + 1
    order.insert(index, environment)
    # Two passes, so that the unique (project, position) never collides on the way.
    top = max(e.position for e in order) + 1
    for i, env in enumerate(order):
        Environment.objects.filter(pk=env.pk).update(position=top + i)
    for i, env in enumerate(order):
        Environment.objects.filter(pk=env.pk).update(position=i)


def _environment_in_use(environment: Environment) -> bool:
    return any(check(environment=environment) for check in _environment_users)


# Apps that run things in an environment register how to tell (for a rename) and how to
# stop and remove them (for a delete).
_environment_users: list = []
_environment_teardowns: list = []


def register_environment_use(*, in_use, teardown) -> None:
    if in_use not in _environment_users:
        _environment_users.append(in_use)
        _environment_teardowns.append(teardown)


def environment_delete(*, environment: Environment) -> None:
    """Stop and remove what runs in the environment, then delete it with its configuration
    and history. The last environment of a project cannot be deleted."""
    project = environment.project
    if project.environments.count() <= 1:
        raise Conflict(
            f"{environment.name} is the last environment of {project.name!r}: a project keeps one.",
            errors={"environment": ["The last environment."]},
        )
    for teardown in reversed(_environment_teardowns):
        teardown(environment=environment)
    audit.record("environment.delete", project=project, environment=environment, target=f"environment {environment.name}")
    environment.delete()


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
    audit.record("project.delete", project=project, target=f"project {project.name}")
    project.delete()


def component_forget(*, project: Project, component: str) -> None:
    """Delete a deleted component's configuration values and withdraw its pending requests:
    both are kept by name, and a later component of the same name starts with neither."""
    ConfigValue.objects.filter(project=project, component=component).delete()
    for request in ApprovalRequest.objects.filter(project=project, component=component, status=ApprovalRequest.PENDING):
        request.status = ApprovalRequest.SUPERSEDED
        request.decided_at = timezone.now()
        request.save(update_fields=["status", "decided_at"])
        audit.record("approval.supersede", project=project, environment=request.environment, target=f"request {request.pk}")


# Configuration. A component's values are kept per scope: environment-independent
# (`environment=None`) or one environment's. Each set adds a version; deployments refer to
# versions by id, so nothing here ever changes what a running deployment uses.


def _current(*, project: Project, component: str, environment: Environment | None):
    return ConfigValue.objects.filter(project=project, component=component, environment=environment, current=True)


def config_list(*, project: Project, component: str, environment: Environment | None = None) -> list[ConfigValue]:
    """The current values of one scope, by key. A value is loaded (and a secret decrypted)
    only when asked for."""
    return list(_current(project=project, component=component, environment=environment).defer("plain", "sealed").order_by("key"))


def config_snapshot(*, project: Project, component: str, environment: Environment | None = None) -> dict[str, int]:
    """The current values of one scope as {key: version id}: what a release or deployment keeps."""
    return dict(_current(project=project, component=component, environment=environment).values_list("key", "pk"))


def config_versions(ids: Iterable[int]) -> dict[int, ConfigValue]:
    """Versions by id; as in `config_list`, values load only when asked for."""
    return ConfigValue.objects.defer("plain", "sealed").in_bulk(list(ids))


def _fingerprint(value: bytes) -> str:
    return salted_hmac("choreo.config.fingerprint", value, algorithm="sha256").hexdigest()


def _config_error(field: str, message: str, *, status_code: int | None = None) -> PlatformError:
    return PlatformError(message, errors={field: [message]}, status_code=status_code)


def _config_payload(key: str, value, *, is_file: bool, secret: bool, declared: dict | None) -> tuple[bytes, bool]:
    """Check a value against the rules and the configurable declared for its key; answer
    its bytes and whether it is a file."""
    ctype = (declared or {}).get("type")
    as_file = is_file or ctype == "file"
    if as_file:
        if not isinstance(key, str) or not FILE_NAME_RE.match(key):
            raise _config_error("key", f"{key!r} is not a valid name for a file value: use {FILE_NAME_HELP}.")
    elif not isinstance(key, str) or not ENV_NAME_RE.match(key):
        raise _config_error("key", f"{key!r} is not a valid key: it becomes an environment variable, so use {ENV_NAME_HELP}.")
    if is_file:
        if ctype not in (None, "file"):
            raise _config_error("file", f"{key} is declared as {ctype}: set it as a value, not as a file.")
        if not isinstance(value, bytes):
            raise _config_error("file", f"{key}: a file value needs the file's content.")
        data = value
        limit = settings.CONFIG_FILE_MAX_BYTES
    else:
        if isinstance(value, bytes):
            raise _config_error("value", f"{key}: a value must be text.")
        try:
            text = coerce_config_value(ctype or "string", value, reveal=not secret)
        except ValueError as exc:
            what = f"{key} is declared as {ctype}: it" if ctype else f"{key}"
            raise _config_error("value", f"{what} {exc}.") from None
        if "\x00" in text:
            raise _config_error("value", f"{key} contains a NUL character, which an environment variable cannot hold.")
        data = text.encode()
        limit = settings.CONFIG_FILE_MAX_BYTES if as_file else settings.CONFIG_VALUE_MAX_BYTES
    if len(data) > limit:
        raise _config_error("file" if is_file else "value", f"{key} is {len(data)} bytes; the largest allowed is {limit} bytes.")
    return data, as_file


@transaction.atomic
def config_set(
    *,
    project: Project,
    component: str,
    environment: Environment | None,
    key: str,
    value: str | int | float | bool | bytes,
    secret: bool = False,
    is_file: bool = False,
    filename: str = "",
    declared: dict | None = None,
    actor=None,
) -> ConfigValue | ApprovalRequest:
    """Set one configuration value: a new version that becomes the current one.

    `declared` is the configurable of that name in the component's newest build, if any:
    the value must have its type, and a declared secret is kept as a secret whatever
    `secret` says. `is_file` means `value` is a file's bytes. Setting the value it already
    has changes nothing. Running deployments are untouched: a value reaches replicas
    through the next deployment. In a protected environment the new version is kept,
    not current, and the request for approval to make it current is returned.
    """
    secret = bool(secret) or bool((declared or {}).get("secret"))
    data, as_file = _config_payload(key, value, is_file=is_file, secret=secret, declared=declared)
    Project.objects.select_for_update().filter(pk=project.pk).first()
    fingerprint = _fingerprint(data)
    current = _current(project=project, component=component, environment=environment).filter(key=key).first()
    if current is not None and (current.fingerprint, current.secret, current.is_file) == (fingerprint, secret, as_file):
        return current
    protected = environment is not None and Environment.objects.filter(pk=environment.pk, protected=True).exists()  # under the lock
    if not protected:
        _current(project=project, component=component, environment=environment).filter(key=key).update(current=False)
    item = ConfigValue.objects.create(
        project=project,
        component=component,
        environment=environment,
        key=key,
        secret=secret,
        is_file=as_file,
        filename=filename[:255] if as_file else "",
        plain=None if secret else data,
        sealed=data if secret else None,
        fingerprint=fingerprint,
        size=len(data),
        current=not protected,
    )
    if secret:
        transaction.on_commit(redaction.secrets_changed)
    if protected:
        return approvals.gate(
            environment=environment,
            component=component,
            kind="config.set",
            payload={"version": item.pk, "key": key},
            summary=f"set {key} of {component} in {environment.name}" + (" (a secret)" if secret else ""),
            actor=actor,
        )
    # The key and the version, never the value.
    details = {"version": item.pk, "secret": secret, "file": as_file}
    audit.record("config.set", project=project, environment=environment, target=f"{component} {key}", details=details)
    return item


@transaction.atomic
def config_delete(
    *, project: Project, component: str, environment: Environment | None, key: str, actor=None, approved: bool = False
) -> ApprovalRequest | None:
    """Remove a key from a scope. Its versions stay, for the deployments that used them.
    In a protected environment, returns the request for approval instead."""
    Project.objects.select_for_update().filter(pk=project.pk).first()
    current = _current(project=project, component=component, environment=environment).filter(key=key)
    if not current.exists():
        scope = f"environment {environment.name}" if environment else "the environment-independent configuration"
        raise NotFound(f"{key!r} is not set in {scope} of {component}.", errors={"key": ["Not set."]})
    if not approved:
        request = approvals.gate(
            environment=environment,
            component=component,
            kind="config.delete",
            payload={"key": key},
            summary=f"remove {key} of {component} from {environment.name if environment else ''}",
            actor=actor,
        )
        if request is not None:
            return request
    current.update(current=False)
    audit.record("config.delete", project=project, environment=environment, target=f"{component} {key}")
    return None


@transaction.atomic
def config_approved(request: ApprovalRequest) -> dict:
    """Carry out an approved configuration change: make the pinned version current, or
    remove the key."""
    if request.kind == "config.delete":
        config_delete(
            project=request.project, component=request.component, environment=request.environment, key=request.payload["key"], approved=True
        )
        return {"removed": request.payload["key"]}
    item = ConfigValue.objects.filter(pk=request.payload["version"], project=request.project, environment=request.environment).first()
    if item is None:
        raise Conflict(f"Request {request.pk} can no longer be carried out: its value is gone.", errors={"status": ["gone"]})
    _current(project=request.project, component=item.component, environment=item.environment).filter(key=item.key).update(current=False)
    ConfigValue.objects.filter(pk=item.pk).update(current=True)
    audit.record(
        "config.set",
        project=request.project,
        environment=request.environment,
        target=f"{item.component} {item.key}",
        details={"version": item.pk, "secret": item.secret, "file": item.is_file, "approval": request.pk},
    )
    return {"version": item.pk}


def config_secret_values(project_id: int | None = None) -> list[str]:
    """Every secret value ever set in the project (every project's, with None), current and
    past, as text: what its logs must never show."""
    values = ConfigValue.objects.filter(secret=True).only("sealed", "secret")
    if project_id is not None:
        values = values.filter(project_id=project_id)
    return sorted({item.text for item in values})
