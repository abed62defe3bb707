"""Auto build on commit: signed webhooks from the common Git hosts, polling, and the
event log. Pushes are made with real `git` to a real bare repository; the payloads follow
each provider's documented format and are signed as each provider signs."""

import hashlib
import hmac
import json
import shutil
import subprocess
import uuid

import django_rq
import pytest
from django.conf import settings
from django.test import Client

from builds.models import Build, Component, PushEvent
from builds.services import component_create, component_update, polls_enqueue_due
from environments.services import project_create
from tests.conftest import GitRepo, run_default_jobs

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "webhook-secret-0123456789"


class Remote:
    """A bare repository (what the Git host holds) and a clone that pushes to it."""

    def __init__(self, tmp_path):
        self.bare = tmp_path / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        (tmp_path / "work").mkdir()
        self.work = GitRepo(tmp_path / "work")
        self.work.git("remote", "add", "origin", str(self.bare))

    def push(self, files, message="change", branch="main") -> tuple[str, str, dict]:
        """Commit and push; returns (before, after, changed paths by kind)."""
        try:
            before = self.work.git("rev-parse", "HEAD")
        except subprocess.CalledProcessError:
            before = "0" * 40
        after = self.work.commit(files, message)
        self.work.git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        changes = {"added": [], "modified": [], "removed": []}
        if before != "0" * 40:
            for line in self.work.git("diff", "--name-status", before, after).splitlines():
                status, path = line.split("\t", 1)
                changes[{"A": "added", "M": "modified", "D": "removed"}[status[0]]].append(path)
        else:
            changes["added"] = list(files)
        return before, after, changes


def github_push(before, after, changes, branch="main"):
    return {
        "ref": f"refs/heads/{branch}",
        "before": before,
        "after": after,
        "created": before == "0" * 40,
        "deleted": False,
        "forced": False,
        "repository": {"full_name": "acme/shop"},
        "commits": [{"id": after, "message": "change", **changes}],
        "head_commit": {"id": after, **changes},
    }


def gitlab_push(before, after, changes, branch="main"):
    return {
        "object_kind": "push",
        "event_name": "push",
        "ref": f"refs/heads/{branch}",
        "before": before,
        "after": after,
        "checkout_sha": after,
        "total_commits_count": 1,
        "project": {"path_with_namespace": "acme/shop"},
        "commits": [{"id": after, "message": "change", **changes}],
    }


def bitbucket_push(before, after, branch="main"):
    return {
        "push": {
            "changes": [
                {
                    "new": {"type": "branch", "name": branch, "target": {"type": "commit", "hash": after}},
                    "old": {"type": "branch", "name": branch, "target": {"type": "commit", "hash": before}},
                    "created": False,
                    "closed": False,
                    "commits": [{"hash": after, "message": "change"}],
                }
            ]
        },
        "repository": {"full_name": "acme/shop"},
    }


def sign(provider, body: bytes, secret=SECRET, event="push", delivery=None):
    delivery = delivery or str(uuid.uuid4())
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if provider == "github":
        return {"HTTP_X_GITHUB_EVENT": event, "HTTP_X_GITHUB_DELIVERY": delivery, "HTTP_X_HUB_SIGNATURE_256": f"sha256={digest}"}
    if provider == "gitea":
        return {
            "HTTP_X_GITEA_EVENT": event,
            "HTTP_X_GITHUB_EVENT": event,  # Gitea sends both
            "HTTP_X_GITEA_DELIVERY": delivery,
            "HTTP_X_GITEA_SIGNATURE": digest,
            "HTTP_X_HUB_SIGNATURE_256": f"sha256={digest}",
        }
    if provider == "forgejo":
        return {"HTTP_X_FORGEJO_EVENT": event, "HTTP_X_FORGEJO_DELIVERY": delivery, "HTTP_X_FORGEJO_SIGNATURE": digest}
    if provider == "gitlab":
        return {
            "HTTP_X_GITLAB_EVENT": "Push Hook" if event == "push" else event,
            "HTTP_X_GITLAB_EVENT_UUID": delivery,
            "HTTP_X_GITLAB_TOKEN": secret,
        }
    if provider == "bitbucket":
        key = {"push": "repo:push", "ping": "diagnostics:ping"}.get(event, event)
        return {"HTTP_X_EVENT_KEY": key, "HTTP_X_REQUEST_UUID": delivery, "HTTP_X_HUB_SIGNATURE": f"sha256={digest}"}
    raise ValueError(provider)


