"""The Deploy page says what will happen before it happens: configuration saved but not
deployed and a Redeploy for it, rollback and promotion buttons that name their target and
ask for a confirmation saying what changes, and a default rollback target that is never a
rolled-back version (SPEC). Rows only: the rollouts themselves are tested in test_deploy."""

import re

import pytest

from deployments import services
from deployments.models import Deployment
from environments.services import config_set, project_create
from tests.conftest import messages_of
from tests.deployments.test_pipeline_page import active

pytestmark = pytest.mark.django_db

PAGE = "/projects/shop/components/api/deploy/"


@pytest.fixture
def shop(make_repo):
    from builds.services import component_create

    project = project_create(name="shop")
    component = component_create(project=project, name="api", repository=str(make_repo().path))
    dev, prod = project.environments.get(name="development"), project.environments.get(name="production")
    config_set(project=project, component="api", environment=None, key="DB_URL", value="postgres://one")
    return component, dev, prod


def replaced_by(new: Deployment, old: Deployment) -> Deployment:
    """What a finished rollout leaves: `new` active, `old` superseded or rolled back."""
    old.status = Deployment.ROLLED_BACK if new.kind == Deployment.ROLLBACK else Deployment.SUPERSEDED
    old.save()
    new.status = Deployment.ACTIVE
    new.save()
    return new


def card(html: str, environment: str) -> str:
    return html.split(f'id="env-{environment}"')[1].split("</section>")[0]


def test_rollback_twice_goes_further_back_and_never_brings_the_rolled_back_version(shop):
    component, dev, _ = shop
    one = active(component, dev, 1, status=Deployment.SUPERSEDED)
    two = active(component, dev, 2, status=Deployment.SUPERSEDED)
    three = active(component, dev, 3)

    first = services.deployment_rollback(component=component, environment=dev)
    assert first.rollback_of_id == two.pk and first.release_id == two.release_id and first.config == two.config
    replaced_by(first, three)
    # Three is rolled back; two is what runs again. The next press goes to one.
    assert services.rollback_target(component=component, environment=dev, active=first) == one
    second = services.deployment_rollback(component=component, environment=dev)
    assert second.rollback_of_id == one.pk
    replaced_by(second, first)
    # Nothing older than one: two differs from one and was never rolled back, so it is the target.
    assert services.rollback_target(component=component, environment=dev, active=second) == two
    # Three was rolled back: reachable only when asked for by id.
    assert services.deployment_rollback(component=component, environment=dev, to=three.pk).rollback_of_id == three.pk


def test_no_rollback_is_offered_where_nothing_is_eligible(logged_in, shop):
    component, dev, prod = shop
    only = active(component, dev, 1)
    html = logged_in.get(PAGE).content.decode()
    assert "No rollback: no earlier deployment here differs from" in card(html, "development")
    assert "confirm-rollback" not in html
    # An earlier deployment identical to the active one (same image, same values) is no target either.
    same = active(component, prod, 1, status=Deployment.SUPERSEDED)
    now = active(component, prod, 1)
    now.release = same.release
    now.save()
    assert services.rollback_target(component=component, environment=prod, active=now) is None
    response = logged_in.post(PAGE + "rollback", {"environment": "production"}, follow=True)
    assert any("no earlier deployment in production to roll back to" in m for m in messages_of(response))
    assert Deployment.objects.count() == 3 and only.status == Deployment.ACTIVE


