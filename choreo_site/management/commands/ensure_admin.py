"""Make sure the superuser `admin` exists.

Its password is ADMIN_PASSWORD, or one generated once and written to
$DATA_DIR/admin-password with mode 0600. Prints where the password is.
"""

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create or update the superuser 'admin'."

    def handle(self, *args, **options):
        password = os.environ.get("ADMIN_PASSWORD", "")
        path = settings.DATA_DIR / "admin-password"
        source = "ADMIN_PASSWORD"
        if not password:
            if not path.exists():
                path.touch(mode=0o600)
                path.write_text(secrets.token_urlsafe(18) + "\n")
            os.chmod(path, 0o600)
            password = path.read_text().strip()
            source = str(path)
        User = get_user_model()
        user, created = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        if created or not user.check_password(password):
            user.set_password(password)
            user.is_staff = user.is_superuser = True
            user.save()
        self.stdout.write(f"superuser admin {'created' if created else 'ready'}; password in {source}")
