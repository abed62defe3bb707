"""End to end in headless Chromium (Debian's, driven by Playwright) against the real web
tier (HAProxy front, gunicorn's WSGI workers, the ASGI server for WebSockets) and a real RQ
worker process."""

import os
import re
import secrets
import signal

import pytest
from playwright.sync_api import expect

from builds.services import component_create
from environments.services import project_create
from tests.conftest import MANAGE, start_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("registry_server", "base_images"), pytest.mark.browser]

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop in this thread

# The run's own mark in the step: the Engine keeps every component's last image as its
# build cache (builds/dockerbuild.py cache_keep), and a step from the cache prints nothing.
CHATTY_DOCKERFILE = f"""\
FROM choreo/busybox:1
RUN echo "run {secrets.token_hex(8)}" && for i in 1 2 3 4 5 6 7 8; do echo "tick $i"; sleep 1; done
"""


@pytest.fixture(scope="session")
def browser_type_launch_args():
    return {
        "executable_path": "/usr/bin/chromium",
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    }


@pytest.fixture
def platform(web_tier, platform_env, tmp_path):
    """The web tier as `up` runs it, and one worker process for every queue."""
    worker = start_process([*MANAGE, "rqworker"], platform_env, tmp_path / "worker.log")
    try:
        yield web_tier
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except Exception:
            os.killpg(worker.pid, signal.SIGKILL)


def test_build_latest_shows_log_lines_live(page, platform, admin_user, make_repo):
    repo = make_repo({".choreo/component.yaml": "schemaVersion: 1\ntype: service\n", "Dockerfile": CHATTY_DOCKERFILE})
    component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))

    page.goto(f"{platform}/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-password-for-tests")
    page.click("button[type=submit]")
    page.goto(f"{platform}/projects/shop/components/web/build/")
    page.click("#build-latest")
    expect(page).to_have_url(re.compile(r"/projects/shop/components/web/builds/\d+/$"))

    log = page.locator("#log")
    expect(log).to_contain_text("tick 2", timeout=60_000)
    # Lines arrived while the build was still running, not after the fact.
    assert "tick 8" not in log.inner_text()
    expect(page.locator("#log-state")).to_have_text("Live")
    expect(page.locator("#stream-status")).to_have_text("running")  # the badge follows the run, not the page's first render
    expect(log).to_contain_text("tick 8", timeout=60_000)
    expect(page.locator("#log-state")).to_have_text("Finished: succeeded", timeout=60_000)
    expect(page.locator("#stream-status")).to_have_text("succeeded", timeout=10_000)
    page.screenshot(path=str(os.environ.get("SCREENSHOT_DIR", "/tmp")) + "/build-detail.png", full_page=True)

    page.goto(f"{platform}/projects/shop/components/web/build/")
    expect(page.locator("#build-rows")).to_contain_text("succeeded")


