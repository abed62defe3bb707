from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from builds import git, services, webhooks
from builds.models import PushEvent
from builds.services import component_by_names
from choreo_site.errors import PlatformError
from choreo_site.logstream import page_log
from choreo_site.pages import page_action
from choreo_site.throttling import client_address
from environments import permissions
from environments.permissions import authorized
from environments.services import project_get


def _component(request, project: str, component: str):
    return component_by_names(project=project, component=component, actor=request.user)


@login_required
@require_POST
def component_create(request, project):
    project_obj = project_get(name=project, actor=request.user)
    repository_typed = git.redact_url(request.POST.get("repository", "").strip())  # kept after a refusal: never a credential
    component = page_action(
        request,
        lambda: services.component_create(
            project=authorized(project_obj, actor=request.user, action=permissions.MANAGE),
            name=request.POST.get("name", "").strip(),
            repository=request.POST.get("repository", "").strip(),
            branch=request.POST.get("branch", "").strip() or "main",
            path=request.POST.get("path", "").strip() or ".",
        ),
        success="Component created.",
        keep=("component", {**{f: request.POST.get(f, "") for f in ("name", "branch", "path")}, "repository": repository_typed}),
    )
    return redirect("build-page", project, component.name) if component else redirect("project", project)


@login_required
def build_page(request, project, component):
    component = _component(request, project, component)
    commits, commits_error = [], ""
    try:
        commits = git.recent_commits(git.sync(component.fetch_url, timeout=30), branch=component.branch)
    except git.GitError as exc:
        commits_error = exc.detail
    builds = services.build_list(component=component)
    context = {
        "project": component.project,
        "component": component,
        "builds": builds,
        "commits": commits,
        "commits_error": commits_error,
        "events": component.push_events.select_related("build")[:20],
        "poll_interval": settings.POLL_INTERVAL,
        "webhook_url": request.build_absolute_uri(reverse("webhook", args=[component.project.name, component.name])),
        "can": permissions.abilities(request.user, component.project),
    }
    if context["can"]["manage"]:
        context["delete_effects"] = services.component_delete_effects(component=component)
    return render(request, "builds/build_page.html", context)


@login_required
@require_POST
def component_delete(request, project, component):
    """Delete a component, once its name is typed again: everything it runs stops."""
    component_obj = _component(request, project, component)

    def action():
        authorized(component_obj, actor=request.user, action=permissions.MANAGE)
        if request.POST.get("confirm", "").strip() != component_obj.name:
            raise PlatformError(f"Type the component's name, {component_obj.name}, to delete it.", errors={"confirm": ["Does not match."]})
        services.component_delete(component=component_obj)
        return True

    deleted = page_action(request, action, success=f"Component {component} is deleted: what it ran is stopped, its images are removed.")
    return redirect("project", project) if deleted else redirect("build-page", project, component)


@login_required
@require_POST
def build_start(request, project, component):
    component = _component(request, project, component)
    result = page_action(
        request,
        lambda: services.build_request(
            component=authorized(component, actor=request.user, action=permissions.BUILD), commit=request.POST.get("commit") or None
        ),
        success=lambda made: (
            f"Build {made[0].pk} of {made[0].commit[:12]} queued."
            if made[1]
            else f"{made[0].commit[:12]} is already being built: build {made[0].pk} ({made[0].status})."
        ),
    )
    if result is None:
        return redirect("build-page", project, component.name)
    return redirect("build-detail", project, component.name, result[0].pk)


@login_required
@require_POST
def auto_build_toggle(request, project, component):
    component = _component(request, project, component)
    enabled = request.POST.get("enabled") == "on"
    page_action(
        request,
        lambda: services.component_update(
            component=authorized(component, actor=request.user, action=permissions.CONFIGURE), auto_build_on_commit=enabled
        ),
        success=f"Auto Build on Commit is {'on' if enabled else 'off'}.",
    )
    return redirect("build-page", project, component.name)


@login_required
def build_detail(request, project, component, build_id):
    component = _component(request, project, component)
    build = get_object_or_404(component.builds, pk=build_id)
    return render(
        request,
        "builds/build_detail.html",
        {
            "project": component.project,
            "component": component,
            "build": build,
            "log": page_log(build.log_stream),
            "first_environment": component.project.environments.order_by("position").first(),
            "api_specs": build.api_specs.all(),
            "can": permissions.abilities(request.user, component.project),
        },
    )


@login_required
@require_POST
def build_cancel(request, project, component, build_id):
    component_obj = _component(request, project, component)
    build = get_object_or_404(component_obj.builds, pk=build_id)
    page_action(
        request,
        lambda: services.build_cancel(build=authorized(build, actor=request.user, action=permissions.BUILD)),
        success="Cancel requested.",
    )
    return redirect("build-detail", project, component, build_id)


@login_required
def build_rows(request, project, component):
    component = _component(request, project, component)
    return render(
        request,
        "builds/partials/_build_rows.html",
        {"project": component.project, "component": component, "builds": services.build_list(component=component)},
    )


@csrf_exempt
@require_POST
def webhook(request, project, component):
    """A Git host's push event. Authenticated by the component's signature, not a token."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > webhooks.MAX_BODY:
        return JsonResponse({"detail": f"payload larger than {webhooks.MAX_BODY // (1024 * 1024)} MiB", "errors": {}}, status=413)
    try:
        event, status = services.webhook_receive(
            project_name=project, component_name=component, headers=request.headers, body=request.body, client=client_address(request)
        )
    except services.WebhookRefused as exc:
        return JsonResponse({"detail": exc.detail, "errors": {}}, status=exc.status_code)
    detail = event.reason if event.outcome != PushEvent.QUEUED else "queued"
    body = {"detail": detail, "event": event.pk, "outcome": event.outcome}
    if status >= 400:
        body["errors"] = {}
    return JsonResponse(body, status=status)