def payload_for(provider, before, after, changes, branch="main"):
    if provider in ("github", "gitea", "forgejo"):
        return github_push(before, after, changes, branch)
    if provider == "gitlab":
        return gitlab_push(before, after, changes, branch)
    return bitbucket_push(before, after, branch)


def _deliver(provider, payload, project="shop", component="web", **sign_kwargs):
    body = json.dumps(payload).encode()
    return Client().post(f"/hooks/{project}/{component}/", body, content_type="application/json", **sign(provider, body, **sign_kwargs))


def queued_jobs():
    return sum(django_rq.get_queue(name).count for name in (settings.DEFAULT_QUEUE, settings.BUILDS_QUEUE, settings.GIT_QUEUE))


@pytest.fixture
def remote(tmp_path):
    remote = Remote(tmp_path)
    remote.push({".choreo/component.yaml": "schemaVersion: 1\ntype: service\n", "Dockerfile": "FROM choreo/busybox:1\n", "README": "x\n"})
    return remote


@pytest.fixture
def component(remote):
    for name in (settings.DEFAULT_QUEUE, settings.BUILDS_QUEUE, settings.GIT_QUEUE):
        django_rq.get_queue(name).empty()
    component = component_create(project=project_create(name="shop"), name="web", repository=str(remote.bare))
    return component_update(component=component, auto_build_on_commit=True, webhook_secret=SECRET, poll_enabled=False)


@pytest.mark.parametrize("provider", ["github", "gitea", "forgejo", "gitlab", "bitbucket"])
def test_signed_push_builds_the_head_commit(provider, remote, component):
    before, after, changes = remote.push({"README": "changed\n"})
    response = _deliver(provider, payload_for(provider, before, after, changes))
    assert response.status_code == 202, response.content
    assert response.json()["outcome"] == "built"  # decided at once: nothing to diff
    run_default_jobs()
    build = Build.objects.get()
    assert build.commit == after
    assert build.trigger == Build.WEBHOOK
    assert build.status == Build.QUEUED
    event = PushEvent.objects.get()
    assert (event.provider, event.outcome, event.build_id) == ("gitea" if provider == "forgejo" else provider, "built", build.pk)
    assert event.delivery_id


def test_deliveries_for_one_commit_coalesce_and_replays_are_ignored(remote, component):
    before, after, changes = remote.push({"README": "again\n"})
    payload = github_push(before, after, changes)
    assert _deliver("github", payload, delivery="d-1").status_code == 202
    assert _deliver("gitlab", gitlab_push(before, after, changes), delivery="d-2").status_code == 202
    replay = _deliver("github", payload, delivery="d-1")
    assert replay.status_code == 200
    assert "replayed" in replay.json()["detail"]
    run_default_jobs()
    assert Build.objects.count() == 1
    outcomes = sorted(PushEvent.objects.values_list("outcome", "reason"))
    assert outcomes[0][0] == "built"
    assert [o for o, _ in outcomes].count("ignored") == 2
    assert any("already built or building" in r for _, r in outcomes)


def test_ping_other_events_and_other_branches_are_acknowledged_without_building(remote, component):
    ping = _deliver("github", {"zen": "Keep it logically awesome.", "hook_id": 1}, event="ping")
    assert ping.status_code == 200 and ping.json()["detail"] == "ping acknowledged"
    issue = _deliver("github", {"action": "opened"}, event="issues")
    assert issue.status_code == 200 and "do not build" in issue.json()["detail"]
    before, after, changes = remote.push({"README": "feature\n"}, branch="feature")
    other = _deliver("github", github_push(before, after, changes, branch="feature"))
    assert other.status_code == 200 and "not the tracked branch 'main'" in other.json()["detail"]
    tag = _deliver("github", {**github_push(before, after, changes), "ref": "refs/tags/v1"})
    assert tag.status_code == 200 and "not a branch" in tag.json()["detail"]
    deleted = {**github_push(after, "0" * 40, changes), "deleted": True, "commits": [], "head_commit": None}
    gone = _deliver("github", deleted)
    assert gone.status_code == 200 and gone.json()["detail"] == "branch 'main' was deleted", gone.content
    assert queued_jobs() == 0
    assert not Build.objects.exists()
    assert PushEvent.objects.count() == 5


