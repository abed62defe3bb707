import time

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from builds.models import Build
from builds.services import component_by_names
from choreo_site.api import waitable
from choreo_site.errors import PlatformError
from choreo_site.logstream import read_text
from deployments import runtime_logs, services
from deployments.serializers import (
    ConfigDeleteSerializer,
    ConfigSetSerializer,
    ConfigValueSerializer,
    DeploymentSerializer,
    DeploySerializer,
    PromoteSerializer,
    RollbackSerializer,
)
from environments import permissions
from environments.api import approval_accepted
from environments.models import ApprovalRequest
from environments.services import environment_get
from environments.values import check_request_size

WAIT = OpenApiParameter("wait", OpenApiTypes.BOOL, description="Block until the deployment is final (at most 300 s).")
ENVIRONMENT = OpenApiParameter("environment", OpenApiTypes.STR)


def _component(request, project: str, component: str, action: str = permissions.VIEW):
    return component_by_names(project=project, component=component, actor=request.user, action=action)


def _deployment_state(deployment_id: int) -> tuple[dict, bool]:
    deployment = services.deployment_get(pk=deployment_id, actor=None)  # the request that made it was authorized
    return DeploymentSerializer(deployment).data, deployment.is_final


def _created(deployment) -> Response:
    """201 and the deployment; or, in a protected environment, 202 and the approval request."""
    if isinstance(deployment, ApprovalRequest):
        return approval_accepted(deployment)
    return Response(DeploymentSerializer(services.deployment_get(pk=deployment.pk, actor=None)).data, status=status.HTTP_201_CREATED)


class Deploy(APIView):
    @extend_schema(request=DeploySerializer, parameters=[WAIT], responses={201: DeploymentSerializer})
    def post(self, request, project, component):
        component = _component(request, project, component, permissions.DEPLOY)
        data = DeploySerializer.validated(request.data)
        environment = environment_get(project=component.project, name=data["environment"]) if data.get("environment") else None
        build = None
        if data.get("build") is not None:
            build = Build.objects.filter(pk=data["build"], component=component).first()
            if build is None:
                raise PlatformError(f"Build {data['build']} is not a build of {component.name}.", errors={"build": ["Unknown build."]})
        return _created(services.deployment_deploy(component=component, environment=environment, build=build, actor=request.user))


class Promote(APIView):
    @extend_schema(request=PromoteSerializer, parameters=[WAIT], responses={201: DeploymentSerializer, 200: OpenApiTypes.OBJECT})
    def post(self, request, project, component):
        component = _component(request, project, component, permissions.DEPLOY)
        data = PromoteSerializer.validated(request.data)
        source = environment_get(project=component.project, name=data["from"])
        target = environment_get(project=component.project, name=data["to"])
        if data["dry_run"]:
            return Response(services.promotion_preview(component=component, source=source, target=target))
        return _created(services.deployment_promote(component=component, source=source, target=target, actor=request.user))


class Rollback(APIView):
    @extend_schema(request=RollbackSerializer, parameters=[WAIT], responses={201: DeploymentSerializer})
    def post(self, request, project, component):
        component = _component(request, project, component, permissions.DEPLOY)
        data = RollbackSerializer.validated(request.data)
        environment = environment_get(project=component.project, name=data["environment"])
        return _created(services.deployment_rollback(component=component, environment=environment, to=data.get("to"), actor=request.user))


class DeploymentList(APIView):
    @extend_schema(parameters=[ENVIRONMENT], responses=DeploymentSerializer(many=True))
    def get(self, request, project, component):
        component = _component(request, project, component)
        deployments = component.deployments.select_related("component__project", "environment", "release")
        if request.GET.get("environment"):
            deployments = deployments.filter(environment=environment_get(project=component.project, name=request.GET["environment"]))
        return Response(DeploymentSerializer(deployments[:100], many=True).data)


class DeploymentDetail(APIView):
    @extend_schema(responses=DeploymentSerializer)
    def get(self, request, deployment_id):
        return Response(DeploymentSerializer(services.deployment_get(pk=deployment_id, actor=request.user)).data)


