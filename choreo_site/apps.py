from django.apps import AppConfig


class ChoreoSiteConfig(AppConfig):
    name = "choreo_site"
    verbose_name = "Platform"

    def ready(self):
        from choreo_site import audit, throttling  # noqa: F401 - login signals: counted, and audited
