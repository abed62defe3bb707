from django.urls import path

from environments import api

urlpatterns = [
    path("projects/", api.ProjectList.as_view(), name="api-projects"),
    path("projects/<str:project>/", api.ProjectDetail.as_view(), name="api-project"),
    path("projects/<str:project>/environments/", api.EnvironmentList.as_view(), name="api-environments"),
]
