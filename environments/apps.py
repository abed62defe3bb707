from django.apps import AppConfig


class EnvironmentsConfig(AppConfig):
    name = "environments"

    def ready(self) -> None:
        from choreo_site import redaction
        from environments.services import config_secret_values

        redaction.register_secret_source(config_secret_values)
