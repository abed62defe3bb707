from rest_framework import serializers

from choreo_site.api import StrictSerializer
from environments.models import Environment, Project


class EnvironmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Environment
        fields = ["name", "position", "created_at"]


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
