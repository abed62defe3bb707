from django.apps import AppConfig


class ChoreoSiteConfig(AppConfig):
    name = "choreo_site"
    verbose_name = "Platform"
