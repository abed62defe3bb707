"""gunicorn's settings for the web tier's WSGI server (see choreo_site/webfront.py).

`manage.py up` passes the socket and the number of workers on the command line.
"""

import os

from prometheus_client import multiprocess

from choreo_site import processes

worker_class = "gthread"
# A few threads per worker, so one slow request (a Git remote on the Build page) does not
# stall a whole process.
threads = 4
# Requests on a unix socket from the front: keep its connections open between requests.
keepalive = 30
graceful_timeout = 10
timeout = 330
accesslog = None
errorlog = "-"
loglevel = "warning"


def post_fork(server, worker):
    # A worker dies with the master, however the master ends.
    processes.die_with_parent()


def child_exit(server, worker):
    # Drop a dead worker's live gauges from the figures /metrics merges (choreo_site/metrics.py).
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