class DeploymentLogs(APIView):
    @extend_schema(responses={(200, "text/plain"): OpenApiTypes.STR})
    def get(self, request, deployment_id):
        """The rollout's progress log."""
        deployment = services.deployment_get(pk=deployment_id, actor=request.user)
        return HttpResponse(read_text(deployment.log_stream), content_type="text/plain; charset=utf-8")


class RuntimeLogs(APIView):
    @extend_schema(
        parameters=[ENVIRONMENT, OpenApiParameter("since", OpenApiTypes.STR), OpenApiParameter("replica", OpenApiTypes.STR)],
        responses={(200, "text/plain"): OpenApiTypes.STR},
    )
    def get(self, request, project, component):
        """Logs of the active replicas in an environment: time, replica, line; redacted."""
        component = _component(request, project, component)
        name = request.GET.get("environment") or component.project.environments.order_by("position").first().name
        environment = environment_get(project=component.project, name=name)
        seconds = runtime_logs.since_seconds(request.GET.get("since"))
        found = runtime_logs.lines(
            component=component,
            environment=environment,
            since=time.time() - seconds if seconds is not None else None,
            replica=request.GET.get("replica") or None,
        )
        return HttpResponse("".join(f"{line}\n" for line in found), content_type="text/plain; charset=utf-8")


def _scope(component, request):
    """The environment named by ?environment=, or None: the environment-independent scope."""
    name = request.GET.get("environment")
    return environment_get(project=component.project, name=name) if name else None


class Config(APIView):
    """A component's configuration. Without ?environment=, the environment-independent
    values; with it, that environment's own. Secrets are write-only."""

    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(parameters=[ENVIRONMENT], responses=ConfigValueSerializer(many=True))
    def get(self, request, project, component):
        component = _component(request, project, component)
        values = services.component_config(component=component, environment=_scope(component, request))
        return Response(ConfigValueSerializer(values, many=True).data)

    @extend_schema(parameters=[ENVIRONMENT], request=ConfigSetSerializer, responses=ConfigValueSerializer)
    def put(self, request, project, component):
        component = _component(request, project, component, permissions.CONFIGURE)
        environment = _scope(component, request)
        check_request_size(int(request.META.get("CONTENT_LENGTH") or 0))
        if request.content_type.startswith("multipart/") and "file" not in request.FILES:
            raise PlatformError("A multipart request sets a file value: add the part 'file'.", errors={"file": ["No file was sent."]})
        data = ConfigSetSerializer.validated(request.data)
        if "file" in data:
            upload = data["file"]
            value, is_file, filename = upload.read(settings.CONFIG_FILE_MAX_BYTES + 1), True, upload.name or ""
        else:
            value, is_file, filename = data["value"], False, ""
        item = services.component_config_set(
            component=component,
            environment=environment,
            key=data["key"],
            value=value,
            secret=data["secret"],
            is_file=is_file,
            filename=filename,
            actor=request.user,
        )
        if isinstance(item, ApprovalRequest):
            return approval_accepted(item)
        return Response(ConfigValueSerializer(item).data)

    @extend_schema(
        parameters=[ENVIRONMENT, OpenApiParameter("key", OpenApiTypes.STR)], request=ConfigDeleteSerializer, responses={204: None}
    )
    def delete(self, request, project, component):
        component = _component(request, project, component, permissions.CONFIGURE)
        environment = _scope(component, request)
        key = request.GET.get("key") or ConfigDeleteSerializer.validated(request.data)["key"]
        request_obj = services.component_config_delete(component=component, environment=environment, key=key, actor=request.user)
        if request_obj is not None:
            return approval_accepted(request_obj)
        return Response(status=status.HTTP_204_NO_CONTENT)


deploy = waitable(_deployment_state)(Deploy.as_view())
promote = waitable(_deployment_state)(Promote.as_view())
rollback = waitable(_deployment_state)(Rollback.as_view())
