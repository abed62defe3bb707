from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.authtoken.views import obtain_auth_token

from choreo_site.health import healthz

api = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("", include("environments.api_urls")),
    path("", include("builds.api_urls")),
    path("", include("deployments.api_urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/", include(api)),
    path("hooks/", include("builds.hook_urls")),
    path("", include("environments.urls")),
    path("", include("builds.urls")),
    path("", include("deployments.urls")),
]
