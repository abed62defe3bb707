"""Manual runs through the real pipeline: a task built, deployed, run by a real worker in
a real container, with its environment's configuration; logs, exit codes, cancel, timeout."""

import pytest

from deployments.models import Deployment
from deployments.services import component_config_set, deployment_deploy
from tasks.models import Execution
from tests.choreo_site.test_operable import samples
from tests.conftest import run_default_jobs, run_task_jobs
from tests.deployments.test_deploy import build, env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")]


def deployed(component, environment="development"):
    b = build(component)
    deployment = deployment_deploy(component=component, environment=env(component, environment), build=b)
    run_default_jobs()
    deployment.refresh_from_db()
    assert deployment.status == Deployment.ACTIVE, deployment.error
    return deployment


def test_a_manual_run_with_arguments_records_output_and_exit_code(make_task, api):
    component = make_task()
    dev = env(component, "development")
    component_config_set(component=component, environment=dev, key="TOKEN", value="s3cr3t-t0ken-value", secret=True)
    deployment = deployed(component)
    assert deployment.replicas == []  # a task has no replicas

    response = api.post(
        "/api/projects/shop/components/job/executions/", {"environment": "development", "args": ["one", "two"]}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.data["status"] == "queued" and response.data["trigger"] == "manual" and response.data["deployment"] == deployment.pk
    run_task_jobs()
    execution = api.get(f"/api/executions/{response.data['id']}/").data
    assert execution["status"] == "succeeded" and execution["exit_code"] == 0, execution
    log = api.get(f"/api/executions/{execution['id']}/logs/").content.decode()
    assert "args: one two" in log and "greeting: hello" in log
    assert "s3cr3t-t0ken-value" not in log and "token: " in log

    default = api.post("/api/projects/shop/components/job/executions/", {"environment": "development"}, format="json").data
    run_task_jobs()
    assert "args: default-argument" in api.get(f"/api/executions/{default['id']}/logs/").content.decode()
    listed = api.get("/api/projects/shop/components/job/executions/?environment=development").data
    assert [e["id"] for e in listed] == [default["id"], execution["id"]]
    assert api.get("/api/projects/shop/components/job/executions/count/?environment=development&days=30").data == {"count": 2, "days": 30}
    metrics = samples(api.get("/metrics").content.decode())
    assert metrics[("choreo_executions_total", (("status", "succeeded"),))] == 2
    assert metrics[("choreo_execution_duration_seconds_count", ())] == 2


def test_a_failing_run_records_its_exit_code_and_a_timeout_is_timed_out(make_task, api):
    from tests.tasks.conftest import task_descriptor

    component = make_task(task_descriptor(task="{timeout: 2s}"))
    dev = env(component, "development")
    component_config_set(component=component, environment=dev, key="EXIT", value="3")
    component_config_set(component=component, environment=dev, key="TOKEN", value="x-token-value", secret=True)
    deployed(component)
    failed = api.post("/api/projects/shop/components/job/executions/", {"environment": "development"}, format="json").data
    run_task_jobs()
    failed = Execution.objects.get(pk=failed["id"])
    assert (failed.status, failed.exit_code, failed.error) == ("failed", 3, "exited with code 3")

    component_config_set(component=component, environment=dev, key="SLEEP", value="30")
    deployed(component)
    slow = api.post("/api/projects/shop/components/job/executions/", {"environment": "development"}, format="json").data
    run_task_jobs()
    slow = Execution.objects.get(pk=slow["id"])
    assert slow.status == "timed-out", slow.error
    assert "Timed out after 2s" in slow.error and slow.duration < 15
