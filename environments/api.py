from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from environments import permissions, services
from environments.serializers import EnvironmentCreateSerializer, EnvironmentSerializer, ProjectCreateSerializer, ProjectSerializer


class ProjectList(APIView):
    @extend_schema(responses=ProjectSerializer(many=True))
    def get(self, request):
        projects = permissions.projects_visible(request.user).prefetch_related("environments")
        return Response(ProjectSerializer(projects, many=True).data)

    @extend_schema(request=ProjectCreateSerializer, responses={201: ProjectSerializer})
    def post(self, request):
        data = ProjectCreateSerializer.validated(request.data)
        project = services.project_create(name=data["name"], actor=request.user)
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetail(APIView):
    @extend_schema(responses=ProjectSerializer)
    def get(self, request, project):
        return Response(ProjectSerializer(services.project_get(name=project, actor=request.user)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, project):
        services.project_delete(project=services.project_get(name=project, actor=request.user, action=permissions.MANAGE))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EnvironmentList(APIView):
    @extend_schema(responses=EnvironmentSerializer(many=True))
    def get(self, request, project):
        project = services.project_get(name=project, actor=request.user)
        return Response(EnvironmentSerializer(project.environments.order_by("position"), many=True).data)

    @extend_schema(request=EnvironmentCreateSerializer, responses={201: EnvironmentSerializer})
    def post(self, request, project):
        project = services.project_get(name=project, actor=request.user, action=permissions.MANAGE)
        data = EnvironmentCreateSerializer.validated(request.data)
        env = services.environment_create(project=project, name=data["name"], after=data.get("after"))
        return Response(EnvironmentSerializer(env).data, status=status.HTTP_201_CREATED)
