"""Push events from Git hosts: who sent it, is it signed, and what does it say.

Each provider is recognised by its headers and verified the way it signs:
- GitHub: HMAC-SHA256 of the body in `X-Hub-Signature-256` (`sha256=<hex>`);
- Gitea and Forgejo: the same header, or `X-Gitea-Signature` / `X-Forgejo-Signature`
  (bare hex);
- GitLab: the secret itself in `X-Gitlab-Token`;
- Bitbucket Cloud: HMAC-SHA256 in `X-Hub-Signature` (`sha256=<hex>`).
Every comparison is constant-time. Parsing never raises anything but `WebhookError`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field

from builds.git import COMMIT_RE

GITHUB, GITEA, GITLAB, BITBUCKET, POLL = "github", "gitea", "gitlab", "bitbucket", "poll"
PROVIDERS = (GITHUB, GITEA, GITLAB, BITBUCKET)
MAX_BODY = 10 * 1024 * 1024
ZERO_SHA = "0" * 40


class WebhookError(Exception):
    """A delivery the platform refuses. `status` is the HTTP answer: 400, 401, 413."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Delivery:
    provider: str
    delivery_id: str
    event: str  # push, ping, or the provider's own name for anything else


@dataclass
class Push:
    ref: str
    before: str
    after: str
    deleted: bool = False
    # Paths the payload says the commits touched; None when it does not say (Bitbucket)
    # or may have left some out (GitHub lists at most 20 commits).
    paths: list[str] | None = field(default=None)

    @property
    def branch(self) -> str | None:
        return self.ref[len("refs/heads/") :] if self.ref.startswith("refs/heads/") else None


def _header(headers, name: str) -> str:
    value = headers.get(name, "")
    return value if isinstance(value, str) else ""


def identify(headers) -> Delivery:
    """Which host sent this, its delivery id, and the event name."""
    if _header(headers, "X-Gitea-Event") or _header(headers, "X-Forgejo-Event"):
        event = _header(headers, "X-Gitea-Event") or _header(headers, "X-Forgejo-Event")
        delivery = _header(headers, "X-Gitea-Delivery") or _header(headers, "X-Forgejo-Delivery")
        return Delivery(GITEA, delivery[:100], event[:50])
    if _header(headers, "X-GitHub-Event"):
        return Delivery(GITHUB, _header(headers, "X-GitHub-Delivery")[:100], _header(headers, "X-GitHub-Event")[:50])
    if _header(headers, "X-Gitlab-Event"):
        event = _header(headers, "X-Gitlab-Event")
        delivery = _header(headers, "X-Gitlab-Event-UUID") or _header(headers, "Idempotency-Key")
        return Delivery(GITLAB, delivery[:100], {"Push Hook": "push", "System Hook": "system"}.get(event, event[:50]))
    if _header(headers, "X-Event-Key"):
        event = _header(headers, "X-Event-Key")
        return Delivery(
            BITBUCKET, _header(headers, "X-Request-UUID")[:100], {"repo:push": "push", "diagnostics:ping": "ping"}.get(event, event[:50])
        )
    raise WebhookError(400, "not a webhook from GitHub, GitLab, Gitea/Forgejo or Bitbucket: no event header")


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(delivery: Delivery, headers, body: bytes, secret: str) -> None:
    """Raise WebhookError(401) unless the delivery is signed with `secret`."""
    if not secret:
        raise WebhookError(401, "this component has no webhook secret: set webhook_secret first")
    if delivery.provider == GITLAB:
        token = _header(headers, "X-Gitlab-Token")
        if not token:
            raise WebhookError(401, "unsigned: X-Gitlab-Token is missing")
        if not hmac.compare_digest(token.encode(), secret.encode()):
            raise WebhookError(401, "wrong signature: X-Gitlab-Token does not match")
        return
    expected = _hmac_hex(secret, body)
    if delivery.provider == BITBUCKET:
        candidates = [("X-Hub-Signature", "sha256=")]
    elif delivery.provider == GITEA:
        candidates = [("X-Hub-Signature-256", "sha256="), ("X-Gitea-Signature", ""), ("X-Forgejo-Signature", "")]
    else:
        candidates = [("X-Hub-Signature-256", "sha256=")]
    present = [(name, prefix) for name, prefix in candidates if _header(headers, name)]
    if not present:
        raise WebhookError(401, f"unsigned: {candidates[0][0]} is missing")
    for name, prefix in present:
        given = _header(headers, name)
        if given.startswith(prefix) and hmac.compare_digest(given[len(prefix) :].encode(), expected.encode()):
            return
    raise WebhookError(401, f"wrong signature in {present[0][0]}")


