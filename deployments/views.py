import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from builds.models import Build
from builds.services import component_by_names, component_update
from choreo_site.errors import NotFound, PlatformError
from choreo_site.logstream import page_log
from choreo_site.pages import kept_form, page_action
from deployments import configurables, overview, rollout, runtime_logs, services
from environments import approvals, permissions
from environments.models import ApprovalRequest
from environments.permissions import authorized
from environments.services import environment_get, project_get
from environments.values import check_request_size


def _component(request, project: str, component: str):
    return component_by_names(project=project, component=component, actor=request.user)


@login_required
def pipeline_page(request, project):
    project = project_get(name=project, actor=request.user)
    context = {
        "project": project,
        "pipeline": overview.pipeline(project),
        "components": project.components.all(),
        "environments": project.environments.order_by("position"),
        "can": permissions.abilities(request.user, project),
        "kept": kept_form(request, "component"),
    }
    return render(request, "deployments/pipeline.html", context)


@login_required
def deploy_page(request, project, component):
    component = _component(request, project, component)
    environments = list(component.project.environments.order_by("position"))
    newest = configurables.newest_descriptor(component)
    independent = services.component_config(component=component, environment=None)
    cards = []
    for i, environment in enumerate(environments):
        config = services.component_config(component=component, environment=environment)
        active = services.deployment_active(component=component, environment=environment)
        following = environments[i + 1] if i + 1 < len(environments) else None
        preview = None
        if active and following:
            try:
                preview = services.promotion_preview(component=component, source=environment, target=following)
            except PlatformError:
                preview = None
        if i == 0:
            config_problems = configurables.problems(newest, configurables.current(component, environment))
        else:
            previous = cards[-1]["preview"]
            config_problems = {m["key"]: m["reasons"] for m in previous["missing_configurables"]} if previous else {}
        history = list(component.deployments.filter(environment=environment).select_related("release__build")[:10])
        target = services.rollback_target(component=component, environment=environment, active=active) if active else None
        # The default target is often a history row too: what each would change is worked out once.
        offers = {d.pk: _rollback_offer(active, d) for d in history if active and services.rollback_offered(active=active, deployment=d)}
        cards.append(
            {
                "environment": environment,
                "config": config,
                "config_problems": config_problems,
                "active": active,
                "health": rollout.health(active) if active else "",
                "urls": services.urls_for(active) if active else [],
                "not_deployed": services.config_not_deployed(component=component, environment=environment, active=active) if active else [],
                "next": following,
                "preview": preview,
                "rollback": (offers.get(target.pk) or _rollback_offer(active, target)) if target else None,
                "history": [(d, offers.get(d.pk)) for d in history],
                "kept": kept_form(request, f"config:{environment.name}"),
                "pending": approvals.request_list(project=component.project, status=ApprovalRequest.PENDING).filter(
                    environment=environment, component=component.name
                ),
            }
        )
    context = {
        "project": component.project,
        "component": component,
        "cards": cards,
        "builds": component.builds.filter(status=Build.SUCCEEDED)[:20],
        "first": environments[0] if environments else None,
        "independent": independent,
        "independent_kept": kept_form(request, "config:"),
        "configurables": configurables.declared(newest).values(),
        "ingress_port": settings.INGRESS_PORT,
        "can": permissions.abilities(request.user, component.project),
    }
    return render(request, "deployments/deploy_page.html", context)


def _rollback_offer(active, target) -> dict:
    """A rollback button's target and what it would change, for its confirmation."""
    return {"target": target, "changes": services.deployment_changes(current=active, release=target.release, config=target.config)}


def _back(project, component):
    return redirect("deploy-page", project, component)


REQUESTED = "Requested: {summary}. It waits for the approval of a project admin other than you."


def _started(request, project, component, result, started: str):
    """Where a deploy, promotion or rollback form leads: the new deployment, or, in a
    protected environment, back to the page that shows the request."""
    if isinstance(result, ApprovalRequest):
        messages.info(request, REQUESTED.format(summary=result.summary))
        return _back(project, component)
    if result is None:
        return _back(project, component)
    messages.success(request, started.format(d=result))
    return redirect("deployment-detail", project, component, result.pk)


@login_required
@require_POST
def deploy(request, project, component):
    component_obj = _component(request, project, component)
    build_id = request.POST.get("build") or None
    build = component_obj.builds.filter(pk=build_id).first() if build_id and build_id.isdigit() else None
    if build_id and build is None:
        messages.error(request, f"Build {build_id} is not a build of {component}.")
        return _back(project, component)
    environment = None
    if request.POST.get("environment"):
        environment = page_action(request, lambda: environment_get(project=component_obj.project, name=request.POST["environment"]))
        if environment is None:
            return _back(project, component)
    result = page_action(
        request,
        lambda: services.deployment_deploy(
            component=authorized(component_obj, actor=request.user, action=permissions.DEPLOY),
            environment=environment,
            build=build,
            actor=request.user,
        ),
    )
    return _started(request, project, component, result, "Deployment {d.pk} to {d.environment.name} started.")


@login_required
@require_POST
def promote(request, project, component):
    component_obj = _component(request, project, component)

    def action():
        source = environment_get(project=component_obj.project, name=request.POST.get("from", ""))
        target = environment_get(project=component_obj.project, name=request.POST.get("to", ""))
        authorized(component_obj, actor=request.user, action=permissions.DEPLOY)
        return services.deployment_promote(component=component_obj, source=source, target=target, actor=request.user)

    result = page_action(request, action)
    return _started(request, project, component, result, "Promotion to {d.environment.name} started (deployment {d.pk}).")


