from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from choreo_site.api import AuditEventSerializer, audit_response
from choreo_site.models import AuditEvent
from environments import approvals, permissions, services
from environments.serializers import (
    ApprovalDecisionSerializer,
    ApprovalSerializer,
    EnvironmentCreateSerializer,
    EnvironmentSerializer,
    EnvironmentUpdateSerializer,
    MemberSerializer,
    MemberSetSerializer,
    ProjectCreateSerializer,
    ProjectSerializer,
)


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


class MemberList(APIView):
    @extend_schema(responses=MemberSerializer(many=True))
    def get(self, request, project):
        project = services.project_get(name=project, actor=request.user)
        return Response(MemberSerializer(services.member_list(project=project), many=True).data)


class MemberDetail(APIView):
    @extend_schema(request=MemberSetSerializer, responses={200: MemberSerializer, 201: MemberSerializer})
    def put(self, request, project, username):
        project = services.project_get(name=project, actor=request.user, action=permissions.MANAGE)
        data = MemberSetSerializer.validated(request.data)
        membership, created = services.member_set(project=project, username=username, role=data["role"])
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(responses={204: None})
    def delete(self, request, project, username):
        project = services.project_get(name=project, actor=request.user, action=permissions.MANAGE)
        services.member_remove(project=project, username=username)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectAudit(APIView):
    """The project's audit events, newest first, paginated (`?page=`, `?page_size=`)."""

    @extend_schema(
        parameters=[OpenApiParameter(name, str) for name in ("actor", "action", "environment", "since")],
        responses=AuditEventSerializer(many=True),
    )
    def get(self, request, project):
        project = services.project_get(name=project, actor=request.user)
        return audit_response(request, self, AuditEvent.objects.filter(project_id=project.pk))


class EnvironmentDetail(APIView):
    @extend_schema(request=EnvironmentUpdateSerializer, responses=EnvironmentSerializer)
    def patch(self, request, project, environment):
        project = services.project_get(name=project, actor=request.user, action=permissions.MANAGE)
        data = EnvironmentUpdateSerializer.validated(request.data)
        env = services.environment_update(environment=services.environment_get(project=project, name=environment), **data)
        return Response(EnvironmentSerializer(env).data)

    @extend_schema(responses={204: None})
    def delete(self, request, project, environment):
        project = services.project_get(name=project, actor=request.user, action=permissions.MANAGE)
        services.environment_delete(environment=services.environment_get(project=project, name=environment))
        return Response(status=status.HTTP_204_NO_CONTENT)


def approval_accepted(request_obj) -> Response:
    """What a deploy, promotion, rollback or configuration change in a protected
    environment answers: 202, and the request waiting for approval."""
    return Response({"approval": ApprovalSerializer(request_obj).data}, status=status.HTTP_202_ACCEPTED)


class ApprovalList(APIView):
    @extend_schema(parameters=[OpenApiParameter("status", str)], responses=ApprovalSerializer(many=True))
    def get(self, request, project):
        project = services.project_get(name=project, actor=request.user)
        requests = approvals.request_list(project=project, status=request.query_params.get("status") or None)
        return Response(ApprovalSerializer(requests[:200], many=True).data)


class ApprovalDecision(APIView):
    decision = None  # approvals.approve or approvals.reject

    @extend_schema(request=ApprovalDecisionSerializer, responses=ApprovalSerializer)
    def post(self, request, approval_id):
        data = ApprovalDecisionSerializer.validated(request.data or {})
        approval = approvals.request_get(pk=approval_id, actor=request.user)
        decided = type(self).decision(request=approval, actor=request.user, comment=data["comment"])
        return Response(ApprovalSerializer(decided).data)


class ApprovalApprove(ApprovalDecision):
    decision = staticmethod(approvals.approve)


class ApprovalReject(ApprovalDecision):
    decision = staticmethod(approvals.reject)