def _load(body: bytes) -> dict:
    if len(body) > MAX_BODY:
        raise WebhookError(413, f"payload larger than {MAX_BODY // (1024 * 1024)} MiB")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WebhookError(400, "malformed payload: not JSON") from None
    if not isinstance(data, dict):
        raise WebhookError(400, "malformed payload: expected a JSON object")
    return data


def _sha(value, what: str) -> str:
    if not isinstance(value, str) or len(value) != 40 or not COMMIT_RE.match(value.lower()):
        raise WebhookError(400, f"malformed payload: {what} is not a 40-digit commit id")
    return value.lower()


def _paths(commits, *, complete: bool) -> list[str] | None:
    if not isinstance(commits, list) or not complete:
        return None
    paths: list[str] = []
    for commit in commits:
        if not isinstance(commit, dict):
            return None
        for key in ("added", "removed", "modified"):
            files = commit.get(key, [])
            if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
                return None
            paths.extend(files)
    return paths


def parse_push(delivery: Delivery, body: bytes) -> Push:
    """The push a `push` delivery describes. Raises WebhookError(400) naming what is wrong."""
    data = _load(body)
    if delivery.provider == BITBUCKET:
        push = data.get("push")
        changes = push.get("changes") if isinstance(push, dict) else None
        if not isinstance(changes, list) or not changes:
            raise WebhookError(400, "malformed payload: push.changes is missing")
        change = changes[-1]
        if not isinstance(change, dict):
            raise WebhookError(400, "malformed payload: push.changes[] is not an object")
        new, old = change.get("new"), change.get("old")
        ref_source = new if isinstance(new, dict) else old
        if not isinstance(ref_source, dict) or not isinstance(ref_source.get("name"), str):
            raise WebhookError(400, "malformed payload: push.changes[].new.name is missing")
        kind = {"branch": "refs/heads/", "tag": "refs/tags/"}.get(ref_source.get("type"), "refs/other/")
        ref = kind + ref_source["name"]

        def target(side):
            if not isinstance(side, dict):
                return ZERO_SHA
            tgt = side.get("target")
            return _sha(tgt.get("hash") if isinstance(tgt, dict) else None, "push.changes[].target.hash")

        return Push(ref=ref, before=target(old), after=target(new), deleted=new is None)
    ref = data.get("ref")
    if not isinstance(ref, str) or not ref:
        raise WebhookError(400, "malformed payload: ref is missing")
    before = _sha(data.get("before"), "before")
    after = _sha(data.get("after"), "after")
    commits = data.get("commits")  # none listed: the paths are unknown, so a build is due
    if delivery.provider == GITLAB:
        total = data.get("total_commits_count")
        complete = isinstance(total, int) and isinstance(commits, list) and total == len(commits)
    else:
        complete = isinstance(commits, list) and len(commits) < 20  # GitHub lists at most 20
    deleted = after == ZERO_SHA or data.get("deleted") is True
    return Push(ref=ref, before=before, after=after, deleted=deleted, paths=_paths(commits, complete=complete and before != ZERO_SHA))


def touches(paths: list[str], component_path: str) -> bool:
    """Whether any of `paths` lies under the component's directory."""
    if component_path in ("", "."):
        return True
    prefix = component_path.rstrip("/") + "/"
    return any(p == component_path or p.startswith(prefix) for p in paths)
