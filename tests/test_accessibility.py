"""Every page, in Debian's Chromium against the real web tier: no serious or critical axe-core
violation, nothing wider than a 390 px phone, and screenshots of the pipeline and Deploy
pages at 1280 and 390 px kept as artifacts (SCREENSHOT_DIR)."""

import os
from pathlib import Path

import pytest

from builds.models import Build
from builds.services import component_create
from deployments.models import Deployment
from environments.services import config_set, project_create
from tests.deployments.test_pipeline_page import active
from tests.test_browser import browser_type_launch_args  # noqa: F401  Debian's Chromium

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop in this thread

AXE = Path(os.environ.get("AXE_DIR", "/var/cache/choreo-test/axe")) / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", "/tmp/choreo-test-artifacts/screenshots"))


@pytest.fixture
def shop(make_repo, admin_user):
    """A project with something on every page: components with deployments in both
    environments, configuration saved but not deployed, a failed build and history."""
    project = project_create(name="shop")
    dev, prod = project.environments.get(name="development"), project.environments.get(name="production")
    repo = str(make_repo().path)
    for n, name in enumerate(("api", "worker", "frontend")):
        component = component_create(project=project, name=name, repository=repo)
        config_set(project=project, component=name, environment=None, key="DB_URL", value=f"postgres://db/{name}")
        active(component, dev, 10 * n + 1, status=Deployment.SUPERSEDED)
        active(component, dev, 10 * n + 2)
        active(component, prod, 10 * n + 1)
    config_set(project=project, component="api", environment=prod, key="WORKERS", value="4")  # not deployed yet
    api = project.components.get(name="api")
    Build.objects.create(component=api, commit="f" * 40, status=Build.FAILED, error="step 3: RUN make: exit code 2")
    return project


def pages(project) -> list[str]:
    api = project.components.get(name="api")
    build = api.builds.first()
    deployment = api.deployments.first()
    return [
        "/",
        "/projects/shop/",
        "/projects/shop/components/api/build/",
        f"/projects/shop/components/api/builds/{build.pk}/",
        "/projects/shop/components/api/deploy/",
        f"/projects/shop/components/api/deployments/{deployment.pk}/",
        "/projects/shop/components/api/execute/",
        "/projects/shop/components/api/logs/",
        "/projects/shop/environments/",
        "/projects/shop/members/",
        "/projects/shop/audit/",
        "/profile/",
        "/projects/nothing-here/",  # the 404 page
    ]


def log_in(page, base: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-password-for-tests")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def serious_violations(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert result["testEngine"]["name"] == "axe-core" and result["passes"], "axe did not run"
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:3]]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_every_page_passes_axe_and_fits_a_phone(browser, web_tier, shop):
    assert AXE.exists(), f"{AXE} is missing: scripts/install.sh test installs it"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    found, too_wide = {}, {}
    for width, height in ((1280, 900), (390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.goto(f"{web_tier}/login/")
        if width == 1280 and (problems := serious_violations(page)):
            found["/login/"] = problems
        log_in(page, web_tier)
        for path in pages(shop):
            page.goto(f"{web_tier}{path}")
            if width == 1280 and (problems := serious_violations(page)):
                found[path] = problems
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            if scroll_width > width:
                too_wide[f"{path} at {width}px"] = scroll_width
        for name, path in (("pipeline", "/projects/shop/"), ("deploy", "/projects/shop/components/api/deploy/")):
            page.goto(f"{web_tier}{path}")
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
        context.close()
    print(f"screenshots in {SCREENSHOTS}")
    assert not found, "\n".join(f"{path}: {problem}" for path, problems in found.items() for problem in problems)
    assert not too_wide, too_wide
    for name in ("pipeline", "deploy"):
        for width in (1280, 390):
            assert (SCREENSHOTS / f"{name}-{width}.png").stat().st_size > 10_000
