from django.urls import re_path

from choreo_site.consumers import LogConsumer
from deployments.consumers import RuntimeLogConsumer

websocket_urlpatterns = [
    re_path(r"^ws/logs/(?P<stream>[a-z]+-[0-9]+)/$", LogConsumer.as_asgi()),
    re_path(r"^ws/runtime-logs/(?P<component>[0-9]{1,18})/(?P<environment>[0-9]{1,18})/$", RuntimeLogConsumer.as_asgi()),
]
