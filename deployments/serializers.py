import hashlib

from rest_framework import serializers

from choreo_site.api import StrictSerializer
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
        """Names and a hash of each value, never a value."""
        merged = {**deployment.release.config, **deployment.config}
        return [{"key": k, "hash": hashlib.sha256(str(v).encode()).hexdigest()[:16]} for k, v in sorted(merged.items())]


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
