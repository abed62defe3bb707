"""The project's pipeline page: what runs where, configuration saved but not deployed,
what promoting would change or miss, failures and pending requests; in a number of
queries that does not grow with the number of components."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from builds.models import Build, Image
from builds.services import component_create
from deployments.models import Deployment, Release
from environments.models import ApprovalRequest
from environments.services import config_set, config_snapshot, project_create

pytestmark = pytest.mark.django_db(transaction=True)
DESCRIPTOR = {
    "schemaVersion": 1,
    "type": "service",
    "endpoints": [],
    "configurations": [{"name": "DB_URL", "type": "string", "required": True, "secret": False, "default": None, "mountPath": None}],
}


def active(component, environment, n: int, *, status=Deployment.ACTIVE) -> Deployment:
    """A deployment of build n (rows only), with the configuration current now."""
    digest = f"sha256:{n:064d}"
    image = Image.objects.get_or_create(
        component=component, digest=digest, defaults={"commit": f"{n:040d}", "reference": f"r@{digest}", "inputs_key": str(n)}
    )[0]
    build = Build.objects.create(
        component=component,
        commit=f"{n:040d}",
        status=Build.SUCCEEDED,
        image=image,
        digest=digest,
        image_reference=image.reference,
        descriptor=DESCRIPTOR,
    )
    independent = config_snapshot(project=component.project, component=component.name)
    release = Release.objects.create(
        component=component,
        build=build,
        image=image,
        digest=digest,
        image_reference=image.reference,
        descriptor=DESCRIPTOR,
        config=independent,
        config_hash=f"{n}-{component.pk}",
    )
    config = config_snapshot(project=component.project, component=component.name, environment=environment)
    return Deployment.objects.create(
        component=component, environment=environment, release=release, config=config, status=status, finished_at=timezone.now()
    )


@pytest.fixture
def shop(make_repo):
    project = project_create(name="shop")
    repo = str(make_repo().path)
    return project, repo, project.environments.get(name="development"), project.environments.get(name="production")


def test_cells_say_what_runs_what_is_not_deployed_and_what_promoting_would_change(logged_in, shop):
    project, repo, dev, prod = shop
    api = component_create(project=project, name="api", repository=repo)
    config_set(project=project, component="api", environment=dev, key="DB_URL", value="postgres://dev")
    first = active(api, dev, 1)
    active(api, prod, 0, status=Deployment.FAILED)  # a failure in production, nothing active there
    config_set(project=project, component="api", environment=dev, key="DB_URL", value="postgres://dev-2")  # saved, not deployed
    worker = component_create(project=project, name="worker", repository=repo)
    config_set(project=project, component="worker", environment=dev, key="DB_URL", value="x")
    config_set(project=project, component="worker", environment=prod, key="DB_URL", value="y")
    active(worker, dev, 2)
    active(worker, prod, 2)
    dora = User.objects.create(username="dora")
    ApprovalRequest.objects.create(
        project=project,
        environment=prod,
        component="worker",
        kind="deploy",
        summary="deploy",
        payload={},
        requested_by=dora,
        expires_at=timezone.now() + timedelta(hours=1),
    )

    page = logged_in.get("/projects/shop/").content.decode()
    api_dev = page.split('id="cell-api-development"')[1].split("</td>")[0]
    assert f"#{first.pk}" in api_dev and "00000001" in api_dev and "1 change not deployed" in api_dev and 'title="DB_URL"' in api_dev
    api_prod = page.split('id="cell-api-production"')[1].split("</td>")[0]
    assert "not deployed" in api_prod and "failed" in api_prod
    assert 'id="promote-api-production"' not in page and "production lacks DB_URL" in page  # production has no DB_URL
    worker_prod = page.split('id="cell-worker-production"')[1].split("</td>")[0]
    assert "1 request waiting for approval" in worker_prod
    # The worker's production differs by its own DB_URL only, which promotion keeps: nothing to promote.
    row = page.split('id="row-worker"')[1].split("</tr>")[0]
    assert "same image and configuration" in row and 'id="promote-worker-production"' not in row
    # The Build page says where each build runs now.
    rows = logged_in.get("/projects/shop/components/api/build/rows").content.decode()
    assert rows.count("<td>development</td>") == 1 and "<td>production</td>" not in rows


def test_promote_is_offered_with_a_confirmation_and_the_queries_do_not_grow(logged_in, shop):
    project, repo, dev, prod = shop

    def add(n: int):
        component = component_create(project=project, name=f"svc{n}", repository=repo)
        config_set(project=project, component=component.name, environment=None, key="DB_URL", value=f"db{n}")
        active(component, dev, 100 + n)
        active(component, prod, 200 + n)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert logged_in.get("/projects/shop/").status_code == 200
        return len(captured)

    for n in range(3):
        add(n)
    few = queries()
    page = logged_in.get("/projects/shop/").content.decode()
    assert 'id="promote-svc0-production"' in page and "Promote svc0 from development to <strong>production</strong>: a new image" in page
    for n in range(3, 12):
        add(n)
    assert queries() == few, "the pipeline page's queries grow with its components"
