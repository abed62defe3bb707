from django.urls import path

from tasks import api

urlpatterns = [
    path("projects/<str:project>/components/<str:component>/executions/", api.executions, name="api-executions"),
    path("projects/<str:project>/components/<str:component>/executions/count/", api.ExecutionCount.as_view(), name="api-execution-count"),
    path("projects/<str:project>/components/<str:component>/schedule/", api.ScheduleDetail.as_view(), name="api-schedule"),
    path("executions/<int:execution_id>/", api.ExecutionDetail.as_view(), name="api-execution"),
    path("executions/<int:execution_id>/cancel/", api.ExecutionCancel.as_view(), name="api-execution-cancel"),
    path("executions/<int:execution_id>/logs/", api.ExecutionLogs.as_view(), name="api-execution-logs"),
]
