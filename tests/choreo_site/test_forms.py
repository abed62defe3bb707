"""Forms keep what was typed after a refusal (never a credential), show the refusal next to
the field at fault, and show each field's rule before anything is typed."""

import html
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builds.models import Component
from choreo_site.pages import NAME_PATTERN
from environments.names import NAME_HELP, NAME_RE
from environments.services import project_create
from tests.conftest import messages_of

pytestmark = pytest.mark.django_db


def field(page: str, name: str) -> str:
    return re.search(rf'<input id="{name}"[^>]*>', page).group(0)


def test_a_refused_project_name_is_kept_with_its_rule(logged_in):
    page = logged_in.get("/").content.decode()
    assert html.escape(NAME_HELP).capitalize() in page and f'pattern="{NAME_PATTERN}"' in page
    response = logged_in.post("/projects/new", {"name": "my shop"}, follow=True)
    page = response.content.decode()
    assert any("is not a valid name" in m for m in messages_of(response))
    assert 'value="my shop"' in field(page, "project-name")
    assert 'class="field-error"' in page
    # Kept once: the next visit starts empty.
    assert 'value=""' in field(logged_in.get("/").content.decode(), "project-name")


def test_a_refused_component_keeps_its_fields_and_names_the_missing_path(logged_in, make_repo):
    project_create(name="shop")
    repo = make_repo()
    typed = {"name": "api", "repository": str(repo.path), "branch": "main", "path": "services/api"}
    response = logged_in.post("/projects/shop/components/new", typed, follow=True)
    page = response.content.decode()
    assert any("path 'services/api' does not exist at commit" in m for m in messages_of(response))
    assert 'value="api"' in field(page, "component-name") and f'value="{repo.path}"' in field(page, "component-repository")
    assert 'value="services/api"' in field(page, "component-path")
    assert "Not in the repository at" in page.split('id="component-path"')[1].split("</label>")[0]
    assert not Component.objects.exists()


def test_a_bad_descriptor_at_the_branch_head_is_refused_with_its_own_message(logged_in, make_repo):
    project_create(name="shop")
    repo = make_repo({".choreo/component.yaml": "schemaVersion: 1\ntype: servcie\n", "Dockerfile": "FROM scratch\n"})
    response = logged_in.post("/projects/shop/components/new", {"name": "api", "repository": str(repo.path)}, follow=True)
    refusal = " ".join(messages_of(response))
    assert ".choreo/component.yaml: type:" in refusal and "servcie" in refusal
    assert not Component.objects.exists()
    repo.commit({".choreo/component.yaml": None})
    response = logged_in.post("/projects/shop/components/new", {"name": "api", "repository": str(repo.path)}, follow=True)
    assert any(".choreo/component.yaml: not found at commit" in m for m in messages_of(response))


def test_a_credential_typed_in_the_repository_is_never_kept(logged_in, client):
    project_create(name="shop")
    response = logged_in.post(
        "/projects/shop/components/new",
        {"name": "api", "repository": "https://bob:hunter2-token@127.0.0.1:9/nothing.git", "branch": "main"},
        follow=True,
    )
    page = response.content.decode()
    assert "hunter2-token" not in page and "hunter2-token" not in str(logged_in.session.items())
    assert "https://***@127.0.0.1:9/nothing.git" in field(page, "component-repository")


@given(st.text(alphabet="abz09-_ A", max_size=45))
def test_the_browser_pattern_accepts_exactly_the_names_the_platform_does(name):
    assert bool(re.fullmatch(NAME_PATTERN, name)) == bool(NAME_RE.match(name)), name


def test_a_refused_configuration_key_is_kept_but_never_its_value(logged_in, make_repo):
    from builds.services import component_create

    component_create(project=project_create(name="shop"), name="api", repository=str(make_repo().path))
    response = logged_in.post(
        "/projects/shop/components/api/deploy/config", {"environment": "production", "key": "BAD KEY", "value": "s3cr3t-typed"}, follow=True
    )
    page = response.content.decode()
    assert any("BAD KEY" in m for m in messages_of(response))
    production = page.split('id="env-production"')[1]
    assert 'value="BAD KEY"' in production and 'class="field-error"' in production
    assert "s3cr3t-typed" not in page and "s3cr3t-typed" not in str(logged_in.session.items())
    assert 'value="BAD KEY"' not in page.split('id="env-production"')[0]  # only in the card it was typed in


def test_a_refused_member_keeps_the_name_and_role(logged_in):
    project_create(name="shop")
    response = logged_in.post("/projects/shop/members/set", {"username": "nobody-here", "role": "admin"}, follow=True)
    page = response.content.decode()
    assert any("nobody-here" in m for m in messages_of(response))
    assert 'value="nobody-here"' in field(page, "member-username")
    assert '<option value="admin" selected>' in page
