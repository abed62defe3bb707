"""State changes of components and builds. Pages, the API, webhooks, jobs and commands
call these; none of them repeats a rule."""

from __future__ import annotations

import logging
import random
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import models, transaction
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job

from builds import git, webhooks
from builds.descriptor import DESCRIPTOR_PATH, Descriptor, DescriptorError, parse_descriptor
from builds.dockerbuild import cache_forget
from builds.models import Build, Component, Image, PushEvent
from choreo_site import audit
from choreo_site.errors import Conflict, NotFound, PlatformError
from choreo_site.logstream import LogWriter
from choreo_site.queues import builds_queue, enqueue_after_commit, git_queue
from environments import permissions
from environments.models import Project
from environments.names import NAME_HELP, NAME_RE

log = logging.getLogger(__name__)


def component_get(*, project: Project, name: str) -> Component:
    try:
        return project.components.get(name=name)
    except Component.DoesNotExist:
        raise NotFound(f"Component {name!r} does not exist in project {project.name!r}.") from None


def component_by_names(*, project: str, component: str, actor, action: str = permissions.VIEW) -> Component:
    """The component addressed as in URLs, if `actor` may do `action` in its project:
    404 naming the project or the component (environments.permissions)."""
    from environments.services import project_get

    return component_get(project=project_get(name=project, actor=actor, action=action), name=component)


def build_get(*, pk: int, actor, action: str = permissions.VIEW) -> Build:
    """A build by id, if `actor` may do `action` in its project; else 404, like a missing one."""
    return permissions.visible_get(Build.objects.select_related("component__project"), pk=pk, noun="Build", actor=actor, action=action)


def repository_credential_values(project_id: int | None = None) -> list[str]:
    """The secrets in the repository URLs of a project (of every project, with None), for
    redaction: each password (or token given as the user name) and the whole user info."""
    values = []
    components = Component.objects.all() if project_id is None else Component.objects.filter(project_id=project_id)
    # An encrypted column cannot be filtered in SQL: every row is read and decrypted.
    for userinfo in components.values_list("repository_credentials", flat=True):
        if not userinfo:
            continue
        user, _, password = userinfo.partition(":")
        values.extend([userinfo, password or user])
    return values


def _normal_path(path: str) -> str:
    path = (path or ".").strip().strip("/") or "."
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or "\\" in path or "\x00" in path or len(path) > 500:
        raise PlatformError(
            f"path {path!r} must be a directory inside the repository.", errors={"path": ["Use a relative path without '..'."]}
        )
    return "/".join(parts) or "."


def descriptor_at(mirror, sha: str, component_path: str) -> Descriptor:
    """The component's descriptor at a commit, checked: its directory must exist and hold
    a valid `.choreo/component.yaml`. Raises with the descriptor's own error messages."""
    base = "" if component_path == "." else component_path + "/"
    descriptor_path = base + DESCRIPTOR_PATH
    if not git.path_exists(mirror, sha, component_path):
        raise PlatformError(
            f"path {component_path!r} does not exist at commit {sha[:12]}.", errors={"path": [f"Not in the repository at {sha[:12]}."]}
        )
    raw = git.read_file(mirror, sha, descriptor_path, max_bytes=256 * 1024)
    if raw is None:
        raise DescriptorError("", f"not found at commit {sha[:12]}: every component needs one", path=descriptor_path)
    return parse_descriptor(raw, path=descriptor_path)


