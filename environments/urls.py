from django.urls import path

from environments import views

urlpatterns = [
    path("", views.projects, name="projects"),
    path("projects/new", views.project_create, name="project-create"),
    path("projects/<str:project>/delete", views.project_delete, name="project-delete"),
    path("projects/<str:project>/environments/", views.environments, name="environments"),
    path("projects/<str:project>/environments/new", views.environment_create, name="environment-create"),
]
