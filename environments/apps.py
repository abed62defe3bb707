from django.apps import AppConfig


class EnvironmentsConfig(AppConfig):
    name = "environments"

    def ready(self) -> None:
        from choreo_site import housekeeping, redaction
        from environments import approvals
        from environments.services import config_approved, config_secret_values

        redaction.register_secret_source(config_secret_values)
        approvals.register_executor("config.set", config_approved)
        approvals.register_executor("config.delete", config_approved)
        housekeeping.register(approvals.expire_due)
