from rest_framework import serializers

from choreo_site.api import RedactedTextField, StrictSerializer
from tasks import services
from tasks.models import Execution, Schedule


class ExecutionSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="component.project.name", read_only=True)
    component = serializers.CharField(source="component.name", read_only=True)
    environment = serializers.CharField(source="environment.name", read_only=True)
    deployment = serializers.PrimaryKeyRelatedField(read_only=True)
    commit = serializers.SerializerMethodField()
    retry_of = serializers.PrimaryKeyRelatedField(read_only=True)
    duration = serializers.FloatField(read_only=True)
    error = RedactedTextField()

    class Meta:
        model = Execution
        fields = [
            "id",
            "project",
            "component",
            "environment",
            "trigger",
            "triggered_at",
            "attempt",
            "retry_of",
            "retry_at",
            "deployment",
            "commit",
            "args",
            "requested_by",
            "status",
            "exit_code",
            "error",
            "started_at",
            "finished_at",
            "duration",
        ]

    def get_commit(self, execution) -> str:
        return execution.deployment.release.build.commit if execution.deployment else ""


class ScheduleSerializer(serializers.ModelSerializer):
    component = serializers.CharField(source="component.name", read_only=True)
    environment = serializers.CharField(source="environment.name", read_only=True)
    description = serializers.SerializerMethodField()
    next_runs = serializers.SerializerMethodField()

    class Meta:
        model = Schedule
        fields = ["component", "environment", "expression", "timezone", "description", "paused", "next_runs"]

    def get_description(self, schedule) -> str:
        return services.describe(schedule)

    def get_next_runs(self, schedule) -> list[str]:
        return [moment.isoformat() for moment in services.upcoming(schedule)]


class RunSerializer(StrictSerializer):
    environment = serializers.CharField()
    # Checked by tasks.services.check_args: a list field would turn 1 into "1".
    args = serializers.JSONField(required=False, allow_null=True)


class SchedulePatchSerializer(StrictSerializer):
    paused = serializers.BooleanField()

    def to_internal_value(self, data):
        if isinstance(data, dict) and "paused" in data and not isinstance(data["paused"], bool):
            raise serializers.ValidationError({"paused": ["Must be true or false."]})
        return super().to_internal_value(data)