def test_auto_build_off_records_the_event_and_builds_nothing(remote, component):
    component_update(component=component, auto_build_on_commit=False)
    before, after, changes = remote.push({"README": "off\n"})
    response = _deliver("github", github_push(before, after, changes))
    assert response.status_code == 200
    assert response.json()["detail"] == "Auto Build on Commit is off"
    assert queued_jobs() == 0 and not Build.objects.exists()


@pytest.mark.parametrize("provider", ["github", "bitbucket"])
def test_push_that_touches_nothing_under_the_path_does_not_build(provider, tmp_path):
    remote = Remote(tmp_path)
    remote.push({"services/api/.choreo/component.yaml": "schemaVersion: 1\ntype: service\n", "docs/index.md": "x\n"})
    component = component_create(project=project_create(name="shop"), name="web", repository=str(remote.bare), path="services/api")
    component_update(component=component, auto_build_on_commit=True, webhook_secret=SECRET)
    before, after, changes = remote.push({"docs/index.md": "docs only\n"})
    assert _deliver(provider, payload_for(provider, before, after, changes)).status_code == 202
    run_default_jobs()
    assert not Build.objects.exists()
    assert PushEvent.objects.get().reason == "no change under services/api/"

    before, after, changes = remote.push({"services/api/app.py": "print(1)\n"})
    _deliver(provider, payload_for(provider, before, after, changes))
    run_default_jobs()
    assert Build.objects.get().commit == after

    component_update(component=component, build_on_path_changes_only=False)
    before, after, changes = remote.push({"docs/index.md": "more docs\n"})
    _deliver(provider, payload_for(provider, before, after, changes))
    run_default_jobs()
    assert Build.objects.filter(commit=after).exists()


@pytest.mark.parametrize(
    "mutate, status, reason",
    [
        (lambda h, b: h.pop("HTTP_X_HUB_SIGNATURE_256"), 401, "unsigned"),
        (lambda h, b: h.update(HTTP_X_HUB_SIGNATURE_256="sha256=" + "0" * 64), 401, "wrong signature"),
        (lambda h, b: h.update(HTTP_X_HUB_SIGNATURE_256="md5=abc"), 401, "wrong signature"),
        (lambda h, b: h.pop("HTTP_X_GITHUB_EVENT"), 400, "no event header"),
    ],
)
def test_bad_signatures_and_headers_are_refused_and_store_nothing(remote, component, mutate, status, reason):
    """Issue 10: every anonymous call stored a row. Unauthenticated calls store nothing."""
    before, after, changes = remote.push({"README": "x2\n"})
    body = json.dumps(github_push(before, after, changes)).encode()
    headers = sign("github", body)
    mutate(headers, body)
    response = Client().post("/hooks/shop/web/", body, content_type="application/json", **headers)
    assert response.status_code == status
    assert reason in response.json()["detail"]
    assert queued_jobs() == 0 and not Build.objects.exists()
    assert not PushEvent.objects.exists()


def test_gitlab_and_bitbucket_wrong_secrets_are_401(remote, component):
    before, after, changes = remote.push({"README": "x3\n"})
    assert _deliver("gitlab", gitlab_push(before, after, changes), secret="not-the-secret-at-all").status_code == 401
    assert _deliver("bitbucket", bitbucket_push(before, after), secret="not-the-secret-at-all").status_code == 401
    assert _deliver("gitea", github_push(before, after, changes), secret="not-the-secret-at-all").status_code == 401
    assert queued_jobs() == 0


def test_no_secret_set_refuses_every_delivery(remote, component):
    component_update(component=component, webhook_secret="")
    before, after, changes = remote.push({"README": "x4\n"})
    response = _deliver("github", github_push(before, after, changes))
    assert response.status_code == 401
    assert response.json()["detail"] == "wrong signature in X-Hub-Signature-256"  # as for a wrong secret: nothing told


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps({"before": "0" * 40, "after": "1" * 40}).encode(), "ref is missing"),
        (json.dumps({"ref": "refs/heads/main", "before": "x", "after": "1" * 40}).encode(), "before is not a 40-digit commit id"),
    ],
)
def test_malformed_payloads_are_400(component, body, reason):
    response = Client().post("/hooks/shop/web/", body, content_type="application/json", **sign("github", body))
    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert queued_jobs() == 0
    assert PushEvent.objects.get().outcome == "rejected"


