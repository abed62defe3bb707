"""404, 403 and 500 pages in the site's layout, with its navigation."""

import pytest
from django.template.loader import render_to_string

from environments.services import project_create


@pytest.mark.django_db
def test_a_missing_page_or_project_is_a_404_in_the_site_layout(logged_in):
    project_create(name="shop")
    missing = (("/nowhere/", "There is nothing at this address."), ("/projects/absent/", "Project &#x27;absent&#x27; does not exist."))
    for url, says in missing:
        response = logged_in.get(url)
        page = response.content.decode()
        assert response.status_code == 404 and says in page, page[:500]
        assert 'class="top"' in page and "Your projects" in page and "Log out" in page


def test_the_403_and_500_pages_render_without_a_request():
    forbidden = render_to_string("403.html", {"exception": "Your role in project 'shop' (viewer) may not deploy there."})
    assert "may not deploy there" in forbidden and 'class="top"' in forbidden
    assert "could not answer this request" in render_to_string("500.html")
