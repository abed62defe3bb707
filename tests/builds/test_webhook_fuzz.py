"""Fuzzing every payload parser and signature check: whatever arrives, the answer is a
WebhookError with a status and a reason, or a parsed push, never another exception."""

import hashlib
import hmac
import json

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from builds import webhooks

PROVIDERS = [
    webhooks.Delivery(webhooks.GITHUB, "d", "push"),
    webhooks.Delivery(webhooks.GITEA, "d", "push"),
    webhooks.Delivery(webhooks.GITLAB, "d", "push"),
    webhooks.Delivery(webhooks.BITBUCKET, "d", "push"),
]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=50)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=30,
)
sha = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)
near_push = st.fixed_dictionaries(
    {},
    optional={
        "ref": st.one_of(st.just("refs/heads/main"), st.text(max_size=30), json_values),
        "before": st.one_of(sha, json_values),
        "after": st.one_of(sha, json_values),
        "commits": st.one_of(st.lists(st.dictionaries(st.sampled_from(["added", "modified", "removed", "id"]), json_values)), json_values),
        "total_commits_count": json_values,
        "deleted": json_values,
        "push": st.one_of(
            st.fixed_dictionaries({"changes": st.lists(st.dictionaries(st.sampled_from(["new", "old"]), json_values), max_size=3)}),
            json_values,
        ),
    },
)


def _check_push(push):
    assert push.ref and len(push.before) == 40 and len(push.after) == 40
    assert push.paths is None or all(isinstance(p, str) for p in push.paths)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(PROVIDERS), st.binary(max_size=300))
def test_fuzz_parse_push_with_any_bytes(delivery, body):
    try:
        _check_push(webhooks.parse_push(delivery, body))
    except webhooks.WebhookError as err:
        assert err.status == 400 and err.reason


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(PROVIDERS), near_push)
def test_fuzz_parse_push_with_payloads_near_the_formats(delivery, payload):
    try:
        _check_push(webhooks.parse_push(delivery, json.dumps(payload).encode()))
    except webhooks.WebhookError as err:
        assert err.status == 400 and err.reason.startswith("malformed payload")


header_names = st.sampled_from(
    [
        "X-GitHub-Event",
        "X-GitHub-Delivery",
        "X-Hub-Signature-256",
        "X-Hub-Signature",
        "X-Gitea-Event",
        "X-Gitea-Signature",
        "X-Forgejo-Event",
        "X-Forgejo-Signature",
        "X-Gitlab-Event",
        "X-Gitlab-Token",
        "X-Event-Key",
        "X-Request-UUID",
    ]
)


@settings(max_examples=800, deadline=None)
@given(st.dictionaries(header_names, st.text(max_size=80), max_size=8), st.binary(max_size=100), st.text(min_size=1, max_size=40))
def test_fuzz_identify_and_verify_never_crash_and_never_accept_a_forgery(headers, body, secret):
    try:
        delivery = webhooks.identify(headers)
    except webhooks.WebhookError as err:
        assert err.status == 400
        return
    correct = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    signed = any(correct in value for value in headers.values()) or headers.get("X-Gitlab-Token") == secret
    try:
        webhooks.verify(delivery, headers, body, secret)
    except webhooks.WebhookError as err:
        assert err.status == 401
    else:
        assert signed, "accepted a delivery that does not carry the right signature"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.text(min_size=1, max_size=40))
def test_correct_signatures_are_accepted_for_every_provider(body, secret):
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    cases = [
        ({"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"}, "github"),
        ({"X-Gitea-Event": "push", "X-Gitea-Signature": digest}, "gitea"),
        ({"X-Forgejo-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"}, "gitea"),
        ({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}, "gitlab"),
        ({"X-Event-Key": "repo:push", "X-Hub-Signature": f"sha256={digest}"}, "bitbucket"),
    ]
    for headers, provider in cases:
        delivery = webhooks.identify(headers)
        assert delivery.provider == provider
        webhooks.verify(delivery, headers, body, secret)


def _flip(hexdigest: str, at: int) -> str:
    """The same digest with one hex digit changed."""
    digit = hexdigest[at]
    return hexdigest[:at] + ("0" if digit != "0" else "1") + hexdigest[at + 1 :]


