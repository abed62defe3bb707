from django.urls import path

from builds import webhooks

urlpatterns = [
    path("<str:project>/<str:component>/", webhooks.receive, name="webhook"),
]
