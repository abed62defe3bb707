from django.apps import AppConfig


class BuildsConfig(AppConfig):
    name = "builds"

    def ready(self) -> None:
        from builds.models import Build
        from builds.services import (
            build_reap_orphans,
            polls_enqueue_due,
            project_teardown,
            registry_collect_due,
            repository_credential_values,
        )
        from choreo_site import housekeeping, logstream, redaction
        from environments import permissions
        from environments.services import register_project_teardown

        redaction.register_secret_source(repository_credential_values)
        housekeeping.register(build_reap_orphans)
        housekeeping.register(polls_enqueue_due)
        housekeeping.register(registry_collect_due)
        register_project_teardown(project_teardown)

        logstream.register_stream_kind("build", model=Build, final_statuses=Build.FINAL, readable=permissions.check_view)
