from django.urls import re_path

from choreo_site.consumers import LogConsumer

websocket_urlpatterns = [
    re_path(r"^ws/logs/(?P<stream>[a-z]+-[0-9]+)/$", LogConsumer.as_asgi()),
]