def component_create(*, project: Project, name: str, repository: str, branch: str = "main", path: str = ".") -> Component:
    """Create a component. The repository must be readable and have the branch, and the
    branch head must hold the path with a valid descriptor: a typo is refused now, with the
    descriptor's own messages, rather than at the first build. Fetches the repository's
    mirror, which the first build then reuses.
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PlatformError(f"name {name!r} is not a valid name: {NAME_HELP}.", errors={"name": [f"Use {NAME_HELP}."]})
    repository = git.validate_repository(repository)
    public, credentials = git.split_credentials(repository)
    branch = git.validate_branch(branch or "main")
    path = _normal_path(path)
    if project.components.filter(name=name).exists():
        raise Conflict(f"Component {name!r} already exists in {project.name!r}.", errors={"name": ["Exists already."]})
    try:
        git.ls_remote_head(repository, branch)
        mirror = git.sync(repository)
        head = git.resolve(mirror, branch=branch)
    except git.GitError as exc:
        field = "branch" if "branch" in exc.errors else "repository"
        raise PlatformError(exc.detail, errors={field: [exc.detail]}) from None
    descriptor_at(mirror, head, path)
    with transaction.atomic():
        return _component_insert(project=project, name=name, public=public, credentials=credentials, branch=branch, path=path)


def _component_insert(*, project, name, public, credentials, branch, path) -> Component:
    if project.components.filter(name=name).exists():  # again: the fetch took time
        raise Conflict(f"Component {name!r} already exists in {project.name!r}.", errors={"name": ["Exists already."]})
    component = Component.objects.create(
        project=project, name=name, repository=public, repository_credentials=credentials, branch=branch, path=path
    )
    details = {"repository": public, "branch": branch, "path": path}
    audit.record("component.create", project=project, target=f"component {name}", details=details)
    return component


@transaction.atomic
def component_update(
    *,
    component: Component,
    auto_build_on_commit: bool | None = None,
    auto_deploy_on_build: bool | None = None,
    webhook_secret: str | None = None,
    poll_enabled: bool | None = None,
    build_on_path_changes_only: bool | None = None,
) -> Component:
    """Change a component's settings. `webhook_secret` is write-only; "" clears it.

    Auto deploy needs auto build: turning auto deploy on while auto build is (or becomes)
    off is refused, and turning auto build off turns auto deploy off.
    """
    component = Component.objects.select_for_update().get(pk=component.pk)
    build_on = component.auto_build_on_commit if auto_build_on_commit is None else auto_build_on_commit
    deploy_on = component.auto_deploy_on_build if auto_deploy_on_build is None else auto_deploy_on_build
    if auto_deploy_on_build and not build_on:
        raise PlatformError(
            "Auto Deploy on Build needs Auto Build on Commit: turn that on first.",
            errors={"auto_deploy_on_build": ["Requires auto_build_on_commit."]},
        )
    if not build_on:
        deploy_on = False
    fields = ["auto_build_on_commit", "auto_deploy_on_build"]
    for name, value in (("poll_enabled", poll_enabled), ("build_on_path_changes_only", build_on_path_changes_only)):
        if value is not None:
            setattr(component, name, value)
            fields.append(name)
    if build_on and not component.auto_build_on_commit:
        # Turning auto build on: only commits pushed from now on build, not today's head.
        try:
            component.last_seen_commit = git.ls_remote_head(component.fetch_url, component.branch)
            fields.append("last_seen_commit")
        except git.GitError:
            pass
    component.auto_build_on_commit = build_on
    component.auto_deploy_on_build = deploy_on
    if webhook_secret is not None:
        if webhook_secret and len(webhook_secret) < 16:
            raise PlatformError("webhook_secret must be at least 16 characters.", errors={"webhook_secret": ["At least 16 characters."]})
        component.webhook_secret = webhook_secret
        fields.append("webhook_secret")
    component.save(update_fields=fields)
    changed = {name: getattr(component, name) for name in fields if name not in ("webhook_secret", "last_seen_commit")}
    if webhook_secret is not None:
        changed["webhook_secret"] = "set" if webhook_secret else "cleared"  # never the secret itself
    audit.record("component.settings", project=component.project, target=f"component {component.name}", details=changed)
    return component


def build_enqueue(build: Build) -> None:
    """Put the build's job on the builds queue once the transaction commits."""
    from builds.jobs import build_run

    enqueue_after_commit(
        builds_queue(),
        build_run,
        build.pk,
        job_id=build.job_id,
        job_timeout=settings.BUILD_TIMEOUT + 300,
        result_ttl=3600,
        failure_ttl=86400,
    )


def build_start(*, component: Component, commit: str | None = None, trigger: str = Build.MANUAL) -> Build:
    """`build_request`'s build: the new one, or the one of that commit already under way."""
    return build_request(component=component, commit=commit, trigger=trigger)[0]


