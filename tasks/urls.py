from django.urls import path

from tasks import views

C = "projects/<str:project>/components/<str:component>/"

urlpatterns = [
    path(C + "execute/", views.execute_page, name="execute-page"),
    path(C + "execute/run", views.run_now, name="execute-run"),
    path(C + "execute/pause", views.schedule_pause, name="execute-pause"),
    path(C + "executions/<int:execution_id>/", views.execution_detail, name="execution-detail"),
    path(C + "executions/<int:execution_id>/cancel", views.execution_cancel, name="execution-cancel"),
]
