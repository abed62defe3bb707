"""Bad input to the tasks API and pages is refused with a 4xx naming the field, and
nothing is stored or run."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.models import Execution, Schedule
from tasks.views import parse_args

pytestmark = pytest.mark.django_db(transaction=True)
RUN = "/api/projects/shop/components/{c}/executions/"


def refused(response, field: str, status: int = 400):
    assert response.status_code == status, response.content
    body = response.json()
    assert field in body.get("errors", {}), body
    return body["detail"]


@pytest.mark.parametrize(
    ("component", "body", "field", "reason", "status"),
    [
        ("web", {"environment": "development"}, "component", "only a scheduled-task or a manual-task runs", 400),
        ("job", {"environment": "production"}, "environment", "not deployed to production", 400),
        ("job", {"environment": "nowhere"}, "environment", "nowhere", 404),
        ("job", {}, "environment", "required", 400),
        ("job", {"environment": "development", "args": "--all"}, "args", "list of strings", 400),
        ("job", {"environment": "development", "args": [1, 2]}, "args", "list of strings", 400),
        ("job", {"environment": "development", "args": [["a"]]}, "args", "list of strings", 400),
        ("job", {"environment": "development", "args": {"a": "b"}}, "args", "list of strings", 400),
        ("job", {"environment": "development", "args": ["x"] * 65}, "args", "at most 64", 400),
        ("job", {"environment": "development", "args": ["a\x00b"]}, "args", "NUL", 400),
        ("job", {"environment": "development", "argz": []}, "argz", "Unknown field", 400),
    ],
)
def test_a_bad_manual_run_is_refused_naming_the_field_and_nothing_runs(api, shop, component, body, field, reason, status):
    detail = refused(api.post(RUN.format(c=component), body, format="json"), field, status)
    assert reason.lower() in str(api.post(RUN.format(c=component), body, format="json").json()).lower(), detail
    assert Execution.objects.count() == 0


def test_cancelling_a_finished_run_is_a_conflict_and_changes_nothing(api, shop):
    made = api.post(RUN.format(c="job"), {"environment": "development"}, format="json").json()
    assert api.post(f"/api/executions/{made['id']}/cancel/").json()["status"] == "cancelled"
    detail = refused(api.post(f"/api/executions/{made['id']}/cancel/"), "status", 409)
    assert "is cancelled: only a queued or running execution can be cancelled" in detail
    assert Execution.objects.get().status == "cancelled"
    assert api.post("/api/executions/999999/cancel/").status_code == 404


def test_schedule_requests_name_what_is_wrong(api, shop):
    url = "/api/projects/shop/components/{c}/schedule/?environment={e}"
    assert "manual-task" in refused(api.get(url.format(c="job", e="development")), "component")
    assert "only a scheduled-task or a manual-task" in refused(api.get(url.format(c="web", e="development")), "component")
    assert "not deployed to production" in refused(api.get(url.format(c="cron", e="production")), "environment")
    refused(api.get("/api/projects/shop/components/cron/schedule/"), "environment")
    for body in ({"paused": "yes"}, {"paused": 1}, {}, {"paused": True, "expression": "* * * * *"}):
        response = api.patch(url.format(c="cron", e="development"), body, format="json")
        assert response.status_code == 400, (body, response.content)
    assert not Schedule.objects.get(component=shop["cron"]).paused
    count = "/api/projects/shop/components/cron/executions/count/?days={d}"
    for days in ("0", "-1", "x", "99999", ""):
        refused(api.get(count.format(d=days)), "days")


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["environment", "args", "x"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=8,
        ),
        max_size=3,
    )
)
def test_fuzzed_run_bodies_get_a_4xx_or_a_run_never_a_500(api, shop, body):
    before = Execution.objects.count()
    response = api.post(RUN.format(c="job"), body, format="json")
    valid = (
        body.get("environment") == "development"
        and set(body) <= {"environment", "args"}
        and (
            body.get("args") is None
            or (isinstance(body["args"], list) and all(isinstance(a, str) and "\x00" not in a for a in body["args"]))
        )
    )
    if valid:
        assert response.status_code == 201, response.content
        assert Execution.objects.count() == before + 1
    else:
        assert 400 <= response.status_code < 500 and "detail" in response.json(), response.content
        assert Execution.objects.count() == before


@given(st.text(max_size=60))
def test_run_now_arguments_split_as_a_shell_would_or_are_refused(text):
    from choreo_site.errors import PlatformError

    try:
        args = parse_args(text)
    except PlatformError as exc:
        assert "args" in exc.errors
        return
    assert args is None or all(isinstance(a, str) for a in args)
    assert parse_args("a \"b c\" 'd'") == ["a", "b c", "d"]
