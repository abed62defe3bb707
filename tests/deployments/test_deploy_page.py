"""The Deploy page: cards in promotion order, and every button calling the same service
as the API, with refusals shown on the page."""

import pytest

from builds.models import Build
from builds.services import component_create, component_update
from deployments.models import Deployment
from environments.services import project_create
from tests.conftest import messages_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def component(make_repo):
    repo = make_repo()
    return component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))


def test_deploy_page_shows_cards_in_order_and_explains_auto_deploy(logged_in, component):
    html = logged_in.get("/projects/shop/components/web/deploy/").content.decode()
    assert html.index('id="env-development"') < html.index('id="env-production"')
    assert "Needs Auto Build on Commit" in html
    assert 'id="deploy-button" disabled' in html  # no successful build yet


def test_refusals_show_their_reason(logged_in, component, django_capture_on_commit_callbacks):
    response = logged_in.post("/projects/shop/components/web/deploy/start", {"environment": "development"}, follow=True)
    assert any("no successful build" in m for m in messages_of(response))
    response = logged_in.post("/projects/shop/components/web/deploy/promote", {"from": "development", "to": "production"}, follow=True)
    assert any("Nothing is deployed in development" in m for m in messages_of(response))
    response = logged_in.post("/projects/shop/components/web/deploy/rollback", {"environment": "production"}, follow=True)
    assert any("Nothing is deployed in production" in m for m in messages_of(response))
    response = logged_in.post("/projects/shop/components/web/deploy/auto", {"enabled": "on"}, follow=True)
    assert any("needs Auto Build on Commit" in m for m in messages_of(response))
    failed = Build.objects.create(component=component, commit="0" * 40, status=Build.FAILED)
    response = logged_in.post("/projects/shop/components/web/deploy/start", {"build": failed.pk}, follow=True)
    assert any("only a succeeded build" in m for m in messages_of(response))
    assert not Deployment.objects.exists()


def test_auto_deploy_toggle_once_auto_build_is_on(logged_in, component):
    component_update(component=component, auto_build_on_commit=True)
    logged_in.post("/projects/shop/components/web/deploy/auto", {"enabled": "on"})
    component.refresh_from_db()
    assert component.auto_deploy_on_build
