"""Protected environments: a deploy, promotion, rollback or configuration change there is a
request until a project admin other than the requester approves it.

The services that make those changes ask `gate()` first. In a protected environment it
records an `ApprovalRequest` pinning exactly what would be done (which release, which
configuration versions) and returns it instead of acting. Approval runs the executor its
kind registered (`register_executor`), with that payload: what was asked is what happens.

Rules, all here: the requester never approves their own request, superusers included; only
project admins (and superusers) approve or reject; a request expires after
APPROVAL_EXPIRY_HOURS; a newer request supersedes an older pending one for the same thing
(a deployment of the component in that environment, or the same configuration key); a
decided request cannot be decided again. Every step is audited.

Locks, in one order everywhere: the project row, then the component's, then the requests.
The services lock the project before they call `gate()`; `approve()` and `reject()` lock it
before the request.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from choreo_site import audit
from choreo_site.errors import Conflict, Forbidden, PlatformError
from choreo_site.models import AuditEvent
from environments import permissions
from environments.models import ApprovalRequest, Environment, Project

_executors: dict[str, Callable[[ApprovalRequest], dict]] = {}


def register_executor(kind: str, func: Callable[[ApprovalRequest], dict]) -> None:
    """`func(request)` carries out an approved request; returns what it made, e.g. {"deployment": 12}."""
    _executors[kind] = func


def gate(*, environment: Environment | None, component: str, kind: str, payload: dict, summary: str, actor) -> ApprovalRequest | None:
    """None when the change may go ahead now; else the request recorded for it. The
    platform itself (`actor=None`: auto deploys) never gets a request: callers that act
    without a user must not change a protected environment at all."""
    # Read again under the caller's project lock: a concurrent "protect" must not be missed.
    if environment is None or not Environment.objects.filter(pk=environment.pk, protected=True).exists():
        return None
    if actor is None or not getattr(actor, "is_authenticated", False):
        raise Forbidden(f"{environment.name} is protected: changes there need a person to ask and an admin to approve.")
    with transaction.atomic():
        pending = ApprovalRequest.objects.select_for_update().filter(
            environment=environment, component=component, status=ApprovalRequest.PENDING
        )
        if kind.startswith("config."):  # the same key's pending change, not the others'
            pending = pending.filter(kind__startswith="config.", payload__key=payload.get("key"))
        elif kind == "run":  # a manual task run supersedes only another run's request
            pending = pending.filter(kind="run")
        else:
            pending = pending.exclude(kind__startswith="config.").exclude(kind="run")
        for older in pending:
            older.status = ApprovalRequest.SUPERSEDED
            older.decided_at = timezone.now()
            older.save(update_fields=["status", "decided_at"])
            audit.record("approval.supersede", project=environment.project, environment=environment, target=f"request {older.pk}")
        request = ApprovalRequest.objects.create(
            project=environment.project,
            environment=environment,
            component=component,
            kind=kind,
            summary=summary[:300],
            payload=payload,
            requested_by=actor,
            expires_at=timezone.now() + timedelta(hours=settings.APPROVAL_EXPIRY_HOURS),
        )
        audit.record(
            "approval.request",
            project=environment.project,
            environment=environment,
            target=f"request {request.pk}: {request.summary}",
            outcome="requested",
            details={"kind": kind, **payload},
        )
    return request


def request_list(*, project: Project, status: str | None = None):
    requests = project.approval_requests.select_related("environment", "requested_by", "decided_by")
    if status:
        valid = [s for s, _ in ApprovalRequest.STATUS_CHOICES]
        if status not in valid:
            raise PlatformError(
                f"status {status!r} is not one of {', '.join(valid)}.", errors={"status": [f"Use one of {', '.join(valid)}."]}
            )
        requests = requests.filter(status=status)
    expire_due()
    return requests


def request_get(*, pk: int, actor) -> ApprovalRequest:
    """A request by id, if `actor` may see its project (404 otherwise, like a missing one)."""
    return permissions.visible_get(
        ApprovalRequest.objects.select_related("project", "environment"), pk=pk, noun="Approval request", actor=actor
    )


def _decidable(request: ApprovalRequest, actor) -> None:
    permissions.authorized(request.project, actor=actor, action=permissions.MANAGE)
    if request.status != ApprovalRequest.PENDING:
        raise Conflict(
            f"Request {request.pk} is {request.status}: only a pending request can be decided.", errors={"status": [request.status]}
        )
    if request.expires_at <= timezone.now():  # expire_due() marks it; this covers the moment between
        raise Conflict(
            f"Request {request.pk} expired at {request.expires_at:%Y-%m-%d %H:%M} UTC: ask again.", errors={"status": ["expired"]}
        )
    if request.requested_by_id is not None and request.requested_by_id == getattr(actor, "pk", None):
        raise Forbidden("You asked for this change: another project admin must approve it.")


@contextmanager
def _audited_refusal(action: str, request: ApprovalRequest):
    """Record a refused decision (own request, not an admin, already decided) in the audit
    trail, outside the transaction it rolled back. Not a 404: whoever may not see the
    project learns nothing, and leaves nothing there."""
    try:
        yield
    except (Forbidden, Conflict) as exc:
        audit.record(
            action,
            project=request.project,
            environment=request.environment,
            target=f"request {request.pk}: {request.summary}",
            outcome=AuditEvent.REFUSED,
            details={"reason": str(exc)},
        )
        raise


def approve(*, request: ApprovalRequest, actor, comment: str = "") -> ApprovalRequest:
    """Carry the request out exactly as asked, then mark it approved. If it cannot be
    carried out now (another rollout is running there, say), it stays pending, with the reason."""
    expire_due()
    with _audited_refusal("approval.approve", request), transaction.atomic():
        Project.objects.select_for_update().filter(pk=request.project_id).first()
        request = ApprovalRequest.objects.select_for_update().select_related("project", "environment").get(pk=request.pk)
        _decidable(request, actor)
        request.result = _executors[request.kind](request)
        request.status, request.decided_by, request.decided_at, request.comment = ApprovalRequest.APPROVED, actor, timezone.now(), comment
        request.save(update_fields=["result", "status", "decided_by", "decided_at", "comment"])
        audit.record(
            "approval.approve",
            project=request.project,
            environment=request.environment,
            target=f"request {request.pk}: {request.summary}",
            details={"comment": comment, **request.result},
        )
    return request


def reject(*, request: ApprovalRequest, actor, comment: str = "") -> ApprovalRequest:
    expire_due()
    with _audited_refusal("approval.reject", request), transaction.atomic():
        Project.objects.select_for_update().filter(pk=request.project_id).first()
        request = ApprovalRequest.objects.select_for_update().select_related("project", "environment").get(pk=request.pk)
        _decidable(request, actor)
        request.status, request.decided_by, request.decided_at, request.comment = ApprovalRequest.REJECTED, actor, timezone.now(), comment
        request.save(update_fields=["status", "decided_by", "decided_at", "comment"])
        audit.record(
            "approval.reject",
            project=request.project,
            environment=request.environment,
            target=f"request {request.pk}: {request.summary}",
            details={"comment": comment},
        )
    return request


def expire_due() -> int:
    """Mark pending requests past their time as expired, each audited as the platform's
    doing (a housekeeping chore too)."""
    due = ApprovalRequest.objects.filter(status=ApprovalRequest.PENDING, expires_at__lte=timezone.now())
    expired = 0
    for request in due.select_related("project", "environment"):
        if ApprovalRequest.objects.filter(pk=request.pk, status=ApprovalRequest.PENDING).update(status=ApprovalRequest.EXPIRED):
            audit.record(
                "approval.expire",
                project=request.project,
                environment=request.environment,
                target=f"request {request.pk}: {request.summary}",
                details={"expired_at": request.expires_at.isoformat()},
                actor="system",
            )
            expired += 1
    return expired


def pending_for(*, environment: Environment, component: str) -> ApprovalRequest | None:
    expire_due()
    return ApprovalRequest.objects.filter(environment=environment, component=component, status=ApprovalRequest.PENDING).first()
