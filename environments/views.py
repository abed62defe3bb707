from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from choreo_site.pages import page_action
from environments import permissions, services


@login_required
def projects(request):
    projects = permissions.projects_visible(request.user).prefetch_related("environments", "components")
    return render(request, "environments/projects.html", {"projects": projects})


@login_required
@require_POST
def project_create(request):
    name = request.POST.get("name", "").strip()
    project = page_action(request, lambda: services.project_create(name=name, actor=request.user), success="Project created.")
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
    return render(
        request, "environments/environments.html", {"project": project, "environments": project.environments.order_by("position")}
    )


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
    )
    return redirect("environments", project)