@login_required
@require_POST
def rollback(request, project, component):
    component_obj = _component(request, project, component)
    to = request.POST.get("to")

    def action():
        environment = environment_get(project=component_obj.project, name=request.POST.get("environment", ""))
        authorized(component_obj, actor=request.user, action=permissions.DEPLOY)
        target = int(to) if to and to.isdigit() else None
        return services.deployment_rollback(component=component_obj, environment=environment, to=target, actor=request.user)

    result = page_action(request, action)
    return _started(request, project, component, result, "Rollback in {d.environment.name} started (deployment {d.pk}).")


@login_required
@require_POST
def auto_deploy_toggle(request, project, component):
    component_obj = _component(request, project, component)
    enabled = request.POST.get("enabled") == "on"
    page_action(
        request,
        lambda: component_update(
            component=authorized(component_obj, actor=request.user, action=permissions.CONFIGURE), auto_deploy_on_build=enabled
        ),
        success=f"Auto Deploy on Build is {'on' if enabled else 'off'}.",
    )
    return _back(project, component)


@login_required
def logs_page(request, project, component):
    """Runtime logs of the active replicas in one environment: the chosen time range as the
    server read it (it works without JavaScript), then live over a WebSocket."""
    component_obj = _component(request, project, component)
    environments = list(component_obj.project.environments.order_by("position"))
    environment = next((e for e in environments if e.name == request.GET.get("environment")), environments[0])
    since_key, since = runtime_logs.since_default(request.GET.get("since"))
    replicas = runtime_logs.replicas(component=component_obj, environment=environment)
    replica = request.GET.get("replica") if request.GET.get("replica") in replicas else ""
    found, problem, read_at = [], "", time.time()
    try:
        found = runtime_logs.lines(component=component_obj, environment=environment, since=since, replica=replica or None)
    except PlatformError as exc:
        problem = exc.detail
    context = {
        "project": component_obj.project,
        "component": component_obj,
        "environments": environments,
        "environment": environment,
        "replicas": replicas,
        "replica": replica,
        "since": since_key,
        "since_choices": runtime_logs.SINCE_CHOICES,
        "lines": found,
        "truncated": len(found) >= runtime_logs.MAX_LINES,
        "last": found[-1].at if found else "",
        "read_at": f"{read_at:.3f}",
        "problem": problem,
    }
    return render(request, "deployments/logs_page.html", context)


@login_required
def deployment_detail(request, project, component, deployment_id):
    component_obj = _component(request, project, component)
    deployment = services.deployment_get(pk=deployment_id, actor=request.user)
    if deployment.component_id != component_obj.pk:
        raise Http404("No such deployment of this component.")
    return render(
        request,
        "deployments/deployment_detail.html",
        {
            "project": component_obj.project,
            "component": component_obj,
            "deployment": deployment,
            "log": page_log(deployment.log_stream),
            "urls": services.urls_for(deployment),
            "config_keys": configurables.config_keys(deployment),
        },
    )


def _config_scope(request, component):
    name = request.POST.get("environment", "")
    return environment_get(project=component.project, name=name) if name else None


@login_required
@require_POST
def config_set(request, project, component):
    """Set a value from a card: text, or an uploaded file; a secret when the box is ticked."""
    component_obj = _component(request, project, component)
    upload = request.FILES.get("file")

    def action():
        authorized(component_obj, actor=request.user, action=permissions.CONFIGURE)
        check_request_size(int(request.META.get("CONTENT_LENGTH") or 0))
        environment = _config_scope(request, component_obj)
        if upload is not None:
            value, is_file = upload.read(settings.CONFIG_FILE_MAX_BYTES + 1), True
        elif request.POST.get("value"):
            value, is_file = request.POST["value"], False
        else:
            raise PlatformError("Give a value, or choose a file.", errors={"value": ["Empty."]})
        return services.component_config_set(
            component=component_obj,
            environment=environment,
            key=request.POST.get("key", "").strip(),
            value=value,
            secret=request.POST.get("secret") == "on",
            is_file=is_file,
            filename=upload.name if upload else "",
            actor=request.user,
        )

    def done(item) -> str:
        if isinstance(item, ApprovalRequest):
            return REQUESTED.format(summary=item.summary)
        return f"{item.key} is set{' (secret)' if item.secret else ''}; it reaches the replicas with the next deployment."

    # The key is kept after a refusal, never the value: it may be a secret.
    page_action(
        request, action, success=done, keep=(f"config:{request.POST.get('environment', '')[:100]}", {"key": request.POST.get("key", "")})
    )
    return _back(project, component)


@login_required
@require_POST
def config_delete(request, project, component):
    component_obj = _component(request, project, component)
    key = request.POST.get("key", "")
    page_action(
        request,
        lambda: services.component_config_delete(
            component=authorized(component_obj, actor=request.user, action=permissions.CONFIGURE),
            environment=_config_scope(request, component_obj),
            key=key,
            actor=request.user,
        ),
        success=lambda requested: (
            REQUESTED.format(summary=requested.summary)
            if requested
            else f"{key} is removed; the replicas keep it until the next deployment."
        ),
    )
    return _back(project, component)


@login_required
@require_POST
def approval_decide(request, project, component, approval_id, decision):
    """Approve or reject a request from the Deploy page."""
    component_obj = _component(request, project, component)
    decide = {"approve": approvals.approve, "reject": approvals.reject}.get(decision)
    if decide is None:
        raise Http404("Approve or reject.")

    def action():
        approval = approvals.request_get(pk=approval_id, actor=request.user)
        if approval.project_id != component_obj.project_id or approval.component != component_obj.name:
            raise NotFound(f"Approval request {approval_id} does not exist.")
        return decide(request=approval, actor=request.user, comment=request.POST.get("comment", "")[:1000])

    page_action(request, action, success=lambda a: f"Request {a.pk} {a.status}: {a.summary}.")
    return _back(project, component)
