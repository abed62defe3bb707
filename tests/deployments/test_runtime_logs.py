"""The Logs page: what the active replicas print, redacted, by replica and time range,
rendered by the server and then followed live over a WebSocket."""

import re

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from deployments import runtime_logs, services
from deployments.consumers import RuntimeLogConsumer
from deployments.models import Deployment
from environments.services import config_set
from tests.choreo_site.test_logstream import in_own_loop
from tests.deployments.test_deploy import build, finish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")]

SECRET = "tok-4f1e-very-secret"
TICKING = """\
FROM choreo/busybox:1
COPY index.html /www/index.html
CMD ["sh", "-c", "httpd -p 8080 -h /www && i=0 && while true; do echo \\"tick $i key=$API_KEY\\"; i=$((i+1)); sleep 0.3; done"]
"""
PAGE = "/projects/shop/components/web/logs/"


@pytest.fixture
def ticking(component):
    config_set(project=component.project, component="web", environment=None, key="API_KEY", value=SECRET, secret=True)
    deployment = finish(services.deployment_deploy(component=component, build=build(component, {"Dockerfile": TICKING})))
    assert deployment.status == Deployment.ACTIVE, deployment.error
    return component, deployment


def test_the_page_shows_redacted_lines_by_replica_and_time_range(logged_in, api, ticking):
    component, deployment = ticking
    names = [r["name"] for r in deployment.replicas]
    assert len(names) == 2
    page = logged_in.get(PAGE + "?since=5m").content.decode()
    log = page.split('id="runtime-log"')[1].split("</pre>")[0]
    assert "tick 0 key=***" in log and SECRET not in page
    assert all(f'<span class="replica">{name}</span>' in log for name in names)
    assert all(f'<option value="{name}"' in page for name in names)

    only = logged_in.get(PAGE + f"?since=5m&replica={names[1]}").content.decode().split('id="runtime-log"')[1].split("</pre>")[0]
    assert f'<span class="replica">{names[1]}</span>' in only and names[0] not in only
    raw = api.get(f"/api/projects/shop/components/web/logs/?environment=development&since=5m&replica={names[0]}").content.decode()
    assert f" {names[0]} tick 0 key=***" in raw and names[1] not in raw and SECRET not in raw
    stamps = re.findall(r"^(\S+) ", raw, re.M)
    assert stamps == sorted(stamps) and all(runtime_logs.normal_stamp(s) == s for s in stamps)

    nothing = logged_in.get(PAGE + "?environment=production").content.decode()
    assert "Nothing is deployed in production." in nothing and 'id="runtime-log"' not in nothing
    assert api.get("/api/projects/shop/components/web/logs/?since=forever").status_code == 400
    assert api.get("/api/projects/shop/components/web/logs/?since=9999999h").status_code == 200  # from the start


async def _follow(component, deployment, after, admin_user, stranger):
    path = f"/ws/runtime-logs/{component.pk}/{deployment.environment_id}/"

    def connect(user, query=""):
        communicator = WebsocketCommunicator(RuntimeLogConsumer.as_asgi(), path + query)
        communicator.scope["user"] = user
        communicator.scope["url_route"] = {"kwargs": {"component": str(component.pk), "environment": str(deployment.environment_id)}}
        return communicator

    for user, code in ((AnonymousUser(), 4401), (stranger, 4404)):
        connected, closed = await connect(user).connect()
        assert not connected and closed == code

    live = connect(admin_user, f"?after={after}&replica={deployment.replicas[0]['name']}")
    connected, _ = await live.connect()
    assert connected
    assert await live.receive_json_from(timeout=10) == {"type": "state", "text": "Live"}
    seen = []
    while len(seen) < 3:
        message = await live.receive_json_from(timeout=10)
        assert message["type"] == "lines"
        seen.extend(message["lines"])
    assert all(line["at"] > after and line["replica"] == deployment.replicas[0]["name"] for line in seen)
    assert [line["at"] for line in seen] == sorted(line["at"] for line in seen)
    assert all(re.fullmatch(r"tick \d+ key=\*\*\*", line["text"]) for line in seen)
    await live.disconnect()


def test_the_websocket_follows_new_lines_only_for_those_who_may_view(ticking, admin_user):
    component, deployment = ticking
    stranger = User.objects.create_user("stranger")
    lines = runtime_logs.lines(component=component, environment=deployment.environment, since=None, replica=deployment.replicas[0]["name"])
    in_own_loop(_follow)(component, deployment, lines[-1].at, admin_user, stranger)


@pytest.mark.django_db(transaction=True)
def test_a_followers_redactor_is_made_again_for_a_new_deployment_and_after_a_while(monkeypatch):
    # Without Docker: the cache alone, with the project's real secrets from the database.
    from environments.services import project_create

    project = project_create(name="shop")
    config_set(project=project, component="web", environment=None, key="OLD", value="old-secret-1234", secret=True)
    redactors = runtime_logs.RedactorCache()
    first = redactors.get(project.pk, 1)
    assert first("old-secret-1234") == "***" and redactors.get(project.pk, 1) is first  # kept while deployment 1 runs
    config_set(project=project, component="web", environment=None, key="NEW", value="new-secret-5678", secret=True)
    assert redactors.get(project.pk, 2)("new-secret-5678") == "***"  # a new deployment: its secrets at once
    monkeypatch.setattr(runtime_logs.RedactorCache, "refresh_every", 0.0)
    config_set(project=project, component="web", environment=None, key="LATER", value="later-secret-9", secret=True)
    assert redactors.get(project.pk, 2)("later-secret-9") == "***"  # and every refresh_every seconds
