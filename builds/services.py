"""State changes of components and builds. Pages, the API, webhooks, jobs and commands
call these; none of them repeats a rule."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job

from builds import git
from builds.models import Build, Component, Image
from choreo_site.errors import Conflict, NotFound, PlatformError
from choreo_site.logstream import LogWriter
from choreo_site.queues import builds_queue, enqueue_after_commit
from environments.models import Project
from environments.names import NAME_HELP, NAME_RE

log = logging.getLogger(__name__)


def component_get(*, project: Project, name: str) -> Component:
    try:
        return project.components.get(name=name)
    except Component.DoesNotExist:
        raise NotFound(f"Component {name!r} does not exist in project {project.name!r}.") from None


def _normal_path(path: str) -> str:
    path = (path or ".").strip().strip("/") or "."
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or "\\" in path or "\x00" in path or len(path) > 500:
        raise PlatformError(f"path {path!r} must be a directory inside the repository.", errors={"path": ["Use a relative path without '..'."]})
    return "/".join(parts) or "."


@transaction.atomic
def component_create(*, project: Project, name: str, repository: str, branch: str = "main", path: str = ".") -> Component:
    """Create a component. The repository must be readable and have the branch.

    Checks the remote with `git ls-remote`, so a typo is refused now rather than at the
    first build.
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PlatformError(f"name {name!r} is not a valid name: {NAME_HELP}.", errors={"name": [f"Use {NAME_HELP}."]})
    repository = git.validate_repository(repository)
    branch = git.validate_branch(branch or "main")
    path = _normal_path(path)
    if project.components.filter(name=name).exists():
        raise Conflict(f"Component {name!r} already exists in {project.name!r}.", errors={"name": ["Exists already."]})
    try:
        git.ls_remote_head(repository, branch)
    except git.GitError as exc:
        field = "branch" if "branch" in exc.errors else "repository"
        raise PlatformError(exc.detail, errors={field: [exc.detail]}) from None
    return Component.objects.create(project=project, name=name, repository=repository, branch=branch, path=path)


@transaction.atomic
def component_update(
    *,
    component: Component,
    auto_build_on_commit: bool | None = None,
    auto_deploy_on_build: bool | None = None,
    webhook_secret: str | None = None,
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
    component.auto_build_on_commit = build_on
    component.auto_deploy_on_build = deploy_on
    fields = ["auto_build_on_commit", "auto_deploy_on_build"]
    if webhook_secret is not None:
        if webhook_secret and len(webhook_secret) < 16:
            raise PlatformError("webhook_secret must be at least 16 characters.", errors={"webhook_secret": ["At least 16 characters."]})
        component.webhook_secret = webhook_secret
        fields.append("webhook_secret")
    component.save(update_fields=fields)
    return component


def _enqueue(build: Build) -> None:
    from builds.jobs import build_run

    enqueue_after_commit(
        builds_queue(), build_run, build.pk, job_id=build.job_id, job_timeout=settings.BUILD_TIMEOUT + 300, result_ttl=3600, failure_ttl=86400
    )


def build_start(*, component: Component, commit: str | None = None, trigger: str = Build.MANUAL) -> Build:
    """Queue a build of `commit` (any unambiguous prefix), or of the branch head.

    The commit is resolved now, so an unknown commit or branch is refused with a 400 and
    nothing is queued. Enqueues `builds.jobs.build_run` after commit.
    """
    if commit is not None and not isinstance(commit, str):
        raise PlatformError("commit must be a string of hex digits.", errors={"commit": ["Enter a commit id."]})
    commit = (commit or "").strip().lower() or None
    try:
        if commit is None:
            sha = git.ls_remote_head(component.repository, component.branch)
        else:
            if not git.COMMIT_RE.match(commit):
                raise git.GitError(f"commit {commit!r} is not a commit id (4 to 40 hex digits).", errors={"commit": ["Enter a commit id."]})
            mirror = git.mirror_path(component.repository)
            try:
                sha = git.resolve(mirror, branch=component.branch, commit=commit)
            except git.GitError:
                sha = git.resolve(git.sync(component.repository), branch=component.branch, commit=commit)
    except git.GitError as exc:
        raise PlatformError(exc.detail, errors=exc.errors or {"repository": [exc.detail]}) from None
    with transaction.atomic():
        build = Build.objects.create(component=component, requested_commit=commit or "", commit=sha, trigger=trigger)
        _enqueue(build)
    return build


def build_cancel(*, build: Build) -> Build:
    """Cancel a queued or running build. A queued one is cancelled at once; a running one
    is stopped by its worker's watchdog within about a second."""
    now = timezone.now()
    if Build.objects.filter(pk=build.pk, status=Build.QUEUED).update(status=Build.CANCELLED, finished_at=now, error="Cancelled before it started.") == 1:
        try:
            Job.fetch(build.job_id, connection=builds_queue().connection).cancel()
        except NoSuchJobError:
            pass
        writer = LogWriter(build.log_stream)
        writer.line("==> Cancelled before it started.")
        writer.end(Build.CANCELLED)
    elif Build.objects.filter(pk=build.pk, status=Build.RUNNING).update(cancel_requested=True) != 1:
        build.refresh_from_db()
        raise Conflict(f"Build {build.pk} is {build.status}; only a queued or running build can be cancelled.", errors={"status": [build.status]})
    build.refresh_from_db()
    return build


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_gone(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie is dead too
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def build_reap_orphans() -> list[int]:
    """Fail running builds whose worker died; re-enqueue queued builds whose job was lost.

    A running build is orphaned when its worker process on this host is gone, or when its
    heartbeat is older than BUILD_HEARTBEAT_TIMEOUT (a worker on another host).
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.BUILD_HEARTBEAT_TIMEOUT)
    reaped = []
    for build in Build.objects.filter(status=Build.RUNNING):
        gone = _process_gone(build.worker)
        if not gone and (build.heartbeat_at is None or build.heartbeat_at > stale):
            continue
        reason = (
            f"The worker running this build ({build.worker}) stopped: it was killed or crashed."
            if gone
            else f"The worker running this build ({build.worker}) sent no heartbeat for {settings.BUILD_HEARTBEAT_TIMEOUT}s."
        )
        if Build.objects.filter(pk=build.pk, status=Build.RUNNING, worker=build.worker).update(status=Build.FAILED, error=reason, finished_at=now) == 1:
            writer = LogWriter(build.log_stream)
            writer.line(f"==> FAILED: {reason}")
            writer.end(Build.FAILED)
            shutil.rmtree(settings.WORKSPACE_DIR / f"build-{build.pk}", ignore_errors=True)
            reaped.append(build.pk)
            log.warning("build %s failed: %s", build.pk, reason)
    connection = builds_queue().connection
    for build in Build.objects.filter(status=Build.QUEUED, created_at__lt=now - timedelta(seconds=30)):
        if not Job.exists(build.job_id, connection=connection):
            log.warning("build %s was queued but its job is gone; enqueueing it again", build.pk)
            with transaction.atomic():
                _enqueue(build)
    return reaped


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
    """Cancel the project's builds before its records go."""
    for build in Build.objects.filter(component__project=project, status__in=(Build.QUEUED, Build.RUNNING)):
        try:
            build_cancel(build=build)
        except Conflict:
            pass
