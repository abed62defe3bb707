from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from builds import services
from builds.models import Build
from builds.serializers import (
    BuildSerializer,
    BuildStartSerializer,
    ComponentCreateSerializer,
    ComponentSerializer,
    ComponentUpdateSerializer,
    PushEventSerializer,
)
from builds.services import component_by_names
from choreo_site.api import waitable
from choreo_site.logstream import read_text
from environments import permissions
from environments.services import project_get

WAIT = OpenApiParameter("wait", OpenApiTypes.BOOL, description="Block until the build is final (at most 300 s).")


def _component(request, project: str, component: str, action: str = permissions.VIEW):
    return component_by_names(project=project, component=component, actor=request.user, action=action)


class ComponentList(APIView):
    @extend_schema(responses=ComponentSerializer(many=True))
    def get(self, request, project):
        project = project_get(name=project, actor=request.user)
        return Response(ComponentSerializer(project.components.select_related("project"), many=True).data)

    @extend_schema(request=ComponentCreateSerializer, responses={201: ComponentSerializer})
    def post(self, request, project):
        project = project_get(name=project, actor=request.user, action=permissions.MANAGE)
        data = ComponentCreateSerializer.validated(request.data)
        component = services.component_create(project=project, **data)
        return Response(ComponentSerializer(component).data, status=status.HTTP_201_CREATED)


class ComponentDetail(APIView):
    @extend_schema(responses=ComponentSerializer)
    def get(self, request, project, component):
        return Response(ComponentSerializer(_component(request, project, component)).data)

    @extend_schema(request=ComponentUpdateSerializer, responses=ComponentSerializer)
    def patch(self, request, project, component):
        data = ComponentUpdateSerializer.validated(request.data)
        component = services.component_update(component=_component(request, project, component, permissions.CONFIGURE), **data)
        return Response(ComponentSerializer(component).data)

    @extend_schema(responses={204: None})
    def delete(self, request, project, component):
        """Stop and remove what the component runs (replicas, routes, schedules, task runs),
        its images and its records. 409 while it rolls out."""
        services.component_delete(component=_component(request, project, component, permissions.MANAGE))
        return Response(status=204)


class PushEventList(APIView):
    @extend_schema(responses=PushEventSerializer(many=True))
    def get(self, request, project, component):
        """Pushes received by webhook or found by polling, newest first, with their outcome."""
        events = _component(request, project, component).push_events.all()[:100]
        return Response(PushEventSerializer(events, many=True).data)


def _build_state(build_id: int) -> tuple[dict, bool]:
    build = Build.objects.select_related("component__project").get(pk=build_id)
    return BuildSerializer(build).data, build.is_final


class BuildList(APIView):
    @extend_schema(responses=BuildSerializer(many=True))
    def get(self, request, project, component):
        builds = _component(request, project, component).builds.select_related("component__project")[:100]
        return Response(BuildSerializer(builds, many=True).data)

    @extend_schema(request=BuildStartSerializer, parameters=[WAIT], responses={201: BuildSerializer, 200: BuildSerializer})
    def post(self, request, project, component):
        data = BuildStartSerializer.validated(request.data)
        component = _component(request, project, component, permissions.BUILD)
        build, created = services.build_request(component=component, commit=data.get("commit"))
        # 200 and the build under way when that commit is already queued or running.
        return Response(BuildSerializer(build).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class BuildDetail(APIView):
    @extend_schema(responses=BuildSerializer)
    def get(self, request, build_id):
        return Response(BuildSerializer(services.build_get(pk=build_id, actor=request.user)).data)


class BuildLogs(APIView):
    @extend_schema(responses={(200, "text/plain"): OpenApiTypes.STR})
    def get(self, request, build_id):
        build = services.build_get(pk=build_id, actor=request.user)
        return HttpResponse(read_text(build.log_stream), content_type="text/plain; charset=utf-8")


class BuildCancel(APIView):
    @extend_schema(request=None, responses=BuildSerializer)
    def post(self, request, build_id):
        build = services.build_cancel(build=services.build_get(pk=build_id, actor=request.user, action=permissions.BUILD))
        return Response(BuildSerializer(build).data, status=status.HTTP_202_ACCEPTED)


build_list = waitable(_build_state)(BuildList.as_view())
