"""`manage.py prepare`: what comes before the platform's processes start (choreo_site.daemons.prepare).

`up` does it itself; under systemd the oneshot unit choreo-prepare runs it before the others.
"""

import sys

from django.core.management.base import BaseCommand

from choreo_site.daemons import NotReady, prepare


class Command(BaseCommand):
    help = "Check the database, Redis and the Docker Engine, migrate, and write the daemons' configuration."

    def handle(self, *args, **options):
        try:
            names = [d.name for d in prepare()]
        except NotReady as exc:
            self.stderr.write(str(exc))
            sys.exit(1)
        self.stdout.write("Ready to start: " + ", ".join(names))
