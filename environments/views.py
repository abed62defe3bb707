from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from choreo_site import audit as audit_trail
from choreo_site.errors import PlatformError
from choreo_site.models import AuditEvent
from choreo_site.pages import kept_form, page_action
from environments import permissions, services
from environments.models import Membership


@login_required
def projects(request):
    projects = permissions.projects_visible(request.user).prefetch_related("environments", "components")
    return render(request, "environments/projects.html", {"projects": projects, "kept": kept_form(request, "project")})


@login_required
@require_POST
def project_create(request):
    name = request.POST.get("name", "").strip()
    project = page_action(
        request,
        lambda: services.project_create(name=name, actor=request.user),
        success="Project created.",
        keep=("project", {"name": name}),
    )
    return redirect("project", project.name) if project else redirect("projects")


@login_required
@require_POST
def project_delete(request, project):
    page_action(
        request,
        lambda: services.project_delete(project=services.project_get(name=project, actor=request.user, action=permissions.MANAGE)),
        success=f"Project {project} deleted.",
    )
    return redirect("projects")


@login_required
def environments(request, project):
    project = services.project_get(name=project, actor=request.user)
    context = {"project": project, "environments": project.environments.order_by("position"), "kept": kept_form(request, "environment")}
    return render(request, "environments/environments.html", {**context, "can": permissions.abilities(request.user, project)})


@login_required
@require_POST
def environment_protect(request, project, environment):
    project_obj = services.project_get(name=project, actor=request.user, action=permissions.MANAGE)
    protected = request.POST.get("protected") == "on"
    page_action(
        request,
        lambda: services.environment_update(
            environment=services.environment_get(project=project_obj, name=environment), protected=protected
        ),
        success=f"{environment} is protected: changes there need an admin's approval." if protected else f"{environment} is not protected.",
    )
    return redirect("environments", project)


@login_required
@require_POST
def environment_update(request, project, environment):
    """Rename, or move in the promotion order ("after": "" makes it first)."""
    project_obj = services.project_get(name=project, actor=request.user, action=permissions.MANAGE)
    name = request.POST.get("name", "").strip() or None
    after = request.POST.get("after")

    def action():
        current = services.environment_get(project=project_obj, name=environment)
        return services.environment_update(environment=current, name=name, after=after)

    page_action(request, action, success=lambda e: f"{e.name} is saved, at position {e.position + 1} of the promotion order.")
    return redirect("environments", project)


@login_required
@require_POST
def environment_delete(request, project, environment):
    """Delete an environment, with what runs there; the form asks for its name, typed."""
    project_obj = services.project_get(name=project, actor=request.user, action=permissions.MANAGE)

    def action():
        current = services.environment_get(project=project_obj, name=environment)
        if request.POST.get("confirm", "").strip() != current.name:
            raise PlatformError(
                f"To delete {current.name}, type its name in the box: everything running there stops.",
                errors={"confirm": ["Type the environment's name."]},
            )
        return services.environment_delete(environment=current)

    page_action(request, action, success=f"{environment} is deleted, with what ran there.")
    return redirect("environments", project)


@login_required
def members(request, project):
    project = services.project_get(name=project, actor=request.user)
    context = {
        "project": project,
        "members": services.member_list(project=project),
        "roles": Membership.ROLE_CHOICES,
        "kept": kept_form(request, "member"),
    }
    return render(request, "environments/members.html", {**context, "can": permissions.abilities(request.user, project)})


@login_required
@require_POST
def member_set(request, project):
    project_obj = services.project_get(name=project, actor=request.user, action=permissions.MANAGE)
    username = request.POST.get("username", "").strip()
    page_action(
        request,
        lambda: services.member_set(project=project_obj, username=username, role=request.POST.get("role", "")),
        success=lambda result: f"{username} is now {result[0].role} of {project}.",
        keep=("member", {"username": username, "role": request.POST.get("role", "")}),
    )
    return redirect("members", project)


@login_required
@require_POST
def member_remove(request, project):
    project_obj = services.project_get(name=project, actor=request.user, action=permissions.MANAGE)
    username = request.POST.get("username", "")
    page_action(request, lambda: services.member_remove(project=project_obj, username=username), success=f"{username} removed.")
    return redirect("members", project)


@login_required
@require_POST
def environment_create(request, project):
    project_obj = services.project_get(name=project, actor=request.user, action=permissions.MANAGE)
    page_action(
        request,
        lambda: services.environment_create(
            project=project_obj, name=request.POST.get("name", "").strip(), after=request.POST.get("after") or None
        ),
        success="Environment created.",
        keep=("environment", {"name": request.POST.get("name", ""), "after": request.POST.get("after", "")}),
    )
    return redirect("environments", project)


@login_required
def audit(request, project):
    project = services.project_get(name=project, actor=request.user)
    filters = {name: request.GET.get(name, "").strip() for name in audit_trail.FILTERS}
    events = AuditEvent.objects.filter(project_id=project.pk)
    try:
        events = audit_trail.events_filtered(events, filters)
    except PlatformError as exc:
        messages.error(request, exc.detail)
        filters["since"] = ""
        events = audit_trail.events_filtered(AuditEvent.objects.filter(project_id=project.pk), filters)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = urlencode({k: v for k, v in filters.items() if v})
    context = {"project": project, "page": page, "filters": filters, "query": query}
    return render(request, "environments/audit.html", {**context, "environments": project.environments.order_by("position")})
