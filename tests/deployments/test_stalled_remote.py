"""Issue 10, finding 9: rollouts, polls and push processing shared one worker, and a fetch
may take 300 s: a signed push for a component whose remote stalls held another
component's redeploy in `pending` for 46 s. Git work has a queue and a worker of its own,
and a push's fetch a short timeout."""

import hashlib
import hmac
import json
import socket
import threading
import uuid

import django_rq
import pytest
from django.test import Client

from builds.models import Component, PushEvent
from deployments import services
from deployments.models import Deployment
from tests.deployments.test_deploy import build  # `component` is tests/deployments/conftest.py's

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")]


@pytest.fixture
def stalled_remote():
    """An HTTP "Git server" on loopback that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/stalled.git"
    server.close()
    for conn in held:
        conn.close()


def test_a_stalled_remote_never_holds_a_rollout(component, stalled_remote, settings):  # noqa: F811
    settings.GIT_FETCH_TIMEOUT = 2
    secret = "stalled-remote-secret-0123"
    # Made directly: creating it through the service would (rightly) wait on the remote.
    Component.objects.create(
        project=component.project, name="slow", repository=stalled_remote, path="sub", auto_build_on_commit=True, webhook_secret=secret
    )
    # 20 commits: more than GitHub lists, so which paths changed needs a fetch and a diff.
    commits = [{"id": f"{i:040x}", "added": [], "removed": [], "modified": []} for i in range(20)]
    body = json.dumps({"ref": "refs/heads/main", "before": "1" * 40, "after": "2" * 40, "commits": commits}).encode()
    headers = {
        "HTTP_X_GITHUB_EVENT": "push",
        "HTTP_X_GITHUB_DELIVERY": str(uuid.uuid4()),
        "HTTP_X_HUB_SIGNATURE_256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }
    assert Client().post("/hooks/shop/slow/", body, content_type="application/json", **headers).status_code == 202
    deployment = services.deployment_deploy(component=component, build=build(component))

    default_queue = django_rq.get_queue(settings.DEFAULT_QUEUE)
    assert default_queue.job_ids == [f"rollout-{deployment.pk}"], "the push's fetch waits on the rollouts' queue"
    django_rq.get_worker(settings.DEFAULT_QUEUE, worker_class="rq.SimpleWorker").work(burst=True)  # the `worker` daemon
    deployment.refresh_from_db()
    assert deployment.status == Deployment.ACTIVE, deployment.error

    django_rq.get_worker(settings.GIT_QUEUE, worker_class="rq.SimpleWorker").work(burst=True)  # the `git-worker` daemon
    event = PushEvent.objects.get(component__name="slow")
    assert event.outcome == PushEvent.REJECTED
    assert "took longer than 2s" in event.reason
