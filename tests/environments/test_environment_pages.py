"""Renaming, moving and deleting environments from the Environments page: the same rules
as the API (environments.services), with the refusal's reason shown on the page."""

import pytest

from choreo_site.models import AuditEvent
from environments.services import environment_create, project_create
from tests.conftest import messages_of

pytestmark = pytest.mark.django_db(transaction=True)


def order(project) -> list[str]:
    return list(project.environments.order_by("position").values_list("name", flat=True))


def test_rename_move_and_delete_from_the_page(logged_in):
    project = project_create(name="shop")
    environment_create(project=project, name="staging", after="development")
    base = "/projects/shop/environments"
    page = logged_in.get(f"{base}/").content.decode()
    assert 'id="rename-staging"' in page and 'id="delete-staging"' in page

    moved = logged_in.post(f"{base}/staging/update", {"after": ""}, follow=True)
    assert order(project) == ["staging", "development", "production"], messages_of(moved)
    renamed = logged_in.post(f"{base}/staging/update", {"name": "qa"}, follow=True)
    assert order(project) == ["qa", "development", "production"]
    assert "qa is saved, at position 1 of the promotion order." in messages_of(renamed)
    bad = logged_in.post(f"{base}/qa/update", {"name": "Q A"}, follow=True)
    assert order(project) == ["qa", "development", "production"]
    assert any("lower-case letters" in m for m in messages_of(bad)), messages_of(bad)
    nowhere = logged_in.post(f"{base}/qa/update", {"after": "nowhere"}, follow=True)
    assert any("no such other environment" in m for m in messages_of(nowhere)) and order(project)[0] == "qa"

    unconfirmed = logged_in.post(f"{base}/qa/delete", {"confirm": "q"}, follow=True)
    assert any("type its name in the box" in m for m in messages_of(unconfirmed)) and "qa" in order(project)
    deleted = logged_in.post(f"{base}/qa/delete", {"confirm": "qa"}, follow=True)
    assert order(project) == ["development", "production"] and "qa is deleted, with what ran there." in messages_of(deleted)
    assert set(AuditEvent.objects.filter(project_id=project.pk).values_list("action", flat=True)) >= {
        "environment.move",
        "environment.rename",
        "environment.delete",
    }
    logged_in.post(f"{base}/production/delete", {"confirm": "production"})
    last = logged_in.post(f"{base}/development/delete", {"confirm": "development"}, follow=True)
    assert order(project) == ["development"] and any("the last environment" in m for m in messages_of(last))
