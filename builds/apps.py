from django.apps import AppConfig


class BuildsConfig(AppConfig):
    name = "builds"

    def ready(self) -> None:
        from builds.models import Build
        from builds.services import build_reap_orphans, polls_enqueue_due, project_teardown
        from choreo_site import housekeeping, logstream
        from environments.services import register_project_teardown

        housekeeping.register(build_reap_orphans)
        housekeeping.register(polls_enqueue_due)
        register_project_teardown(project_teardown)

        def build_final_status(build_id: int) -> str | None:
            status = Build.objects.filter(pk=build_id).values_list("status", flat=True).first()
            if status is None:
                raise LookupError(build_id)
            return status if status in Build.FINAL else None

        logstream.register_stream_kind("build", build_final_status)
