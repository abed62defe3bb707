from django.urls import path

from builds import api

urlpatterns = [
    path("projects/<str:project>/components/", api.ComponentList.as_view(), name="api-components"),
    path("projects/<str:project>/components/<str:component>/", api.ComponentDetail.as_view(), name="api-component"),
    path("projects/<str:project>/components/<str:component>/builds/", api.build_list, name="api-builds"),
    path("projects/<str:project>/components/<str:component>/events/", api.PushEventList.as_view(), name="api-push-events"),
    path("builds/<int:build_id>/", api.BuildDetail.as_view(), name="api-build"),
    path("builds/<int:build_id>/logs/", api.BuildLogs.as_view(), name="api-build-logs"),
    path("builds/<int:build_id>/cancel/", api.BuildCancel.as_view(), name="api-build-cancel"),
]
