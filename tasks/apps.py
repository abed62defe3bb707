from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"

    def ready(self) -> None:
        from builds.services import register_component_teardown
        from choreo_site import housekeeping, runs
        from environments import approvals
        from tasks import execution, services

        runs.register(execution.KIND)
        approvals.register_executor("run", services.run_approved)
        register_component_teardown(teardown=services.component_teardown, describe=services.component_running)
        housekeeping.register(services.schedules_sync_all)
        housekeeping.register(services.executions_prune)
