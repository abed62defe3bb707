from django.urls import path

from deployments import views

urlpatterns = [
    # The project's home: its pipeline, components and environments at a glance.
    path("projects/<str:project>/", views.pipeline_page, name="project"),
    path("projects/<str:project>/components/<str:component>/deploy/", views.deploy_page, name="deploy-page"),
    path("projects/<str:project>/components/<str:component>/logs/", views.logs_page, name="logs-page"),
    path("projects/<str:project>/components/<str:component>/deploy/start", views.deploy, name="deploy-start"),
    path("projects/<str:project>/components/<str:component>/deploy/promote", views.promote, name="deploy-promote"),
    path("projects/<str:project>/components/<str:component>/deploy/rollback", views.rollback, name="deploy-rollback"),
    path("projects/<str:project>/components/<str:component>/deploy/auto", views.auto_deploy_toggle, name="auto-deploy-toggle"),
    path(
        "projects/<str:project>/components/<str:component>/deploy/approvals/<int:approval_id>/<str:decision>",
        views.approval_decide,
        name="approval-decide",
    ),
    path("projects/<str:project>/components/<str:component>/deploy/config", views.config_set, name="config-set"),
    path("projects/<str:project>/components/<str:component>/deploy/config/remove", views.config_delete, name="config-delete"),
    path(
        "projects/<str:project>/components/<str:component>/deployments/<int:deployment_id>/",
        views.deployment_detail,
        name="deployment-detail",
    ),
]
