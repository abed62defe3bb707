"""Issue 10, finding 5: a replica printed its DB_PASSWORD, then failed its health check.
The rollout log masked it, but the stored error quoted the replica's last output in plain
text, and the API and the pages showed it."""

import secrets

import pytest

from builds.services import build_start, component_create
from deployments.models import Deployment
from deployments.services import deployment_deploy
from environments.models import Project
from environments.services import config_set, project_create, project_delete
from tests.conftest import run_build_jobs, run_default_jobs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress")]

DESCRIPTOR = """\
schemaVersion: 1
type: service
endpoints:
  - name: web
    port: 8080
health:
  http: { path: /, port: 8080 }
  interval: 200ms
  startupTimeout: 2s
configurations:
  - name: DB_PASSWORD
    secret: true
    required: true
"""
# Careless: prints its secret, then never answers on its port.
DOCKERFILE = """\
FROM choreo/busybox:1
CMD ["sh", "-c", "echo connecting with DB_PASSWORD=$DB_PASSWORD; exec sleep 600"]
"""


def test_a_secret_in_a_deployments_error_is_never_stored_or_shown(make_repo, api, logged_in):
    marker = "pw-" + secrets.token_hex(12)
    repo = make_repo({".choreo/component.yaml": DESCRIPTOR, "Dockerfile": DOCKERFILE})
    project = project_create(name="shop")
    component = component_create(project=project, name="web", repository=str(repo.path))
    try:
        build_start(component=component)
        run_build_jobs()
        config_set(project=project, component="web", environment=None, key="DB_PASSWORD", value=marker, secret=True)
        deployment = deployment_deploy(component=component)
        run_default_jobs()
        deployment.refresh_from_db()
        assert deployment.status == Deployment.FAILED
        assert "its last output: connecting with DB_PASSWORD=***" in deployment.error
        assert marker not in deployment.error  # as stored

        shown = [
            api.get(f"/api/deployments/{deployment.pk}/").content.decode(),
            api.get("/api/projects/shop/components/web/deployments/").content.decode(),
            logged_in.get(f"/projects/shop/components/web/deployments/{deployment.pk}/").content.decode(),
            logged_in.get("/projects/shop/components/web/deploy/").content.decode(),
            logged_in.get(f"/admin/deployments/deployment/{deployment.pk}/change/").content.decode(),
        ]
        assert "DB_PASSWORD=***" in shown[0]
        for text in shown:
            assert marker not in text
    finally:
        for leftover in Project.objects.filter(name="shop"):
            project_delete(project=leftover)
