from django.apps import AppConfig


class BuildsConfig(AppConfig):
    name = "builds"

    def ready(self) -> None:
        from builds import pipeline
        from builds.services import polls_enqueue_due, project_teardown, registry_collect_due, repository_credential_values
        from choreo_site import housekeeping, redaction, runs
        from environments.services import register_project_teardown

        runs.register(pipeline.KIND)
        redaction.register_secret_source(repository_credential_values)
        housekeeping.register(polls_enqueue_due)
        housekeeping.register(registry_collect_due)
        register_project_teardown(project_teardown)
