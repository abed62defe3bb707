from django.apps import AppConfig


class ChoreoSiteConfig(AppConfig):
    name = "choreo_site"
    verbose_name = "Platform"

    def ready(self):
        from choreo_site import throttling  # noqa: F401 - counts failed logins (user_login_failed)
