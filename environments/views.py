from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from choreo_site.pages import page_action
from environments import services
from environments.models import Project


@login_required
def projects(request):
    return render(request, "environments/projects.html", {"projects": Project.objects.prefetch_related("environments", "components")})


@login_required
@require_POST
def project_create(request):
    project = page_action(request, lambda: services.project_create(name=request.POST.get("name", "").strip()), success="Project created.")
    return redirect("project", project.name) if project else redirect("projects")


@login_required
@require_POST
def project_delete(request, project):
    page_action(request, lambda: services.project_delete(project=services.project_get(name=project)), success=f"Project {project} deleted.")
    return redirect("projects")


@login_required
def environments(request, project):
    project = services.project_get(name=project)
    return render(
        request, "environments/environments.html", {"project": project, "environments": project.environments.order_by("position")}
    )


@login_required
@require_POST
def environment_create(request, project):
    project_obj = services.project_get(name=project)
    page_action(
        request,
        lambda: services.environment_create(
            project=project_obj, name=request.POST.get("name", "").strip(), after=request.POST.get("after") or None
        ),
        success="Environment created.",
    )
    return redirect("environments", project)
