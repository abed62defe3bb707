from rest_framework import serializers

from choreo_site.api import RedactedTextField, StrictSerializer
from deployments import configurables
from deployments.models import Deployment
from deployments.services import urls_for


class DeploymentSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="component.project.name", read_only=True)
    component = serializers.CharField(source="component.name", read_only=True)
    environment = serializers.CharField(source="environment.name", read_only=True)
    release = serializers.IntegerField(source="release_id", read_only=True)
    build = serializers.IntegerField(source="release.build_id", read_only=True)
    digest = serializers.CharField(source="release.digest", read_only=True)
    image = serializers.CharField(source="release.image_reference", read_only=True)
    urls = serializers.SerializerMethodField()
    config_keys = serializers.SerializerMethodField()
    replaces = serializers.PrimaryKeyRelatedField(read_only=True)
    rollback_of = serializers.PrimaryKeyRelatedField(read_only=True)
    error = RedactedTextField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "project",
            "component",
            "environment",
            "kind",
            "release",
            "build",
            "digest",
            "image",
            "status",
            "urls",
            "config_keys",
            "replaces",
            "rollback_of",
            "created_at",
            "started_at",
            "finished_at",
            "error",
        ]

    def get_urls(self, deployment) -> list[str]:
        return urls_for(deployment) if deployment.status in (Deployment.ACTIVE, Deployment.ROLLING_OUT) else []

    def get_config_keys(self, deployment) -> list[dict]:
        """Names and a fingerprint of each value, never a value."""
        return configurables.config_keys(deployment)


class DeploySerializer(StrictSerializer):
    environment = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    build = serializers.IntegerField(required=False, allow_null=True)


class PromoteSerializer(StrictSerializer):
    # "from" is a Python keyword: the field is declared under it below.
    to = serializers.CharField()
    dry_run = serializers.BooleanField(required=False, default=False)


PromoteSerializer._declared_fields["from"] = serializers.CharField()


class RollbackSerializer(StrictSerializer):
    environment = serializers.CharField()
    to = serializers.IntegerField(required=False, allow_null=True)


class ConfigValueSerializer(serializers.Serializer):
    """One configuration value. A secret has no `value`, ever; a file shows its size."""

    key = serializers.CharField()
    secret = serializers.BooleanField()
    file = serializers.BooleanField(source="is_file")
    environment = serializers.SerializerMethodField()
    size = serializers.IntegerField()
    filename = serializers.CharField()
    hash = serializers.SerializerMethodField()
    version = serializers.IntegerField(source="pk")
    updated_at = serializers.DateTimeField(source="created_at")

    def get_environment(self, item) -> str | None:
        return item.environment.name if item.environment_id else None

    def get_hash(self, item) -> str:
        return item.fingerprint[:16]

    def to_representation(self, item):
        data = super().to_representation(item)
        if not item.secret and not item.is_file:
            data["value"] = item.text
        return data


class ConfigSetSerializer(StrictSerializer):
    key = serializers.CharField(max_length=200, trim_whitespace=False)
    value = serializers.JSONField(required=False)
    secret = serializers.BooleanField(required=False, default=False)
    file = serializers.FileField(required=False, allow_empty_file=True)

    def validate(self, data):
        if "value" in data and "file" in data:
            raise serializers.ValidationError({"file": ["Give a value or a file, not both."]})
        if "value" not in data and "file" not in data:
            raise serializers.ValidationError({"value": ["Give a value (JSON), or upload a file (multipart, field 'file')."]})
        return data


class ConfigDeleteSerializer(StrictSerializer):
    key = serializers.CharField(max_length=200, trim_whitespace=False)