def build_request(*, component: Component, commit: str | None = None, trigger: str = Build.MANUAL) -> tuple[Build, bool]:
    """Queue a build of `commit` (any unambiguous prefix), or of the branch head; returns
    the build and whether it is new. A commit that is already queued or running is not
    built a second time: that build is returned. (A finished commit may be built again.)

    The commit is resolved now, so an unknown commit or branch is refused with a 400 and
    nothing is queued. Enqueues `builds.jobs.build_run` after commit.
    """
    if commit is not None and not isinstance(commit, str):
        raise PlatformError("commit must be a string of hex digits.", errors={"commit": ["Enter a commit id."]})
    commit = (commit or "").strip().lower() or None
    try:
        if commit is None:
            sha = git.ls_remote_head(component.fetch_url, component.branch)
        else:
            if not git.COMMIT_RE.match(commit):
                raise git.GitError(f"commit {commit!r} is not a commit id (4 to 40 hex digits).", errors={"commit": ["Enter a commit id."]})
            mirror = git.mirror_path(component.repository)
            try:
                sha = git.resolve(mirror, branch=component.branch, commit=commit)
            except git.GitError:
                sha = git.resolve(git.sync(component.fetch_url), branch=component.branch, commit=commit)
    except git.GitError as exc:
        raise PlatformError(exc.detail, errors=exc.errors or {"repository": [exc.detail]}) from None
    with transaction.atomic():
        Component.objects.select_for_update().filter(pk=component.pk).first()
        under_way = component.builds.filter(commit=sha, status__in=(Build.QUEUED, Build.RUNNING)).first()
        if under_way is not None:
            return under_way, False
        return _build_create(component=component, commit=sha, requested=commit or "", trigger=trigger), True


def _build_create(*, component: Component, commit: str, requested: str, trigger: str) -> Build:
    """Record a build, queue it once the transaction commits, and audit it."""
    build = Build.objects.create(component=component, requested_commit=requested, commit=commit, trigger=trigger)
    build_enqueue(build)
    details = {"commit": commit, "trigger": trigger}
    audit.record("build.start", project=component.project, target=f"build {build.pk} of {component.name}", details=details)
    return build


def build_list(*, component: Component, limit: int = 50) -> list[Build]:
    """The newest builds, each with `.running_in`: the environments whose active deployment
    runs its image (read through the releases made of it, in one query)."""
    builds = list(component.builds.all()[:limit])
    where: dict[int, list[str]] = {}
    active = Build.objects.filter(pk__in=[b.pk for b in builds], releases__deployments__status="active")
    for pk, environment in active.order_by("releases__deployments__environment__position").values_list(
        "pk", "releases__deployments__environment__name"
    ):
        where.setdefault(pk, []).append(environment)
    for build in builds:
        build.running_in = where.get(build.pk, [])
    return builds


def build_cancel(*, build: Build) -> Build:
    """Cancel a queued or running build. A queued one is cancelled at once; a running one
    is stopped by its worker's watchdog within about a second."""
    now = timezone.now()
    if (
        Build.objects.filter(pk=build.pk, status=Build.QUEUED).update(
            status=Build.CANCELLED, finished_at=now, error="Cancelled before it started."
        )
        == 1
    ):
        try:
            Job.fetch(build.job_id, connection=builds_queue().connection).cancel()
        except NoSuchJobError:
            pass
        writer = LogWriter(build.log_stream)
        writer.line("==> Cancelled before it started.")
        writer.end(Build.CANCELLED)
    elif Build.objects.filter(pk=build.pk, status=Build.RUNNING).update(cancel_requested=True) != 1:
        build.refresh_from_db()
        raise Conflict(
            f"Build {build.pk} is {build.status}; only a queued or running build can be cancelled.", errors={"status": [build.status]}
        )
    build.refresh_from_db()
    audit.record("build.cancel", project=build.project, target=f"build {build.pk} of {build.component.name}")
    return build


def build_auto_deploy_refused(*, build: Build, reason: str) -> None:
    """Record why Auto Deploy on Build did not deploy a build: on the build, and in its log."""
    Build.objects.filter(pk=build.pk).update(auto_deploy_error=reason[:2000])
    LogWriter(build.log_stream).line(f"==> Auto deploy refused: {reason}")


def images_prune_commit(*, component: Component, commit: str, keep: Image) -> list[str]:
    """Delete the older images of `commit`, except `keep` and those a deployment uses."""
    from builds import registry

    removed = []
    for image in component.images.filter(commit=commit).exclude(pk=keep.pk):
        if image.is_referenced():
            continue
        registry.delete_manifest(component.registry_repository, image.digest)
        image.delete()
        removed.append(image.digest)
    return removed


