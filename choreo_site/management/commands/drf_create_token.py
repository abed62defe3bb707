"""`manage.py drf_create_token USER`: make an API token (SPEC's command), stored hashed.

Prints `Generated token <key> for user <user>`, as DRF's command did; the key is shown
this once. `--reset` revokes the user's other tokens first; `--days` sets the lifetime
(default API_TOKEN_DAYS; 0: never expires).
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from choreo_site.tokens import token_create, token_revoke_all


class Command(BaseCommand):
    help = "Make an API token for a user (stored hashed; shown once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("-r", "--reset", action="store_true", help="Revoke the user's other tokens first.")
        parser.add_argument("--days", type=int, default=None, help="Lifetime in days (default API_TOKEN_DAYS; 0: never expires).")

    def handle(self, *args, username: str, reset: bool = False, days: int | None = None, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if days is not None and days < 0:
            raise CommandError("--days must be 0 or more.")
        if reset:
            token_revoke_all(user=user)
        key, expiry = token_create(user=user, days=days)
        self.stdout.write(f"Generated token {key} for user {username}" + (f" (expires {expiry:%Y-%m-%d %H:%M} UTC)" if expiry else ""))
