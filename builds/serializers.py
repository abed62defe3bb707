from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from builds.models import Build, Component, PushEvent
from choreo_site.api import RedactedTextField, StrictSerializer


class ComponentSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="project.name", read_only=True)
    webhook_url = serializers.SerializerMethodField()
    webhook_secret_set = serializers.SerializerMethodField()
    poll_error = RedactedTextField()
    repository_credentials_set = serializers.SerializerMethodField()

    class Meta:
        model = Component
        fields = [
            "name",
            "project",
            "repository",
            "repository_credentials_set",
            "branch",
            "path",
            "type",
            "auto_build_on_commit",
            "auto_deploy_on_build",
            "webhook_url",
            "webhook_secret_set",
            "poll_enabled",
            "build_on_path_changes_only",
            "poll_error",
            "created_at",
        ]

    def get_repository_credentials_set(self, component) -> bool:
        return bool(component.repository_credentials)

    def get_webhook_secret_set(self, component) -> bool:
        return bool(component.webhook_secret)

    def get_webhook_url(self, component) -> str:
        return settings.PUBLIC_URL.rstrip("/") + reverse("webhook", args=[component.project.name, component.name])


class ComponentCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    repository = serializers.CharField(max_length=1000)
    branch = serializers.CharField(max_length=200, required=False, default="main")
    path = serializers.CharField(max_length=500, required=False, default=".", allow_blank=True)


class ComponentUpdateSerializer(StrictSerializer):
    auto_build_on_commit = serializers.BooleanField(required=False)
    auto_deploy_on_build = serializers.BooleanField(required=False)
    webhook_secret = serializers.CharField(required=False, allow_blank=True, max_length=200, write_only=True)
    poll_enabled = serializers.BooleanField(required=False)
    build_on_path_changes_only = serializers.BooleanField(required=False)


class BuildSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="component.project.name", read_only=True)
    component = serializers.CharField(source="component.name", read_only=True)
    image = serializers.CharField(source="image_reference", read_only=True)
    logs_url = serializers.SerializerMethodField()

    error = RedactedTextField()
    auto_deploy_error = RedactedTextField()
    commit_message = RedactedTextField()
    commit_author = RedactedTextField()

    class Meta:
        model = Build
        fields = [
            "id",
            "project",
            "component",
            "commit",
            "commit_message",
            "commit_author",
            "trigger",
            "status",
            "image",
            "digest",
            "reused",
            "endpoints",
            "error",
            "auto_deploy_error",
            "created_at",
            "started_at",
            "finished_at",
            "logs_url",
        ]

    def get_logs_url(self, build) -> str:
        return reverse("api-build-logs", args=[build.pk])


class BuildStartSerializer(StrictSerializer):
    commit = serializers.CharField(max_length=40, required=False, allow_blank=True, allow_null=True)


class PushEventSerializer(serializers.ModelSerializer):
    build = serializers.PrimaryKeyRelatedField(read_only=True)
    commit = serializers.CharField(source="after", read_only=True)
    reason = RedactedTextField()

    class Meta:
        model = PushEvent
        fields = ["id", "provider", "delivery_id", "event", "ref", "commit", "before", "outcome", "reason", "build", "received_at"]