def project_teardown(*, project: Project) -> None:
    """Cancel the project's builds and delete its images before its records go: a project
    made later under the same name must not find them. Their blobs go at the registry's next
    garbage collection. A failure leaves the project's records; deleting again retries."""
    from builds import registry

    for build in Build.objects.filter(component__project=project, status__in=(Build.QUEUED, Build.RUNNING)):
        try:
            build_cancel(build=build)
        except Conflict:
            pass
    for component in project.components.all():
        cache_forget(component.pk)
        try:
            registry.repository_purge(component.registry_repository, component.images.values_list("digest", flat=True))
        except registry.RegistryError as exc:
            raise PlatformError(f"Could not delete the images of {component}: {exc}", status_code=503) from None


# Apps that run things for a component (deployments, tasks) register a check, which refuses
# a delete while something must not be interrupted, and a teardown, which stops what runs.
# Registered in each app's `AppConfig.ready`, so imports still flow one way.
_component_teardowns: list[tuple] = []


def register_component_teardown(*, teardown, describe, check=None) -> None:
    """`check(component)`, if given, raises to refuse; `teardown(component)` stops and removes;
    `describe(component)` lists what the delete would stop, for its confirmation."""
    if (check, teardown, describe) not in _component_teardowns:
        _component_teardowns.append((check, teardown, describe))


def component_delete_effects(*, component: Component) -> list[str]:
    """What deleting the component stops and removes, in words, for its confirmation."""
    effects = [line for _, _, describe in _component_teardowns for line in describe(component=component)]
    running = component.builds.filter(status__in=(Build.QUEUED, Build.RUNNING)).count()
    if running:
        effects.append(f"{running} queued or running build{'s' if running > 1 else ''}, cancelled")
    images = component.images.count()
    effects.append(f"{images} image{'s' if images != 1 else ''} in the registry")
    effects.append("its configuration values and secrets, builds, deployments and executions")
    return effects


def component_delete(*, component: Component) -> None:
    """Stop and remove everything the component runs (replicas, routes, schedules, task
    runs), cancel its builds, delete its images, configuration and records. Refused, before
    anything stops, while it rolls out. A failure leaves the records; deleting again retries."""
    from environments.models import Project

    with transaction.atomic():
        # The locks, in the order, that a deploy and a task run take: either one started
        # before, and the checks see it, or it starts after and sees `component_deleting`.
        Project.objects.select_for_update().filter(pk=component.project_id).first()
        Component.objects.select_for_update().filter(pk=component.pk).first()
        for check, _, _ in _component_teardowns:
            if check is not None:
                check(component=component)
        cache.set(_deleting_key(component.pk), 1, timeout=DELETING_TIMEOUT)
    try:
        _teardown_and_delete(component)
    finally:  # deleted, or failed with its records kept: either way nothing is held back
        cache.delete(_deleting_key(component.pk))


DELETING_TIMEOUT = 3600  # seconds: a delete that died keeps nothing refused for longer


def _deleting_key(component_pk: int) -> str:
    return f"component-deleting:{component_pk}"


def component_deleting(component: Component) -> bool:
    """Whether the component is being deleted: nothing may start for it meanwhile (a
    deploy, a task run), since its teardown would not stop what started after it."""
    return bool(cache.get(_deleting_key(component.pk)))


def _teardown_and_delete(component: Component) -> None:
    from builds import registry
    from environments.services import component_forget

    for _, teardown, _ in reversed(_component_teardowns):
        teardown(component=component)
    for build in component.builds.filter(status__in=(Build.QUEUED, Build.RUNNING)):
        try:
            build_cancel(build=build)
        except Conflict:
            pass
    cache_forget(component.pk)
    try:
        registry.repository_purge(component.registry_repository, component.images.values_list("digest", flat=True))
    except registry.RegistryError as exc:
        detail = f"Could not delete the images of {component}: {exc}. What it ran is stopped; its records stay: delete it again."
        raise PlatformError(detail, status_code=503) from None
    with transaction.atomic():
        # Values and requests are kept by name: a later component of that name must not find them.
        component_forget(project=component.project, component=component.name)
        audit.record("component.delete", project=component.project, target=f"component {component.name}")
        component.delete()


