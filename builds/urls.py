from django.urls import path

from builds import views

urlpatterns = [
    path("projects/<str:project>/components/new", views.component_create, name="component-create"),
    path("projects/<str:project>/components/<str:component>/build/", views.build_page, name="build-page"),
    path("projects/<str:project>/components/<str:component>/delete", views.component_delete, name="component-delete"),
    path("projects/<str:project>/components/<str:component>/build/start", views.build_start, name="build-start"),
    path("projects/<str:project>/components/<str:component>/build/rows", views.build_rows, name="build-rows"),
    path("projects/<str:project>/components/<str:component>/build/auto", views.auto_build_toggle, name="auto-build-toggle"),
    path("projects/<str:project>/components/<str:component>/builds/<int:build_id>/", views.build_detail, name="build-detail"),
    path("projects/<str:project>/components/<str:component>/builds/<int:build_id>/cancel", views.build_cancel, name="build-cancel"),
]
