"""Manual runs in a protected environment are requests: another admin approves, and the
pinned deployment runs with the asked arguments. Scheduled runs there run as scheduled."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from environments.models import ApprovalRequest, Membership
from tasks import services
from tasks.models import Execution
from tests.conftest import api_as
from tests.tasks.test_bad_input import RUN

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_manual_run_in_a_protected_environment_waits_for_another_admin(shop):
    project = shop["job"].project
    development = project.environments.get(name="development")
    development.protected = True
    development.save()
    dora, eve = (User.objects.create(username=name) for name in ("dora", "eve"))
    for user in (dora, eve):
        Membership.objects.create(project=project, user=user, role=Membership.ADMIN)

    asked = api_as(dora).post(RUN.format(c="job"), {"environment": "development", "args": ["--full"]}, format="json")
    assert asked.status_code == 202, asked.content
    request = ApprovalRequest.objects.get(pk=asked.json()["approval"]["id"])
    assert request.kind == "run" and request.payload["args"] == ["--full"] and not Execution.objects.exists()

    refused = api_as(dora).post(f"/api/approvals/{request.pk}/approve/", {}, format="json")
    assert refused.status_code == 403 and not Execution.objects.exists()  # never one's own request
    approved = api_as(eve).post(f"/api/approvals/{request.pk}/approve/", {}, format="json")
    assert approved.status_code == 200, approved.content
    execution = Execution.objects.get()
    assert (execution.trigger, execution.args, execution.deployment_id) == ("manual", ["--full"], request.payload["deployment"])
    assert execution.requested_by == "dora" and approved.json()["result"] == {"execution": execution.pk}


def test_a_newer_run_request_supersedes_an_older_one_but_not_a_deploy_request(shop):
    project = shop["job"].project
    development = project.environments.get(name="development")
    development.protected = True
    development.save()
    dora = User.objects.create(username="dora")
    Membership.objects.create(project=project, user=dora, role=Membership.DEVELOPER)
    deploy_request = ApprovalRequest.objects.create(
        project=project,
        environment=development,
        component="job",
        kind="deploy",
        summary="deploy",
        payload={},
        requested_by=dora,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    first = services.execution_run(component=shop["job"], environment=development, args=["1"], actor=dora)
    second = services.execution_run(component=shop["job"], environment=development, args=["2"], actor=dora)
    first.refresh_from_db()
    deploy_request.refresh_from_db()
    assert (first.status, second.status, deploy_request.status) == ("superseded", "pending", "pending")


def test_scheduled_runs_in_a_protected_environment_run_as_scheduled(shop):
    development = shop["cron"].project.environments.get(name="development")
    development.protected = True
    development.save()
    schedule = shop["cron"].schedules.get()
    assert services.schedules_tick(schedule.next_due) == 1
    assert Execution.objects.get().status == "queued" and not ApprovalRequest.objects.exists()