def test_rollback_names_its_target_and_says_what_changes(logged_in, shop):
    component, dev, prod = shop
    old = active(component, dev, 1, status=Deployment.SUPERSEDED)
    config_set(project=component.project, component="api", environment=dev, key="FEATURE", value="on")
    now = active(component, dev, 2)
    html = card(logged_in.get(PAGE).content.decode(), "development")
    assert f"Roll back to #{old.pk}…" in html
    confirmation = html.split('class="confirm rollback"')[1].split("</details>")[0]
    named = f"deployment #{old.pk}</strong>: build #{old.release.build_id}, commit <code>{old.release.build.commit[:12]}</code>, deployed"
    assert named in confirmation
    assert re.search(r"Image: <code class=\"digest\">sha256:0{12}…</code> replaces <code>sha256:0{12}…</code>", confirmation)
    assert "removed <code>FEATURE</code>" in confirmation
    assert f'name="to" value="{old.pk}"' in confirmation and f"Confirm: roll back to #{old.pk}" in confirmation
    # Each earlier row of the history offers "Roll back to this"; the active one does not.
    rows = {m[0]: m[1] for m in re.findall(r'<tr data-deployment="(\d+)">(.*?)</tr>', html, re.S)}
    assert "Roll back to this" in rows[str(old.pk)] and "Roll back to this" not in rows[str(now.pk)]

    # A rollback to a deployment of another environment is refused, naming both.
    elsewhere = active(component, prod, 5, status=Deployment.SUPERSEDED)
    response = logged_in.post(PAGE + "rollback", {"environment": "development", "to": elsewhere.pk}, follow=True)
    assert any(f"Deployment {elsewhere.pk} is not an earlier deployment of api in development" in m for m in messages_of(response))
    assert not Deployment.objects.filter(kind=Deployment.ROLLBACK).exists()


def test_saved_configuration_is_marked_and_redeploy_applies_it(logged_in, shop, django_capture_on_commit_callbacks):
    component, dev, prod = shop
    in_dev = active(component, dev, 1)
    in_prod = active(component, prod, 1)
    html = logged_in.get(PAGE).content.decode()
    assert "running as saved" in card(html, "development") and "running as saved" in card(html, "production")
    assert "Redeploy in this card." in card(html, "development") and "promote to development" not in html

    config_set(project=component.project, component="api", environment=None, key="DB_URL", value="postgres://two")
    config_set(project=component.project, component="api", environment=prod, key="WORKERS", value="4")
    html = logged_in.get(PAGE).content.decode()
    # Development takes the environment-independent change with a redeploy; production gets it by promotion only.
    assert "1 change not deployed</span> <code>DB_URL</code>" in card(html, "development")
    assert "1 change not deployed</span> <code>WORKERS</code>" in card(html, "production")
    assert "Redeploy with 1 change…" in card(html, "production")

    with django_capture_on_commit_callbacks():
        response = logged_in.post(PAGE + "start", {"environment": "production"}, follow=True)
    assert any("to production started" in m for m in messages_of(response))
    redeployed = Deployment.objects.exclude(pk__in=(in_dev.pk, in_prod.pk)).get()
    assert redeployed.environment == prod and redeployed.release_id == in_prod.release_id  # the promoted release as it is
    assert "WORKERS" in redeployed.config and redeployed.config != in_prod.config

    with django_capture_on_commit_callbacks():
        logged_in.post(PAGE + "start", {"environment": "development"})
    again = Deployment.objects.filter(environment=dev).exclude(pk=in_dev.pk).get()
    assert again.release.build_id == in_dev.release.build_id and again.release_id != in_dev.release_id
    assert again.release.digest == in_dev.release.digest and again.release.config["DB_URL"] != in_dev.release.config["DB_URL"]


def test_promote_asks_for_a_confirmation_that_says_what_changes(logged_in, shop):
    component, dev, prod = shop
    active(component, dev, 2)
    active(component, prod, 1)
    html = card(logged_in.get(PAGE).content.decode(), "development")
    confirmation = html.split('class="confirm promote"')[1].split("</details>")[0]
    assert "Promote to production…" in confirmation and "Confirm: promote to production" in confirmation
    assert re.search(r"Image: <code class=\"digest\">sha256:0{12}…</code> replaces <code>sha256:0{12}…</code>", confirmation)
    assert "Configuration: unchanged" in confirmation
