"""The Execute page in headless Chromium: the schedule in words, Run Now with arguments
and its live log, the 30-day count, Pause; and the same page without JavaScript."""

import os
import re

import pytest
from playwright.sync_api import expect

from deployments.models import Deployment
from deployments.services import deployment_deploy
from tasks.models import Execution, Schedule
from tests.builds.test_worker_crash import wait_for
from tests.deployments.test_deploy import env
from tests.test_browser import browser_type_launch_args, platform  # noqa: F401  (fixtures)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("registry_server", "base_images", "platform_ingress"),
    pytest.mark.browser,
]

TICKING = """\
echo "args: $*"
for i in $(seq "$1"); do echo "tick $i"; sleep 1; done
"""


def deployed_task(make_task):
    """Built and deployed by the platform's own worker (the `platform` fixture's)."""
    from builds.models import Build
    from builds.services import build_start

    component = make_task("schemaVersion: 1\ntype: scheduled-task\nschedule: '30 2 * * *'\ntimezone: Europe/Berlin\n", script=TICKING)
    built = build_start(component=component)
    wait_for(lambda: Build.objects.get(pk=built.pk).is_final, timeout=120, what="the build")
    built.refresh_from_db()
    assert built.status == Build.SUCCEEDED, built.error
    deployment = deployment_deploy(component=component, environment=env(component, "development"), build=built)
    wait_for(lambda: Deployment.objects.get(pk=deployment.pk).is_final, timeout=120, what="the deployment")
    deployment.refresh_from_db()
    assert deployment.status == Deployment.ACTIVE, deployment.error
    return component


def log_in(page, platform):  # noqa: F811
    page.goto(f"{platform}/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-password-for-tests")
    page.click("button[type=submit]")


def test_run_now_with_arguments_live_logs_and_pause(page, platform, admin_user, make_task):  # noqa: F811
    deployed_task(make_task)
    log_in(page, platform)
    page.goto(f"{platform}/projects/shop/components/job/execute/")
    expect(page.locator("#schedule-development")).to_have_text("At 02:30 every day, Europe/Berlin")
    expect(page.locator("#next-development time")).to_have_count(5)
    expect(page.locator("#count-development")).to_have_text("0")

    page.fill("#args-development", '6 "two words"')
    page.click("#run-development")
    expect(page).to_have_url(re.compile(r"/projects/shop/components/job/executions/\d+/$"))
    log = page.locator("#log")
    expect(log).to_contain_text("args: 6 two words", timeout=60_000)
    expect(log).to_contain_text("tick 2", timeout=60_000)
    assert "tick 6" not in log.inner_text()  # lines arrive while it runs
    expect(page.locator("#log-state")).to_have_text("Live")
    expect(log).to_contain_text("tick 6", timeout=60_000)
    expect(page.locator("#log-state")).to_have_text("Finished: succeeded", timeout=60_000)
    expect(page.locator("#stream-status")).to_have_text("succeeded", timeout=10_000)
    expect(page.locator("#exit-code")).to_have_text("0", timeout=10_000)
    page.screenshot(path=str(os.environ.get("SCREENSHOT_DIR", "/tmp")) + "/execution-detail.png", full_page=True)

    page.goto(f"{platform}/projects/shop/components/job/execute/")
    expect(page.locator("#count-development")).to_have_text("1")
    expect(page.locator("#env-development table.executions")).to_contain_text("manual")
    page.check("#pause-development")  # submits the form
    expect(page.locator("#pause-development")).to_be_checked()
    expect(page.locator("body")).to_contain_text("is paused")
    assert Schedule.objects.get(environment__name="development").paused
    expect(page.locator("#next-development time")).to_have_count(0)  # paused: nothing comes next
    page.uncheck("#pause-development")
    expect(page.locator("body")).to_contain_text("running again")
    assert not Schedule.objects.get(environment__name="development").paused


def test_the_page_works_without_javascript(browser, platform, admin_user, make_task):  # noqa: F811
    component = deployed_task(make_task)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in(page, platform)
    page.goto(f"{platform}/projects/shop/components/job/execute/")
    page.fill("#args-development", "2")
    page.click("#run-development")
    expect(page).to_have_url(re.compile(r"/executions/\d+/$"))
    execution = Execution.objects.get(component=component)
    expect(page.locator("#log-state")).to_contain_text("Reload for new output")
    for _ in range(60):  # reload until the worker has run it
        execution.refresh_from_db()
        if execution.is_final:
            break
        page.wait_for_timeout(500)
    page.reload()
    expect(page.locator("#log")).to_contain_text("tick 2")
    expect(page.locator("#log-state")).to_have_text("Finished: succeeded")
    page.goto(f"{platform}/projects/shop/components/job/execute/")
    page.fill("#args-development", "600")
    page.click("#run-development")
    # The click returns before the POST's redirect lands: wait for the new page, or the
    # reload below races that navigation ("Not attached to an active page").
    running = None
    for _ in range(60):
        running = Execution.objects.exclude(pk=execution.pk).first()
        if running:
            break
        page.wait_for_timeout(500)
    expect(page).to_have_url(re.compile(rf"/executions/{running.pk}/$"))
    for _ in range(60):
        running.refresh_from_db()
        if running.status == "running":
            break
        page.wait_for_timeout(500)
    page.reload()
    page.click("#cancel")
    expect(page.locator("body")).to_contain_text(f"Execution {running.pk} is being stopped")
    for _ in range(60):
        running.refresh_from_db()
        if running.is_final:
            break
        page.wait_for_timeout(500)
    assert running.status == "cancelled" and "Cancelled by a user" in running.error
    context.close()
