from django.urls import path

from builds import views

urlpatterns = [
    path("<str:project>/<str:component>/", views.webhook, name="webhook"),
]
