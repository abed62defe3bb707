import pytest


@pytest.fixture(autouse=True)
def quick_stops(settings):
    settings.ROLLOUT_STOP_GRACE = 1  # busybox httpd as PID 1 ignores SIGTERM
