from django.urls import path

from environments import views

urlpatterns = [
    path("", views.projects, name="projects"),
    path("projects/new", views.project_create, name="project-create"),
    path("projects/<str:project>/delete", views.project_delete, name="project-delete"),
    path("projects/<str:project>/environments/", views.environments, name="environments"),
    path("projects/<str:project>/environments/new", views.environment_create, name="environment-create"),
    path("projects/<str:project>/environments/<str:environment>/protect", views.environment_protect, name="environment-protect"),
    path("projects/<str:project>/environments/<str:environment>/update", views.environment_update, name="environment-update"),
    path("projects/<str:project>/environments/<str:environment>/delete", views.environment_delete, name="environment-delete"),
    path("projects/<str:project>/members/", views.members, name="members"),
    path("projects/<str:project>/members/set", views.member_set, name="member-set"),
    path("projects/<str:project>/members/remove", views.member_remove, name="member-remove"),
    path("projects/<str:project>/audit/", views.audit, name="audit"),
]
