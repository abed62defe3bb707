from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from knox import views as knox_views

from builds.registry_token import registry_token
from choreo_site.api import ObtainToken, PlatformAudit, api_root
from choreo_site.health import healthz
from choreo_site.metrics import metrics_view
from choreo_site.pages import LoginView, profile, token_revoke

api = [
    path("auth/token/", ObtainToken.as_view(), name="api-token"),
    # Revoke the token in use, or all of the user's (django-rest-knox's views).
    path("auth/logout/", knox_views.LogoutView.as_view(), name="api-logout"),
    path("auth/logoutall/", knox_views.LogoutAllView.as_view(), name="api-logout-all"),
    path("", api_root, name="api-root"),
    path("audit/", PlatformAudit.as_view(), name="api-audit"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The docs page is for people: a session, with a redirect to the login page.
    path("docs/", login_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("", include("environments.api_urls")),
    path("", include("builds.api_urls")),
    path("", include("deployments.api_urls")),
    path("", include("tasks.api_urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("profile/", profile, name="profile"),
    path("profile/tokens/<str:token_key>/revoke", token_revoke, name="token-revoke"),
    path("api/", include(api)),
    path("hooks/", include("builds.hook_urls")),
    path("registry/token", registry_token, name="registry-token"),
    path("", include("environments.urls")),
    path("", include("builds.urls")),
    path("", include("deployments.urls")),
    path("", include("tasks.urls")),
]