def test_an_unknown_component_answers_like_a_wrong_signature_and_stores_nothing(component):
    """Issue 10: 404 for an unknown component against 401 for a known one told which names
    exist, and 200 unsigned calls made 200 rows."""
    body = b"{}"
    unknown = Client().post("/hooks/shop/nope/", body, content_type="application/json", **sign("github", body))
    known = Client().post("/hooks/shop/web/", body, content_type="application/json", **sign("github", body, secret="not-the-secret-at-all"))
    assert unknown.status_code == known.status_code == 401
    assert unknown.json() == known.json()
    assert not PushEvent.objects.exists()
    assert Client().get("/hooks/shop/web/").status_code == 405


def test_refused_deliveries_are_rate_limited_per_address(component, settings):
    from django.core.cache import cache

    cache.delete("counter:webhook-failures:127.0.0.1")
    settings.WEBHOOK_FAILURE_LIMIT = 5
    body = b"{}"

    def deliver():
        return Client().post("/hooks/shop/nope/", body, content_type="application/json", **sign("github", body)).status_code

    answers = [deliver() for _ in range(8)]
    assert answers == [401] * 5 + [429] * 3
    # A well-signed delivery from that address waits too, until the minute has passed.
    assert Client().post("/hooks/shop/web/", body, content_type="application/json", **sign("github", body)).status_code == 429
    cache.delete("counter:webhook-failures:127.0.0.1")
    assert not PushEvent.objects.exists()


def test_polling_picks_up_a_commit_pushed_to_a_local_bare_repository(remote, component):
    component_update(component=component, poll_enabled=True)
    assert polls_enqueue_due() == 1
    assert polls_enqueue_due() == 0  # not due again before POLL_INTERVAL
    run_default_jobs()
    assert not Build.objects.exists()  # the head when auto build was turned on does not build

    _, after, _ = remote.push({"README": "polled\n"})
    Component.objects.update(poll_next_at=None)
    polls_enqueue_due()
    run_default_jobs()
    build = Build.objects.get()
    assert (build.commit, build.trigger) == (after, Build.POLL)
    assert PushEvent.objects.get(provider="poll").outcome == "built"

    # The webhook for the same commit arrives late: it coalesces.
    _deliver("github", github_push("0" * 40, after, {"added": [], "modified": ["README"], "removed": []}))
    run_default_jobs()
    assert Build.objects.count() == 1


def test_polling_backs_off_on_errors(remote, component):
    component_update(component=component, poll_enabled=True)
    shutil.rmtree(remote.bare)
    Component.objects.update(poll_next_at=None)
    polls_enqueue_due()
    run_default_jobs()
    component.refresh_from_db()
    assert component.poll_failures == 1
    assert "cannot be read" in component.poll_error
    from django.utils import timezone

    assert (component.poll_next_at - timezone.now()).total_seconds() > settings.POLL_INTERVAL * 1.5


def test_events_are_listed_by_the_api_and_on_the_build_page(api, remote, component, admin_user):
    before, after, changes = remote.push({"README": "listed\n"})
    _deliver("github", github_push(before, after, changes), delivery="delivery-42")
    run_default_jobs()
    events = api.get("/api/projects/shop/components/web/events/").json()
    assert events[0]["delivery_id"] == "delivery-42"
    assert events[0]["commit"] == after
    assert events[0]["outcome"] == "built"
    browser = Client()
    browser.force_login(admin_user)
    html = browser.get("/projects/shop/components/web/build/").content.decode()
    assert "/hooks/shop/web/" in html and "delivery-42" in html and "Bitbucket Cloud" in html


def test_large_and_oversized_payloads(remote, component):
    before, after, changes = remote.push({"README": "big\n"})
    payload = github_push(before, after, changes)
    payload["padding"] = "x" * (4 * 1024 * 1024)  # Git hosts send several MiB for big pushes
    assert _deliver("github", payload).status_code == 202
    payload["padding"] = "x" * (11 * 1024 * 1024)
    response = _deliver("github", payload)
    assert response.status_code == 413
    assert "larger than 10 MiB" in response.json()["detail"]