# The registry's garbage: blobs no manifest references (deleted images, a deleted project's).
# Collected on a schedule, when no build is running; builds wait while it runs, because a
# blob pushed before its manifest would look like garbage. Only the platform pushes (the
# registry takes only its tokens), so holding builds back is enough.


COLLECTION_KEY = "registry-collection"
# The collection's hold on builds is a lease its worker renews while it collects (between
# repositories, and every few seconds of the collector): a worker killed mid-collection (its
# collector dies with it) holds builds back for this long at most, not for the hours a fixed
# hold must allow for a slow collection.
COLLECTION_LEASE = 60  # seconds


def registry_collect() -> str:
    """Collect the registry's garbage now, unless a build is running or another collection
    is; returns what happened. Repositories whose component is gone (a build that pushed
    after its project was deleted) are emptied first."""
    from builds import registry

    if not settings.REGISTRY_EMBEDDED:  # another's registry: its repositories may be another platform's
        return "skipped: the registry is external (REGISTRY_URL); collect its garbage there"
    # Renewed while the purge and the collector run, and released only by its owner:
    # builds must never push while blobs are being swept.
    owner = secrets.token_hex(8)
    if not cache.add(COLLECTION_KEY, owner, timeout=COLLECTION_LEASE):
        return "skipped: another collection is running"

    def renew() -> None:
        """Extend the hold; one lost (expired, or Redis not answering) stops the collection."""
        if cache.get(COLLECTION_KEY) != owner or not cache.touch(COLLECTION_KEY, COLLECTION_LEASE):
            raise registry.RegistryError("the collection lost its hold on builds: stopped, to be done again later")

    try:
        # Set before this check: a build that starts after it waits for the key to go.
        if Build.objects.filter(status=Build.RUNNING).exists():
            return "skipped: builds are running"
        known = {c.registry_repository for c in Component.objects.select_related("project")}
        deleted = 0
        for name in registry.list_repositories():
            if name not in known:
                renew()
                deleted += registry.repository_purge(name)
        renew()
        summary = registry.collect_garbage(timeout=settings.REGISTRY_GC_TIMEOUT, tick=renew)
        log.info("registry garbage collection: %d manifest(s) of repositories without a component deleted; %s", deleted, summary)
        return f"{deleted} manifest(s) of repositories without a component deleted; {summary}"
    finally:
        if cache.get(COLLECTION_KEY) == owner:
            cache.delete(COLLECTION_KEY)


def registry_collection_wait(writer: LogWriter | None = None) -> None:
    """Hold a build back while the registry's garbage is being collected; fail it rather
    than push into a collection that will not end."""
    deadline = time.monotonic() + settings.REGISTRY_GC_TIMEOUT + 2 * COLLECTION_LEASE
    told = False
    while cache.get(COLLECTION_KEY):
        if time.monotonic() > deadline:
            raise PlatformError("the registry's garbage collection did not end: not pushing into it; build again later")
        if writer is not None and not told:
            writer.line("waiting for the registry's garbage collection to finish")
            told = True
        time.sleep(0.5)


def registry_collect_due() -> bool:
    """A housekeeping chore: enqueue a collection once per REGISTRY_GC_INTERVAL (0: never),
    on the builds queue, where the build workers run it between builds."""
    from builds.jobs import registry_collect_run

    if not settings.REGISTRY_EMBEDDED or settings.REGISTRY_GC_INTERVAL <= 0:
        return False
    if not cache.add("registry-collection-due", 1, timeout=settings.REGISTRY_GC_INTERVAL):
        return False
    builds_queue().enqueue(registry_collect_run, job_timeout=settings.REGISTRY_GC_TIMEOUT + 60, result_ttl=86400)
    return True


# Auto build on commit: webhooks and polling ---------------------------------------------


def _event(component: Component | None, **fields) -> PushEvent:
    if component is not None:
        fields.setdefault("project_name", component.project.name)
        fields.setdefault("component_name", component.name)
    return PushEvent.objects.create(component=component, **fields)


class WebhookRefused(PlatformError):
    """A delivery refused before it was authenticated: nothing is stored for it."""


