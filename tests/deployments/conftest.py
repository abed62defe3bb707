import pytest


@pytest.fixture(autouse=True)
def quick_stops(settings):
    settings.ROLLOUT_STOP_GRACE = 1  # busybox httpd as PID 1 ignores SIGTERM


@pytest.fixture
def component(make_repo):
    """shop/web: a static site that answers its version (test_deploy's DESCRIPTOR and
    SERVING), removed with whatever it runs when the test ends."""
    from builds.services import component_create
    from environments.models import Project
    from environments.services import project_create, project_delete
    from tests.deployments.test_deploy import DESCRIPTOR, SERVING

    repo = make_repo({".choreo/component.yaml": DESCRIPTOR.replace("STARTUP", "20s"), "Dockerfile": SERVING, "index.html": "v1\n"})
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    component.repo = repo
    yield component
    for leftover in Project.objects.filter(name="shop"):  # stop what the test left running
        project_delete(project=leftover)
