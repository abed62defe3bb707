from rest_framework import serializers

from choreo_site.api import StrictSerializer
from environments.models import ApprovalRequest, Environment, Membership, Project


class EnvironmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Environment
        fields = ["name", "position", "protected", "created_at"]


class EnvironmentUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    after = serializers.CharField(max_length=100, required=False, allow_blank=True)
    protected = serializers.BooleanField(required=False)


class ProjectSerializer(serializers.ModelSerializer):
    environments = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["name", "environments", "created_at"]

    def get_environments(self, project) -> list[str]:
        return [env.name for env in project.environments.all()]


class ProjectCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)


class EnvironmentCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    after = serializers.CharField(max_length=100, required=False, allow_blank=True, allow_null=True)


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "role", "created_at"]


class MemberSetSerializer(StrictSerializer):
    # Checked in the service, which names the roles.
    role = serializers.CharField(max_length=20)


class ApprovalSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="project.name", read_only=True)
    environment = serializers.CharField(source="environment.name", read_only=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True, default=None)
    decided_by = serializers.CharField(source="decided_by.username", read_only=True, default=None)

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "project",
            "environment",
            "component",
            "kind",
            "summary",
            "payload",
            "status",
            "requested_by",
            "requested_at",
            "expires_at",
            "decided_by",
            "decided_at",
            "comment",
            "result",
        ]


class ApprovalDecisionSerializer(StrictSerializer):
    comment = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
