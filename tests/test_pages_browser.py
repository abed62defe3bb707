"""Issue 14's eleven findings, each seen again in Debian's Chromium against the real web tier
(and, where something must run, a real worker, registry, ingress and containers):

1. the pipeline grid says what runs where, and promotes after a confirmation;
2. runtime logs on a page, live;
3. configuration saved but not deployed is marked, and Redeploy applies it;
4. rollback names its target, confirms, and never brings a rolled-back version back
   (tests/test_browser.py, test_deploy_promote_and_roll_back_from_the_deploy_page);
5. a component's path is checked at creation; components can be deleted;
6. forms keep what was typed and show each field's rule;
7. a finished deployment's log renders without JavaScript, with a raw link (the badge that
   follows a build: tests/test_browser.py, test_build_latest_shows_log_lines_live);
8. the build list says when, who, how long, where it runs; "Deploy this build";
9. one time format: relative, the ISO time on hover;
10. Build Latest on a commit that is already building returns that build;
11. error pages in the site's layout (the 390 px width: tests/test_accessibility.py).
"""

import os
import re

import pytest
from playwright.sync_api import expect

from builds.models import Build, Component
from deployments.models import Deployment
from environments.names import NAME_HELP
from tests.test_accessibility import log_in, shop  # noqa: F401  the rows-only project
from tests.test_browser import browser_type_launch_args, platform  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images"), pytest.mark.browser]

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop in this thread

TICKING = """\
FROM choreo/busybox:1
COPY index.html /www/index.html
CMD ["sh", "-c", "httpd -p 8080 -h /www && i=0 && while true; do echo \\"tick $i greeting=$GREETING\\"; i=$((i+1)); sleep 0.4; done"]
"""


def test_pipeline_forms_component_checks_deletion_and_error_pages(page, web_tier, shop, make_repo):  # noqa: F811
    log_in(page, web_tier)
    # 1. What runs where, at a glance: three components in two environments fit one screen.
    page.goto(f"{web_tier}/projects/shop/")
    expect(page.locator("#cell-api-development")).to_contain_text("#")
    expect(page.locator("#cell-api-production")).to_contain_text("1 change not deployed")
    assert page.evaluate("document.documentElement.scrollHeight") < 1600
    promote = page.locator("#promote-api-production")
    promote.locator("summary").click()
    expect(promote.locator(".confirm-body")).to_contain_text("Promote api from development to production: a new image")
    promote.locator(".confirm-promote").click()
    expect(page.locator(".message.success")).to_contain_text("Promotion to production started")
    assert Deployment.objects.filter(environment__name="production", status=Deployment.PENDING).count() == 1

    # 6. The rule is there before anything is typed; the browser refuses a space, naming it.
    page.goto(f"{web_tier}/")
    expect(page.locator("#project-name-rule")).to_contain_text(NAME_HELP.capitalize())
    page.fill("#project-name", "my shop")
    assert page.locator("#project-name").evaluate("e => !e.checkValidity() && e.title") == NAME_HELP

    # 5 and 6. A path that is not there is refused at creation; what was typed stays.
    repo = make_repo()
    page.goto(f"{web_tier}/projects/shop/")
    page.fill("#component-name", "payments")
    page.fill("#component-repository", str(repo.path))
    page.fill("#component-path", "services/payments")
    page.click("form.grid button[type=submit]")
    expect(page.locator(".message.error")).to_contain_text("path 'services/payments' does not exist at commit")
    expect(page.locator("#component-name")).to_have_value("payments")
    expect(page.locator("#component-repository")).to_have_value(str(repo.path))
    expect(page.locator("label[for=component-path] .field-error")).to_contain_text("Not in the repository")
    assert not Component.objects.filter(name="payments").exists()

    # 5. Deleting a component names what stops, and wants its name typed.
    page.goto(f"{web_tier}/projects/shop/components/worker/build/")
    page.click("#delete-component summary")
    expect(page.locator("#delete-component .effects")).to_contain_text("in development (0 replica(s))")
    page.fill("#confirm-delete", "wroker")
    page.click("#delete-button")
    expect(page.locator(".message.error")).to_contain_text("Type the component's name, worker, to delete it")
    page.click("#delete-component summary")
    page.fill("#confirm-delete", "worker")
    page.click("#delete-button")
    expect(page).to_have_url(f"{web_tier}/projects/shop/")
    expect(page.locator(".message.success")).to_contain_text("Component worker is deleted")
    expect(page.locator("#row-worker")).to_have_count(0)

    # 11. A page that does not exist is in the site's layout, with its navigation.
    response = page.goto(f"{web_tier}/projects/shop/components/nothing/deploy/")
    assert response.status == 404
    expect(page.locator("header.top a.brand")).to_be_visible()
    expect(page.locator("main")).to_contain_text("does not exist")