# Each host's signing header in the form the host sends, from a hex digest (or a token).
SIGNED_BY = [
    ("github", lambda sig, secret: {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={sig}"}),
    ("gitea", lambda sig, secret: {"X-Gitea-Event": "push", "X-Gitea-Signature": sig}),
    ("gitea", lambda sig, secret: {"X-Forgejo-Event": "push", "X-Forgejo-Signature": sig}),
    ("gitea", lambda sig, secret: {"X-Forgejo-Event": "push", "X-Hub-Signature-256": f"sha256={sig}"}),
    ("bitbucket", lambda sig, secret: {"X-Event-Key": "repo:push", "X-Hub-Signature": f"sha256={sig}"}),
]
wrong_signatures = st.one_of(
    st.tuples(st.just("another secret"), st.text(min_size=1, max_size=40)),
    st.tuples(st.just("another body"), st.binary(max_size=200)),
    st.tuples(st.just("one digit changed"), st.integers(min_value=0, max_value=63)),
    st.tuples(st.just("sha1 instead of sha256"), st.none()),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SIGNED_BY), st.binary(max_size=200), st.text(min_size=1, max_size=40), wrong_signatures)
def test_fuzz_well_formed_but_wrong_signatures_are_refused_for_every_host(host, body, secret, wrong):
    provider, headers_for = host
    how, detail = wrong
    if how == "another secret":
        signature = hmac.new(detail.encode(), body, hashlib.sha256).hexdigest()
    elif how == "another body":
        signature = hmac.new(secret.encode(), detail, hashlib.sha256).hexdigest()
    elif how == "one digit changed":
        signature = _flip(hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(), detail)
    else:
        signature = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    assume(signature != hmac.new(secret.encode(), body, hashlib.sha256).hexdigest())  # another secret or body can sign the same
    headers = headers_for(signature, secret)
    delivery = webhooks.identify(headers)
    assert delivery.provider == provider
    try:
        webhooks.verify(delivery, headers, body, secret)
    except webhooks.WebhookError as err:
        assert err.status == 401 and err.reason.startswith("wrong signature")
    else:
        raise AssertionError(f"{provider} accepted a signature made with {how}")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_fuzz_a_wrong_gitlab_token_is_refused(body, secret, token):
    assume(token != secret)
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": token}
    try:
        webhooks.verify(webhooks.identify(headers), headers, body, secret)
    except webhooks.WebhookError as err:
        assert err.status == 401 and err.reason == "wrong signature: X-Gitlab-Token does not match"
    else:
        raise AssertionError("GitLab accepted a wrong token")


# Example-based checks of what the path filter and the payload limits decide.
GITHUB_PUSH = webhooks.Delivery(webhooks.GITHUB, "d", "push")
A, B = "a" * 40, "b" * 40


def _push(delivery=GITHUB_PUSH, **fields) -> webhooks.Push:
    return webhooks.parse_push(delivery, json.dumps({"ref": "refs/heads/main", "before": A, "after": B, **fields}).encode())


def test_the_paths_a_push_touched_are_listed_only_when_the_payload_lists_them_all():
    commits = [{"added": ["svc/a.py"], "modified": ["README.md"], "removed": []}, {"removed": ["svc/old.py"]}]
    assert sorted(_push(commits=commits).paths) == ["README.md", "svc/a.py", "svc/old.py"]
    assert _push(commits=commits * 10).paths is None  # 20 commits: GitHub may have left some out
    assert _push(commits=[{"added": "svc/a.py"}]).paths is None  # not a list: unknown, build
    assert _push(commits=[{"added": [1]}]).paths is None
    assert _push(commits=["abc"]).paths is None
    assert _push(commits={"added": []}).paths is None
    assert _push(commits=commits, before=webhooks.ZERO_SHA).paths is None  # a new branch: everything is new
    gitlab = webhooks.Delivery(webhooks.GITLAB, "d", "push")
    assert _push(gitlab, commits=commits, total_commits_count=2).paths == ["svc/a.py", "README.md", "svc/old.py"]
    assert _push(gitlab, commits=commits, total_commits_count=3).paths is None
    assert _push(gitlab, commits=commits, total_commits_count="2").paths is None


def test_a_push_without_a_commit_list_touched_unknown_paths():
    """No `commits` at all is not "no paths": the platform cannot tell, so it builds."""
    assert _push().paths is None
    assert _push(commits=[]).paths == []  # the branch moved to a commit it already had


BITBUCKET_PUSH = webhooks.Delivery(webhooks.BITBUCKET, "d", "push")


def _bitbucket(new, old) -> webhooks.Push:
    return webhooks.parse_push(BITBUCKET_PUSH, json.dumps({"push": {"changes": [{"new": new, "old": old}]}}).encode())


def _side(name, sha, kind="branch"):
    return {"type": kind, "name": name, "target": {"type": "commit", "hash": sha}}


def test_a_deleted_branch_is_a_deletion_for_every_host():
    """What a host sends when a branch is deleted: the push is marked deleted (the platform
    records it and builds nothing), with the commit the branch was at as `before`."""
    Z = webhooks.ZERO_SHA
    github = _push(after=Z, deleted=True)
    assert (github.deleted, github.before, github.after, github.branch) == (True, A, Z, "main")
    assert _push(webhooks.Delivery(webhooks.GITLAB, "d", "push"), after=Z).deleted  # GitLab sends no `deleted`
    assert _push(webhooks.Delivery(webhooks.GITEA, "d", "push"), after=B, deleted=True).deleted  # the payload's word is enough
    assert not _push().deleted and not _push(deleted="true").deleted and not _push(before=Z).deleted
    gone = _bitbucket(None, _side("main", A))
    assert gone == webhooks.Push(ref="refs/heads/main", before=A, after=Z, deleted=True)
    created = _bitbucket(_side("main", B), None)
    assert created == webhooks.Push(ref="refs/heads/main", before=Z, after=B, deleted=False)
    moved = _bitbucket(_side("main", B), _side("main", A))
    assert moved == webhooks.Push(ref="refs/heads/main", before=A, after=B, deleted=False)


def test_bitbucket_tags_and_other_refs_are_not_branches():
    tag = _bitbucket(_side("v1", B, "tag"), None)
    assert (tag.ref, tag.branch) == ("refs/tags/v1", None)
    other = _bitbucket(_side("default", B, "named_branch"), None)  # a Mercurial branch, from Bitbucket's past
    assert (other.ref, other.branch) == ("refs/other/default", None)


def test_each_malformed_field_is_named_in_the_400():
    def refused(delivery, payload) -> tuple[int, str]:
        with pytest.raises(webhooks.WebhookError) as error:
            webhooks.parse_push(delivery, json.dumps(payload).encode())
        assert str(error.value) == error.value.reason  # what a log shows
        return error.value.status, error.value.reason

    def bad_commit(what):
        return 400, f"malformed payload: {what} is not a 40-digit commit id"

    full = {"ref": "refs/heads/main", "before": A, "after": B}
    assert refused(GITHUB_PUSH, {**full, "ref": 5}) == (400, "malformed payload: ref is missing")
    assert refused(GITHUB_PUSH, {**full, "ref": ""}) == (400, "malformed payload: ref is missing")
    assert refused(GITHUB_PUSH, {**full, "before": "abc"}) == bad_commit("before")
    assert refused(GITHUB_PUSH, {**full, "after": "g" * 40}) == bad_commit("after")  # 40 characters, not hex
    assert refused(GITHUB_PUSH, {**full, "after": "b" * 41}) == bad_commit("after")
    assert _push(after="B" * 40).after == B  # upper case is the same commit
    assert refused(BITBUCKET_PUSH, {"push": {"changes": []}}) == (400, "malformed payload: push.changes is missing")
    assert refused(BITBUCKET_PUSH, {"push": {"changes": [5]}}) == (400, "malformed payload: push.changes[] is not an object")
    assert refused(BITBUCKET_PUSH, {"push": {"changes": [{"new": None, "old": None}]}}) == (
        400,
        "malformed payload: push.changes[].new.name is missing",
    )
    for target in ("abc", {"hash": "abc"}, None):
        payload = {"push": {"changes": [{"new": {"type": "branch", "name": "main", "target": target}, "old": None}]}}
        assert refused(BITBUCKET_PUSH, payload) == bad_commit("push.changes[].target.hash")


def test_a_push_touches_a_component_only_under_its_directory():
    assert webhooks.touches([], ".") and webhooks.touches([], "")  # the whole repository
    assert webhooks.touches(["svc/a.py"], "svc") and webhooks.touches(["svc/a.py"], "svc/")
    assert webhooks.touches(["svc"], "svc")  # the directory itself (a submodule, say)
    assert not webhooks.touches(["svc2/a.py", "README.md"], "svc")
    assert not webhooks.touches([], "svc")
    assert webhooks.touches(["apps/api-X/main.py"], "apps/api-X/")  # whatever the directory's name ends with


def test_payload_limits_and_shapes_are_refused_with_their_status():
    at_limit = b'"' + b"x" * (webhooks.MAX_BODY - 2) + b'"'
    with pytest.raises(webhooks.WebhookError) as refused:
        webhooks.parse_push(GITHUB_PUSH, at_limit)
    assert (refused.value.status, refused.value.reason) == (400, "malformed payload: expected a JSON object")
    with pytest.raises(webhooks.WebhookError) as refused:
        webhooks.parse_push(GITHUB_PUSH, at_limit + b" ")
    assert (refused.value.status, refused.value.reason) == (413, "payload larger than 10 MiB")
    for body, reason in ((b"\xff", "malformed payload: not JSON"), (b"[1]", "malformed payload: expected a JSON object")):
        with pytest.raises(webhooks.WebhookError) as refused:
            webhooks.parse_push(GITHUB_PUSH, body)
        assert (refused.value.status, refused.value.reason) == (400, reason)
    with pytest.raises(webhooks.WebhookError) as refused:
        webhooks.verify(GITHUB_PUSH, {}, b"{}", "secret")
    assert (refused.value.status, refused.value.reason) == (401, "unsigned: X-Hub-Signature-256 is missing")
    with pytest.raises(webhooks.WebhookError) as refused:
        webhooks.verify(GITHUB_PUSH, {"X-Hub-Signature-256": "sha256=00"}, b"{}", "")
    assert refused.value.status == 401 and "no webhook secret" in refused.value.reason


def test_a_missing_signature_is_refused_naming_the_header_each_host_signs_with():
    """The 401's reason is the sender's answer: it names what to set."""
    for delivery, header in zip(PROVIDERS, ["X-Hub-Signature-256", "X-Hub-Signature-256", "X-Gitlab-Token", "X-Hub-Signature"]):
        with pytest.raises(webhooks.WebhookError) as refused:
            webhooks.verify(delivery, {}, b"{}", "secret")
        assert (refused.value.status, refused.value.reason) == (401, f"unsigned: {header} is missing")


def _identify(**meta):
    """As the view hands them over: request headers, looked up whatever their case."""
    from django.http.request import HttpHeaders

    return webhooks.identify(HttpHeaders({f"HTTP_{k}": v for k, v in meta.items()}))


def test_each_host_s_delivery_id_and_event_name_are_kept_within_their_columns():
    from builds.models import PushEvent

    id_size, event_size = (PushEvent._meta.get_field(f).max_length for f in ("delivery_id", "event"))
    long_id, long_event = "d" * 300, "e" * 300
    for meta in (
        {"X_GITHUB_EVENT": long_event, "X_GITHUB_DELIVERY": long_id},
        {"X_GITEA_EVENT": long_event, "X_GITEA_DELIVERY": long_id},
        {"X_FORGEJO_EVENT": long_event, "X_FORGEJO_DELIVERY": long_id},
        {"X_GITLAB_EVENT": long_event, "X_GITLAB_EVENT_UUID": long_id},
        {"X_GITLAB_EVENT": long_event, "IDEMPOTENCY_KEY": long_id},
        {"X_EVENT_KEY": long_event, "X_REQUEST_UUID": long_id},
    ):
        delivery = _identify(**meta)
        assert (delivery.delivery_id, delivery.event) == (long_id[:id_size], long_event[:event_size]), meta


def test_a_request_from_no_known_host_is_refused_by_its_missing_event_header():
    with pytest.raises(webhooks.WebhookError) as refused:
        _identify(CONTENT_TYPE="application/json", X_HUB_SIGNATURE_256="sha256=00")
    assert (refused.value.status, refused.value.reason) == (
        400,
        "not a webhook from GitHub, GitLab, Gitea/Forgejo or Bitbucket: no event header",
    )


def test_each_host_s_event_names_are_push_ping_or_its_own():
    assert _identify(X_GITLAB_EVENT="Push Hook", X_GITLAB_EVENT_UUID="u-1").event == "push"
    assert _identify(X_GITLAB_EVENT="System Hook", IDEMPOTENCY_KEY="k-1") == webhooks.Delivery(webhooks.GITLAB, "k-1", "system")
    assert _identify(X_GITLAB_EVENT="Tag Push Hook").event == "Tag Push Hook"
    assert _identify(X_EVENT_KEY="repo:push", X_REQUEST_UUID="r-1") == webhooks.Delivery(webhooks.BITBUCKET, "r-1", "push")
    assert _identify(X_EVENT_KEY="diagnostics:ping").event == "ping"
    assert _identify(X_EVENT_KEY="repo:updated").event == "repo:updated"
    assert _identify(X_FORGEJO_EVENT="push", X_FORGEJO_DELIVERY="f-1") == webhooks.Delivery(webhooks.GITEA, "f-1", "push")