def webhook_receive(*, project_name: str, component_name: str, headers, body: bytes, client: str = "") -> tuple[PushEvent, int]:
    """Authenticate a webhook delivery, record it and decide on it; returns the event and
    the HTTP status.

    Before the signature is checked nothing is stored, and an unknown component, a
    component without a secret and a wrong signature all answer the same 401: the answers
    do not tell which names exist. Refusals from one client address beyond
    WEBHOOK_FAILURE_LIMIT a minute answer 429 without being looked at. Once authenticated,
    every delivery is recorded, refusals (a malformed payload) included.
    A push that may build is queued for `builds.jobs.push_event_process` after commit and
    answered 202 at once: Git hosts give up after about ten seconds.
    """
    from choreo_site import throttling

    limit_key = f"webhook-failures:{client}"
    if throttling.count(limit_key) >= settings.WEBHOOK_FAILURE_LIMIT:
        raise WebhookRefused("too many refused deliveries from this address: try again in a minute", status_code=429)
    try:
        delivery = webhooks.identify(headers)
    except webhooks.WebhookError as exc:
        throttling.add(limit_key, window=60)
        raise WebhookRefused(exc.reason, status_code=exc.status) from None
    component = Component.objects.select_related("project").filter(project__name=project_name, name=component_name).first()
    # Without a component or a secret, verify against a random secret: the same answer, in
    # the same time, as a wrong signature.
    secret = component.webhook_secret if component is not None and component.webhook_secret else secrets.token_hex(32)
    try:
        webhooks.verify(delivery, headers, body, secret)
    except webhooks.WebhookError as exc:
        throttling.add(limit_key, window=60)
        raise WebhookRefused(exc.reason, status_code=exc.status) from None
    if component is None or not component.webhook_secret:  # signed with a random secret: impossible in practice
        raise WebhookRefused("wrong signature", status_code=401)
    meta = {
        "project_name": project_name[:100],
        "component_name": component_name[:100],
        "provider": delivery.provider,
        "delivery_id": delivery.delivery_id,
        "event": delivery.event,
    }
    with transaction.atomic():
        Component.objects.select_for_update().filter(pk=component.pk).first()  # one delivery at a time per component
        if delivery.delivery_id and component.push_events.filter(provider=delivery.provider, delivery_id=delivery.delivery_id).exists():
            return _event(
                component, **meta, outcome=PushEvent.IGNORED, reason="replayed delivery: this delivery id was received before"
            ), 200
        if delivery.event == "ping":
            return _event(component, **meta, outcome=PushEvent.IGNORED, reason="ping acknowledged"), 200
        if delivery.event != "push":
            return _event(component, **meta, outcome=PushEvent.IGNORED, reason=f"{delivery.event!r} events do not build"), 200
        try:
            push = webhooks.parse_push(delivery, body)
        except webhooks.WebhookError as exc:
            return _event(component, **meta, outcome=PushEvent.REJECTED, reason=exc.reason), exc.status
        return _push_decide(component, meta, push)


def _push_decide(component: Component, meta: dict, push: webhooks.Push) -> tuple[PushEvent, int]:
    fields = {**meta, "ref": push.ref[:300], "before": push.before, "after": push.after, "paths": push.paths}
    if push.branch is None:
        return _event(component, **fields, outcome=PushEvent.IGNORED, reason=f"{push.ref} is not a branch"), 200
    if push.branch != component.branch:
        return _event(
            component, **fields, outcome=PushEvent.IGNORED, reason=f"push to {push.branch!r}, not the tracked branch {component.branch!r}"
        ), 200
    if push.deleted:
        return _event(component, **fields, outcome=PushEvent.IGNORED, reason=f"branch {push.branch!r} was deleted"), 200
    Component.objects.filter(pk=component.pk).update(last_seen_commit=push.after)
    if not component.auto_build_on_commit:
        return _event(component, **fields, outcome=PushEvent.IGNORED, reason="Auto Build on Commit is off"), 200
    event = _event(component, **fields, outcome=PushEvent.QUEUED, reason="queued")
    if _needs_diff(component, event):
        # Deciding needs a fetch and a diff: too slow for the Git host's ten seconds.
        from builds import jobs

        enqueue_after_commit(git_queue(), jobs.push_event_process, event.pk, job_id=f"push-event-{event.pk}", result_ttl=600)
    else:
        event = push_event_process(event=event)
    return event, 202


def _needs_diff(component: Component, event: PushEvent) -> bool:
    """Whether the path filter must ask Git which paths the push changed."""
    return (
        component.build_on_path_changes_only
        and component.path != "."
        and event.paths is None
        and bool(event.before)
        and event.before != webhooks.ZERO_SHA
    )