@pytest.mark.usefixtures("platform_ingress")
def test_build_deploy_live_runtime_logs_and_redeploy(page, browser, platform, admin_user, make_repo, settings):  # noqa: F811
    from builds.services import component_create
    from environments.services import project_create
    from tests.deployments.test_deploy import DESCRIPTOR

    settings.ROLLOUT_STOP_GRACE = 1
    descriptor = DESCRIPTOR.replace("STARTUP", "20s").replace("replicas: 2", "replicas: 1")
    repo = make_repo({".choreo/component.yaml": descriptor, "Dockerfile": TICKING, "index.html": "v1\n"})
    component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    base = f"{platform}/projects/shop/components/web"
    log_in(page, platform)

    # 10. Build Latest twice: the second press finds the first build.
    page.goto(f"{base}/build/")
    page.click("#build-latest")
    expect(page).to_have_url(re.compile(r"/builds/\d+/$"))
    first = page.url
    page.goto(f"{base}/build/")
    page.click("#build-latest")
    if Build.objects.get().status in (Build.QUEUED, Build.RUNNING):
        expect(page.locator(".message")).to_contain_text("is already being built")
    assert page.url == first and Build.objects.count() == 1
    expect(page.locator("#log-state")).to_have_text("Finished: succeeded", timeout=90_000)

    # 8 and 9. The build list: when (relative, ISO on hover), who, how long, where it runs.
    page.goto(f"{base}/build/")
    row = page.locator("#build-rows tr").first
    expect(row).to_contain_text("Test")  # the commit's author
    expect(row).to_contain_text(re.compile(r"\d+\.\d s"))
    expect(row.locator("time")).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"))
    expect(row.locator("time")).to_contain_text("ago")

    # 8. "Deploy this build" from the build's page.
    page.goto(first)
    page.click("#deploy-this-build")
    expect(page).to_have_url(re.compile(r"/deployments/\d+/$"))
    expect(page.locator("#log-state")).to_have_text("Finished: active", timeout=60_000)
    deployment = page.url

    # 7. Without JavaScript, the finished rollout's log is on the page, with a raw link.
    bare = browser.new_context(java_script_enabled=False)
    plain = bare.new_page()
    log_in(plain, platform)
    plain.goto(deployment)
    expect(plain.locator("#log")).to_contain_text("is active")
    expect(plain.locator("#log-state")).to_have_text("Finished: active")
    raw = plain.locator("a", has_text="Raw log").get_attribute("href")
    assert "is active" in plain.request.get(f"{platform}{raw}").text()
    bare.close()

    # 2. Runtime logs, live: new lines arrive without a reload.
    page.goto(f"{base}/logs/?since=5m")
    log = page.locator("#runtime-log")
    expect(log).to_contain_text("tick 1")
    newest = max(int(n) for n in re.findall(r"tick (\d+)", log.inner_text()))
    expect(log).to_contain_text(f"tick {newest + 3} greeting=", timeout=15_000)
    expect(page.locator("#runtime-log-state")).to_have_text("Live")

    # 3. A value saved in development is marked as not deployed until a Redeploy applies it.
    page.goto(f"{base}/deploy/")
    card = page.locator("#env-development")
    expect(card.locator(".config-state")).to_contain_text("running as saved")
    expect(card).not_to_contain_text("promote to development")
    form = card.locator(".config-form")
    form.locator(".config-key").fill("GREETING")
    form.locator(".config-value").fill("hello-from-redeploy")
    form.locator(".config-save").click()
    card = page.locator("#env-development")
    expect(card.locator(".not-deployed")).to_have_text("1 change not deployed")
    redeploy = card.locator("details.redeploy")
    redeploy.locator("summary").click()
    expect(redeploy.locator(".confirm-body")).to_contain_text("GREETING")
    redeploy.locator(".confirm-redeploy").click()
    expect(page.locator("#log-state")).to_have_text("Finished: active", timeout=60_000)
    page.goto(f"{base}/deploy/")
    expect(page.locator("#env-development .config-state")).to_contain_text("running as saved")
    page.goto(f"{base}/logs/?since=5m")
    expect(page.locator("#runtime-log")).to_contain_text("greeting=hello-from-redeploy", timeout=15_000)

    from environments.models import Project
    from environments.services import project_delete

    project_delete(project=Project.objects.get(name="shop"))
