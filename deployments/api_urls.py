from django.urls import path

from deployments import api

urlpatterns = [
    path("projects/<str:project>/components/<str:component>/deploy/", api.deploy, name="api-deploy"),
    path("projects/<str:project>/components/<str:component>/promote/", api.promote, name="api-promote"),
    path("projects/<str:project>/components/<str:component>/rollback/", api.rollback, name="api-rollback"),
    path("projects/<str:project>/components/<str:component>/deployments/", api.DeploymentList.as_view(), name="api-deployments"),
    path("projects/<str:project>/components/<str:component>/logs/", api.RuntimeLogs.as_view(), name="api-runtime-logs"),
    path("projects/<str:project>/components/<str:component>/config/", api.Config.as_view(), name="api-config"),
    path("deployments/<int:deployment_id>/", api.DeploymentDetail.as_view(), name="api-deployment"),
    path("deployments/<int:deployment_id>/logs/", api.DeploymentLogs.as_view(), name="api-deployment-logs"),
]
