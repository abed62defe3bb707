"""The Execute page: per environment, the schedule with its next runs and Pause, the
executions, the 30-day count, Run Now and Cancel; and an execution's page with live logs.
Every form goes through tasks.services, as the API does."""

import json
import shlex

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from builds.services import component_by_names
from choreo_site.errors import PlatformError
from choreo_site.logstream import page_log
from choreo_site.pages import page_action
from deployments.services import deployment_active
from deployments.views import REQUESTED
from environments import permissions
from environments.models import ApprovalRequest
from environments.permissions import authorized
from environments.services import environment_get
from tasks import services
from tasks.models import Execution, Schedule


def _component(request, project: str, component: str):
    return component_by_names(project=project, component=component, actor=request.user)


@login_required
def execute_page(request, project, component):
    component = _component(request, project, component)
    cards = []
    for environment in component.project.environments.order_by("position"):
        active = deployment_active(component=component, environment=environment)
        schedule = Schedule.objects.filter(component=component, environment=environment).first()
        cards.append(
            {
                "environment": environment,
                "active": active,
                "schedule": schedule,
                "description": services.describe(schedule) if schedule else "",
                "upcoming": services.upcoming(schedule) if schedule else [],
                "count": services.execution_count(component=component, environment=environment),
                "executions": services.executions_of(component=component, environment=environment)[:25],
            }
        )
    context = {
        "project": component.project,
        "component": component,
        "cards": cards,
        "is_task": component.type in services.TASK_TYPES,
        "can": permissions.abilities(request.user, component.project),
    }
    return render(request, "tasks/execute_page.html", context)


def _back(project, component):
    return redirect("execute-page", project, component)


def parse_args(text: str) -> list[str] | None:
    """Run Now's arguments as a shell would split them ('a "b c"' → ["a", "b c"]); none: the image's own."""
    if not text.strip():
        return None
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise PlatformError(f"Arguments: {exc} (quote an argument that holds spaces).", errors={"args": [str(exc)]}) from None


@login_required
@require_POST
def run_now(request, project, component):
    component_obj = _component(request, project, component)

    def action():
        environment = environment_get(project=component_obj.project, name=request.POST.get("environment", ""))
        authorized(component_obj, actor=request.user, action=permissions.RUN)
        args = parse_args(request.POST.get("args", ""))
        return services.execution_run(component=component_obj, environment=environment, args=args, actor=request.user)

    result = page_action(request, action)
    if isinstance(result, ApprovalRequest):
        messages.info(request, REQUESTED.format(summary=result.summary))
    elif result is not None:
        messages.success(request, f"Execution {result.pk} in {result.environment.name} is queued.")
        return redirect("execution-detail", project, component, result.pk)
    return _back(project, component)


@login_required
@require_POST
def schedule_pause(request, project, component):
    component_obj = _component(request, project, component)
    paused = request.POST.get("paused") == "on"

    def action():
        environment = environment_get(project=component_obj.project, name=request.POST.get("environment", ""))
        authorized(component_obj, actor=request.user, action=permissions.RUN)
        schedule = services.schedule_get(component=component_obj, environment=environment)
        return services.schedule_pause(schedule=schedule, paused=paused)

    page_action(
        request,
        action,
        success=lambda s: f"The schedule in {s.environment.name} is {'paused' if s.paused else 'running again, from its next due time'}.",
    )
    return _back(project, component)


@login_required
@require_POST
def execution_cancel(request, project, component, execution_id):
    component_obj = _component(request, project, component)

    def action():
        execution = services.execution_get(pk=execution_id, actor=request.user, action=permissions.RUN)
        if execution.component_id != component_obj.pk:
            raise Http404("No such execution of this component.")
        return services.execution_cancel(execution=execution)

    page_action(
        request,
        action,
        success=lambda e: f"Execution {e.pk} " + ("is cancelled." if e.status == Execution.CANCELLED else "is being stopped."),
    )
    if request.POST.get("next") == "detail":
        return redirect("execution-detail", project, component, execution_id)
    return _back(project, component)


@login_required
def execution_detail(request, project, component, execution_id):
    component_obj = _component(request, project, component)
    execution = services.execution_get(pk=execution_id, actor=request.user)
    if execution.component_id != component_obj.pk:
        raise Http404("No such execution of this component.")
    context = {
        "project": component_obj.project,
        "component": component_obj,
        "execution": execution,
        "args_shown": json.dumps(execution.args),
        "log": page_log(execution.log_stream),
        "can": permissions.abilities(request.user, component_obj.project),
    }
    return render(request, "tasks/execution_detail.html", context)