@pytest.mark.usefixtures("platform_ingress")
def test_deploy_promote_and_roll_back_from_the_deploy_page(page, platform, admin_user, make_repo, settings):
    import http.client
    import time

    from builds.models import Build
    from builds.services import build_start

    settings.ROLLOUT_STOP_GRACE = 1
    from tests.deployments.test_deploy import DESCRIPTOR, SERVING

    descriptor = DESCRIPTOR.replace("STARTUP", "20s").replace("replicas: 2", "replicas: 1")
    repo = make_repo({".choreo/component.yaml": descriptor, "Dockerfile": SERVING, "index.html": "v1\n"})
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    builds = [build_start(component=component)]
    repo.commit({"index.html": "v2\n"}, "second")
    builds.append(build_start(component=component))
    deadline = time.monotonic() + 120
    while Build.objects.filter(status=Build.SUCCEEDED).count() < 2:
        assert time.monotonic() < deadline, list(Build.objects.values_list("status", "error"))
        time.sleep(0.3)

    def served(environment: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", settings.INGRESS_PORT, timeout=5)
        conn.request("GET", "/", headers={"Host": f"web.{environment}.shop.localhost"})
        return conn.getresponse().read().decode().strip()

    def wait_active():
        from deployments.models import Deployment

        expect(page).to_have_url(re.compile(r"/deployments/\d+/$"))
        expect(page.locator("#log-state")).to_have_text(re.compile("Finished: "), timeout=60_000)
        assert page.locator("#log-state").inner_text() == "Finished: active", list(Deployment.objects.values_list("pk", "status", "error"))

    page.goto(f"{platform}/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-password-for-tests")
    page.click("button[type=submit]")
    deploy_page = f"{platform}/projects/shop/components/web/deploy/"

    page.goto(deploy_page)
    page.select_option("#setup-build", str(builds[0].pk))
    page.click("#deploy-button")
    wait_active()
    expect(page.locator("#log")).to_contain_text("is active")
    assert served("development") == "v1"

    page.goto(deploy_page)
    expect(page.locator("#env-development .no-rollback")).to_be_visible()  # nothing earlier to roll back to
    page.click("#env-development details.promote summary")  # Promote asks first, saying what changes
    expect(page.locator("#env-development details.promote .confirm-body")).to_contain_text("replaces nothing")
    page.click("#env-development .confirm-promote")
    wait_active()
    assert served("production") == "v1"

    page.goto(deploy_page)
    page.select_option("#setup-build", str(builds[1].pk))
    page.click("#deploy-button")
    wait_active()
    assert served("development") == "v2"

    page.goto(deploy_page)
    promote = page.locator("#env-development details.promote")
    promote.locator("summary").click()
    expect(promote.locator(".confirm-body")).to_contain_text(f"Promote build #{builds[1].pk} from development to production")
    rollback = page.locator("#env-development details.rollback")
    expect(rollback.locator("summary")).to_contain_text("Roll back to #")  # names its target
    rollback.locator("summary").click()
    first_commit = Build.objects.get(pk=builds[0].pk).commit[:12]
    expect(rollback.locator(".confirm-body")).to_contain_text(f"build #{builds[0].pk}, commit {first_commit}")
    rollback.locator(".confirm-rollback").click()
    wait_active()
    assert served("development") == "v1"

    # Rolling back again would bring v2 back: nothing is offered instead.
    page.goto(deploy_page)
    expect(page.locator("#env-development .no-rollback")).to_be_visible()
    expect(page.locator("#env-development details.rollback")).to_have_count(0)

    page.goto(deploy_page)
    expect(page.locator("#env-development .url")).to_have_text(f"http://web.development.shop.localhost:{settings.INGRESS_PORT}/")
    expect(page.locator("#env-development .health")).to_have_text("1/1 replicas up in the ingress")
    page.screenshot(path=str(os.environ.get("SCREENSHOT_DIR", "/tmp")) + "/deploy-page.png", full_page=True)
    from environments.models import Project
    from environments.services import project_delete

    project_delete(project=Project.objects.get(name="shop"))


@pytest.mark.usefixtures("platform_ingress")
def test_set_config_and_a_secret_on_the_deploy_page(page, platform, admin_user, make_repo, settings):
    import secrets
    import time

    from builds.models import Build
    from builds.services import build_start

    settings.ROLLOUT_STOP_GRACE = 1
    from tests.deployments.test_deploy import DESCRIPTOR, SERVING

    descriptor = DESCRIPTOR.replace("STARTUP", "20s").replace("replicas: 2", "replicas: 1")
    descriptor += "configurations:\n  - name: GREETING\n    required: true\n  - name: DB_PASSWORD\n    secret: true\n    required: true\n"
    repo = make_repo({".choreo/component.yaml": descriptor, "Dockerfile": SERVING, "index.html": "v1\n"})
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    build = build_start(component=component)
    deadline = time.monotonic() + 120
    while not Build.objects.filter(pk=build.pk, status=Build.SUCCEEDED).exists():
        assert time.monotonic() < deadline, list(Build.objects.values_list("status", "error"))
        time.sleep(0.3)

    page.goto(f"{platform}/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-password-for-tests")
    page.click("button[type=submit]")
    deploy_page = f"{platform}/projects/shop/components/web/deploy/"
    page.goto(deploy_page)
    expect(page.locator("#env-development .missing-config")).to_contain_text("GREETING")

    # Deploying without the required values is refused, naming each key.
    page.click("#deploy-button")
    expect(page.locator(".message.error").first).to_contain_text("GREETING")
    expect(page.locator(".message.error").first).to_contain_text("DB_PASSWORD")

    setup = page.locator("#setup .config-form")
    setup.locator(".config-key").fill("GREETING")
    setup.locator(".config-value").fill("hello")
    setup.locator(".config-save").click()
    expect(page.locator(".message.success")).to_contain_text("GREETING is set")
    marker = "pw-" + secrets.token_hex(12)
    setup = page.locator("#setup .config-form")
    setup.locator(".config-key").fill("DB_PASSWORD")
    setup.locator(".config-value").fill(marker)
    setup.locator(".config-secret").check()
    setup.locator(".config-save").click()
    expect(page.locator(".message.success")).to_contain_text("DB_PASSWORD is set (secret)")

    # The secret is listed, masked; its value is nowhere on the page.
    row = page.locator('#setup tr[data-key="DB_PASSWORD"]')
    expect(row).to_contain_text("secret")
    expect(page.locator('#setup tr[data-key="GREETING"]')).to_contain_text("hello")
    assert marker not in page.content()
    expect(page.locator("#env-development .missing-config")).to_have_count(0)

    page.click("#deploy-button")
    expect(page).to_have_url(re.compile(r"/deployments/\d+/$"))
    expect(page.locator("#log-state")).to_have_text("Finished: active", timeout=60_000)
    expect(page.locator("#log")).to_contain_text("Configuration: DB_PASSWORD (secret), GREETING")
    assert marker not in page.content()
    page.screenshot(path=str(os.environ.get("SCREENSHOT_DIR", "/tmp")) + "/deploy-config.png", full_page=True)
    from environments.models import Project
    from environments.services import project_delete

    project_delete(project=Project.objects.get(name="shop"))


@pytest.mark.usefixtures("platform_ingress")
def test_a_protected_promotion_is_requested_and_approved_from_the_deploy_page(browser, platform, make_repo, settings):
    """Issue 11: a developer's page offers "Request promotion"; an admin's shows the pending
    request with Approve and Reject; after approval, both show the new deployment."""
    import time

    from django.contrib.auth.models import User

    from builds.models import Build
    from builds.services import build_start
    from deployments import services
    from deployments.models import Deployment
    from environments.models import Environment, Membership
    from tests.deployments.test_deploy import DESCRIPTOR, SERVING

    settings.ROLLOUT_STOP_GRACE = 1
    descriptor = DESCRIPTOR.replace("STARTUP", "20s").replace("replicas: 2", "replicas: 1")
    repo = make_repo({".choreo/component.yaml": descriptor, "Dockerfile": SERVING, "index.html": "v1\n"})
    component = component_create(project=project_create(name="shop"), name="web", repository=str(repo.path))
    for name, role in (("dev", Membership.DEVELOPER), ("boss", Membership.ADMIN)):
        user = User.objects.create_user(name, password=f"{name}-password-123")
        Membership.objects.create(project=component.project, user=user, role=role)
    Environment.objects.filter(project=component.project, name="production").update(protected=True)
    build = build_start(component=component)
    deadline = time.monotonic() + 120
    while Build.objects.get(pk=build.pk).status != Build.SUCCEEDED:
        assert time.monotonic() < deadline, Build.objects.get(pk=build.pk).error
        time.sleep(0.3)
    dev_deployment = services.deployment_deploy(component=component, build=Build.objects.get(pk=build.pk))
    while Deployment.objects.get(pk=dev_deployment.pk).status != Deployment.ACTIVE:
        assert time.monotonic() < deadline, Deployment.objects.get(pk=dev_deployment.pk).error
        time.sleep(0.3)

    def logged_in(name: str):
        page = browser.new_context().new_page()
        page.goto(f"{platform}/login/")
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", f"{name}-password-123")
        page.click("button[type=submit]")
        page.goto(f"{platform}/projects/shop/components/web/deploy/")
        return page

    developer = logged_in("dev")
    expect(developer.locator("#env-production h2")).to_contain_text("protected")
    promote = developer.locator("#env-development details.promote")
    expect(promote.locator("summary")).to_have_text("Request promotion to production…")
    promote.locator("summary").click()
    expect(promote.locator(".confirm-promote")).to_have_text("Confirm: request promotion to production")
    promote.locator(".confirm-promote").click()
    expect(developer.locator(".messages")).to_contain_text("Requested: promote build")
    expect(developer.locator("#env-production .approval")).to_contain_text("asked by dev")
    expect(developer.locator("#env-production .approve")).to_have_count(0)  # not theirs to approve
    assert not Deployment.objects.filter(environment__name="production").exists()

    admin = logged_in("boss")
    expect(admin.locator("#env-production .approve")).to_have_text("Approve")
    expect(admin.locator("#env-production .reject")).to_have_text("Reject")
    admin.click("#env-production .approve")
    expect(admin.locator(".messages")).to_contain_text("approved")
    production = Deployment.objects.get(environment__name="production")
    while Deployment.objects.get(pk=production.pk).status != Deployment.ACTIVE:
        assert time.monotonic() < deadline + 60, Deployment.objects.get(pk=production.pk).error
        time.sleep(0.3)
    for page in (admin, developer):
        page.goto(f"{platform}/projects/shop/components/web/deploy/")
        expect(page.locator("#env-production dl.facts")).to_contain_text(f"deployment #{production.pk}")
        expect(page.locator("#env-production .approval")).to_have_count(0)
    from environments.models import Project
    from environments.services import project_delete

    project_delete(project=Project.objects.get(name="shop"))


def test_the_api_docs_page_loads_with_no_request_leaving_the_machine(page, platform, admin_user):
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{platform}/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-password-for-tests")
    page.click("button[type=submit]")
    page.click("text=API docs")
    expect(page.locator(".swagger-ui .information-container")).to_contain_text("build once, deploy many", ignore_case=True)
    expect(page.locator(".opblock-summary-path", has_text="/api/projects/{project}/components/{component}/deploy/")).to_be_visible()
    assert any(url.endswith("/api/schema/") for url in requested)
    elsewhere = [url for url in requested if not url.startswith(platform + "/") and not url.startswith("data:")]
    assert not elsewhere, elsewhere
