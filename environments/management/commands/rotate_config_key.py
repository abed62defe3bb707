"""Rotate the key that encrypts secrets at rest, with the platform running.

With the key file (the default): a new key is put first in the file, so every process
encrypts with it from its next write while the old one still decrypts; every encrypted
value is re-encrypted with the new key; after a grace period (a process may have read the
old file just before), stragglers are re-encrypted; then the old key is dropped.

With CONFIG_ENCRYPTION_KEYS: put a new key first in the list (`--new-key` prints one),
restart the processes, run this command, then drop the old keys from the list.

Running deployments are not touched: their replicas already have their values.
"""

import fcntl
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from environments.keyring import new_key, read_key_file, reencrypt_stale, stale_count, write_key_file


class Command(BaseCommand):
    help = "Rotate the encryption key of secrets at rest and re-encrypt every secret."

    def add_arguments(self, parser):
        parser.add_argument("--new-key", action="store_true", help="Print a new random key and exit (for CONFIG_ENCRYPTION_KEYS).")
        parser.add_argument("--grace", type=float, default=2.0, help="Seconds to wait for processes that read the old key file.")
        parser.add_argument("--keep-old", action="store_true", help="Keep the old key in the key file after re-encrypting.")

    def handle(self, *args, **options):
        if options["new_key"]:
            self.stdout.write(new_key())
            return
        if settings.CONFIG_ENCRYPTION_KEYS:
            self._rotate_env()
        else:
            self._rotate_file(Path(settings.CONFIG_KEY_FILE), options["grace"], options["keep_old"])

    def _rotate_env(self):
        if len(settings.CONFIG_ENCRYPTION_KEYS) < 2:
            raise CommandError(
                "CONFIG_ENCRYPTION_KEYS holds one key: put a new key first (manage.py rotate_config_key --new-key prints one), "
                "keep the old one after it, restart the platform, then run this again."
            )
        count = reencrypt_stale()
        self.stdout.write(f"Re-encrypted {count} value(s) with the first key of CONFIG_ENCRYPTION_KEYS; the other keys can now go.")

    def _rotate_file(self, path: Path, grace: float, keep_old: bool):
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            old = read_key_file(path)
            key = new_key()
            write_key_file(path, [key, *old])
            count = reencrypt_stale()
            time.sleep(grace)
            count += reencrypt_stale()
            left = stale_count()
            if left:
                raise CommandError(f"{left} value(s) are still encrypted with an old key; the old keys stay in {path}. Run this again.")
            if not keep_old:
                write_key_file(path, [key])
        self.stdout.write(f"Rotated the key in {path}: re-encrypted {count} value(s); the old key is {'kept' if keep_old else 'gone'}.")