def push_event_process(*, event: PushEvent) -> PushEvent:
    """Build the head commit of a queued push, unless it changes nothing under the
    component's path or that commit is already built or building (events coalesce)."""
    component = event.component
    now = timezone.now()
    if PushEvent.objects.filter(pk=event.pk, outcome=PushEvent.QUEUED, processed_at__isnull=True).update(processed_at=now) != 1:
        return event  # another worker processed it
    outcome, reason, build = PushEvent.IGNORED, "", None
    try:
        if component.build_on_path_changes_only and component.path != ".":
            paths = event.paths
            if _needs_diff(component, event):
                paths = git.changed_paths(git.sync(component.fetch_url, timeout=settings.GIT_FETCH_TIMEOUT), event.before, event.after)
            if paths is not None and not webhooks.touches(paths, component.path):
                reason = f"no change under {component.path}/"
        if not reason:
            build, created = build_start_for_commit(
                component=component, commit=event.after, trigger=Build.POLL if event.provider == webhooks.POLL else Build.WEBHOOK
            )
            outcome = PushEvent.BUILT if created else PushEvent.IGNORED
            reason = f"build {build.pk}" if created else f"commit already built or building: build {build.pk}"
    except PlatformError as exc:
        outcome, reason = PushEvent.REJECTED, exc.detail[:500]
    PushEvent.objects.filter(pk=event.pk).update(outcome=outcome, reason=reason[:500], build=build)
    event.refresh_from_db()
    return event


def build_start_for_commit(*, component: Component, commit: str, trigger: str) -> tuple[Build, bool]:
    """Queue a build of `commit` unless one is queued, running or succeeded already.

    The same commit never builds twice, whichever trigger (webhook, poll) saw it first.
    Returns the build and whether it is new.
    """
    with transaction.atomic():
        Component.objects.select_for_update().filter(pk=component.pk).first()
        existing = component.builds.filter(commit=commit, status__in=(Build.QUEUED, Build.RUNNING, Build.SUCCEEDED)).first()
        if existing is not None:
            return existing, False
        return _build_create(component=component, commit=commit, requested=commit, trigger=trigger), True


def component_poll(*, component: Component) -> PushEvent | None:
    """Look at the remote branch head; a new head is handled like a pushed commit.

    On an error, polls again later with exponential back-off (at most an hour) and keeps
    the reason in `poll_error`.
    """
    now = timezone.now()
    try:
        head = git.ls_remote_head(component.fetch_url, component.branch)
    except git.GitError as exc:
        failures = component.poll_failures + 1
        delay = min(settings.POLL_INTERVAL * 2**failures, 3600)
        Component.objects.filter(pk=component.pk).update(
            poll_failures=failures, poll_error=exc.detail[:1000], poll_next_at=now + timedelta(seconds=delay * random.uniform(1.0, 1.2))
        )
        return None
    Component.objects.filter(pk=component.pk).update(poll_failures=0, poll_error="")
    if head == component.last_seen_commit:
        return None
    meta = {"provider": webhooks.POLL, "delivery_id": "", "event": "push"}
    push = webhooks.Push(ref=f"refs/heads/{component.branch}", before=component.last_seen_commit, after=head)
    with transaction.atomic():
        event, status = _push_decide(component, meta, push)
    return event


def polls_enqueue_due() -> int:
    """Enqueue a poll for each component that polls and is due. Each claim is a
    conditional update, so two schedulers never poll the same component twice."""
    from builds.jobs import component_poll_run

    now = timezone.now()
    due = Component.objects.filter(auto_build_on_commit=True, poll_enabled=True).filter(
        models.Q(poll_next_at__isnull=True) | models.Q(poll_next_at__lte=now)
    )
    count = 0
    for component in due:
        jitter = random.uniform(0, settings.POLL_INTERVAL * 0.1)
        next_at = now + timedelta(seconds=settings.POLL_INTERVAL + jitter)
        claimed = Component.objects.filter(pk=component.pk, poll_next_at=component.poll_next_at).update(poll_next_at=next_at)
        if claimed == 1:
            git_queue().enqueue(component_poll_run, component.pk, job_id=f"poll-{component.pk}-{int(now.timestamp())}", result_ttl=60)
            count += 1
    return count
