from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from builds.services import component_by_names
from choreo_site.api import waitable
from choreo_site.errors import PlatformError
from choreo_site.logstream import read_text
from environments import permissions
from environments.api import approval_accepted
from environments.models import ApprovalRequest
from environments.services import environment_get
from tasks import services
from tasks.serializers import ExecutionSerializer, RunSerializer, SchedulePatchSerializer, ScheduleSerializer

ENVIRONMENT = OpenApiParameter("environment", OpenApiTypes.STR)
WAIT = OpenApiParameter("wait", OpenApiTypes.BOOL, description="Block until the execution is final (at most 300 s).")


def _component(request, project: str, component: str, action: str = permissions.VIEW):
    return component_by_names(project=project, component=component, actor=request.user, action=action)


def _environment(component, request, *, required: bool = True):
    name = request.GET.get("environment")
    if not name:
        if required:
            raise PlatformError("Name the environment: ?environment=NAME.", errors={"environment": ["This parameter is required."]})
        return None
    return environment_get(project=component.project, name=name)


def _execution_state(execution_id: int) -> tuple[dict, bool]:
    execution = services.execution_get(pk=execution_id, actor=None)  # the request that made it was authorized
    return ExecutionSerializer(execution).data, execution.is_final


class Executions(APIView):
    @extend_schema(parameters=[ENVIRONMENT], responses=ExecutionSerializer(many=True))
    def get(self, request, project, component):
        """Executions, newest first (at most 100)."""
        component = _component(request, project, component)
        rows = services.executions_of(component=component, environment=_environment(component, request, required=False))
        return Response(ExecutionSerializer(rows[:100], many=True).data)

    @extend_schema(request=RunSerializer, parameters=[WAIT], responses={201: ExecutionSerializer})
    def post(self, request, project, component):
        """A manual run on the task's active deployment in the environment."""
        component = _component(request, project, component, permissions.RUN)
        data = RunSerializer.validated(request.data)
        environment = environment_get(project=component.project, name=data["environment"])
        made = services.execution_run(component=component, environment=environment, args=data.get("args"), actor=request.user)
        if isinstance(made, ApprovalRequest):
            return approval_accepted(made)
        return Response(ExecutionSerializer(services.execution_get(pk=made.pk, actor=None)).data, status=status.HTTP_201_CREATED)


class ExecutionCount(APIView):
    @extend_schema(parameters=[ENVIRONMENT, OpenApiParameter("days", OpenApiTypes.INT)], responses=OpenApiTypes.OBJECT)
    def get(self, request, project, component):
        """How many executions ran (skipped ones are not counted) in the last `days` days (default 30)."""
        component = _component(request, project, component)
        raw = request.GET.get("days", "30")
        if not raw.isdigit() or not 1 <= int(raw) <= 3650:
            raise PlatformError("days must be a whole number from 1 to 3650.", errors={"days": ["From 1 to 3650."]})
        days = int(raw)
        environment = _environment(component, request, required=False)
        return Response({"count": services.execution_count(component=component, environment=environment, days=days), "days": days})


class ScheduleDetail(APIView):
    @extend_schema(parameters=[ENVIRONMENT], responses=ScheduleSerializer)
    def get(self, request, project, component):
        component = _component(request, project, component)
        schedule = services.schedule_get(component=component, environment=_environment(component, request))
        return Response(ScheduleSerializer(schedule).data)

    @extend_schema(parameters=[ENVIRONMENT], request=SchedulePatchSerializer, responses=ScheduleSerializer)
    def patch(self, request, project, component):
        """Pause or resume. Resuming does not replay what was due while paused."""
        component = _component(request, project, component, permissions.RUN)
        schedule = services.schedule_get(component=component, environment=_environment(component, request))
        data = SchedulePatchSerializer.validated(request.data)
        return Response(ScheduleSerializer(services.schedule_pause(schedule=schedule, paused=data["paused"])).data)


class ExecutionDetail(APIView):
    @extend_schema(responses=ExecutionSerializer)
    def get(self, request, execution_id):
        return Response(ExecutionSerializer(services.execution_get(pk=execution_id, actor=request.user)).data)


class ExecutionCancel(APIView):
    @extend_schema(request=None, responses=ExecutionSerializer)
    def post(self, request, execution_id):
        """Cancel a queued or running execution (409 once it has finished)."""
        execution = services.execution_get(pk=execution_id, actor=request.user, action=permissions.RUN)
        return Response(ExecutionSerializer(services.execution_cancel(execution=execution)).data)


class ExecutionLogs(APIView):
    @extend_schema(responses={(200, "text/plain"): OpenApiTypes.STR})
    def get(self, request, execution_id):
        """The execution's output, redacted."""
        execution = services.execution_get(pk=execution_id, actor=request.user)
        return HttpResponse(read_text(execution.log_stream), content_type="text/plain; charset=utf-8")


executions = waitable(_execution_state)(Executions.as_view())
