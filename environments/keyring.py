"""The keys that encrypt secrets at rest: configuration secrets and webhook secrets.

django-cryptography's `encrypt()` fields do the encryption (AES-256-CBC with an HMAC, its
Fernet variant); this module only hands them their keys. The keys never sit in the
database: they come from CONFIG_ENCRYPTION_KEYS, or else from the key file
(DATA_DIR/config-key, mode 0600, one key per line).

The first key encrypts; every key decrypts. That is what lets `manage.py rotate_config_key`
re-encrypt row by row while the web server and the workers keep running: each process
notices a new key file by its identity and modification time before every use, so nothing
has to restart. Values written before the platform had its own key were encrypted with
django-cryptography's default (derived from SECRET_KEY); that key still decrypts, and the
first rotation re-encrypts them.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from django.conf import settings
from django_cryptography.core.signing import BadSignature, FernetSigner, SignatureExpired
from django_cryptography.fields import encrypt
from django_cryptography.utils.crypto import FernetBytes, InvalidToken, pbkdf2

# A random key needs no stretching; the iterations only follow django-cryptography's habit.
_ITERATIONS = 30_000


class KeyUnavailable(Exception):
    """No key decrypts a value: the key file or CONFIG_ENCRYPTION_KEYS lost a key still in use."""


def new_key() -> str:
    return secrets.token_urlsafe(32)


def _fernet(key: str) -> FernetBytes:
    encryption = pbkdf2(key, b"choreo.keyring.encrypt", _ITERATIONS)
    signing = pbkdf2(key, b"choreo.keyring.sign", _ITERATIONS)
    return FernetBytes(encryption, FernetSigner(signing))


def read_key_file(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def write_key_file(path: Path, keys: list[str]) -> None:
    """Replace the key file atomically, mode 0600: a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(k + "\n" for k in keys))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class KeyRing:
    """What an encrypted field calls instead of a single FernetBytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._fernets: list[FernetBytes] = []
        self._derived: dict[str, FernetBytes] = {}

    # Model fields are deep-copied by Django (model inheritance, migrations state); every
    # copy must keep using this one ring.
    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    def keys(self) -> list[str]:
        if settings.CONFIG_ENCRYPTION_KEYS:
            return list(settings.CONFIG_ENCRYPTION_KEYS)
        return read_key_file(Path(settings.CONFIG_KEY_FILE))

    def _current(self) -> list[FernetBytes]:
        if settings.CONFIG_ENCRYPTION_KEYS:
            stamp: tuple = ("env", tuple(settings.CONFIG_ENCRYPTION_KEYS))
        else:
            st = os.stat(settings.CONFIG_KEY_FILE)
            stamp = ("file", st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                keys = self.keys()
                if not keys:
                    raise KeyUnavailable(f"{settings.CONFIG_KEY_FILE} holds no key")
                for key in keys:
                    if key not in self._derived:
                        self._derived[key] = _fernet(key)
                self._fernets = [self._derived[k] for k in keys]
                self._stamp = stamp
            return self._fernets

    def encrypt(self, data: bytes) -> bytes:
        return self._current()[0].encrypt(data)

    def decrypt(self, data: bytes, ttl: int | None = None) -> bytes:
        for fernet in [*self._current(), _legacy()]:
            try:
                return fernet.decrypt(data, ttl)
            except SignatureExpired:
                raise
            except (BadSignature, InvalidToken, ValueError):
                continue
        raise KeyUnavailable("no configured key decrypts this value")

    def is_current(self, data: bytes) -> bool:
        """Whether `data` was encrypted with the first key (what a rotation checks)."""
        try:
            self._current()[0].decrypt(data)
            return True
        except (BadSignature, InvalidToken, ValueError):
            return False


_legacy_fernet: FernetBytes | None = None


def _legacy() -> FernetBytes:
    global _legacy_fernet
    if _legacy_fernet is None:
        _legacy_fernet = FernetBytes()
    return _legacy_fernet


KEYRING = KeyRing()


def sealed(field):
    """An encrypted model field (django-cryptography's `encrypt`) that uses the key ring.

    It deconstructs to this function, so the models that migrations rebuild (historical
    models in a data migration) use the ring as well."""
    field = encrypt(field)
    field._fernet = KEYRING
    field.__class__ = _sealed_class(type(field))
    return field


_SEALED_CLASSES: dict[type, type] = {}


def _sealed_class(encrypted: type) -> type:
    base = encrypted.base_class

    def deconstruct(self):
        name, _, args, kwargs = base.deconstruct(self)
        return name, f"{sealed.__module__}.{sealed.__name__}", [base(*args, **kwargs)], {}

    def clone(self):
        _, _, args, _ = self.deconstruct()
        return sealed(*args)

    return _SEALED_CLASSES.setdefault(encrypted, type(f"Sealed{base.__name__}", (encrypted,), {"deconstruct": deconstruct, "clone": clone}))


def sealed_fields() -> list[tuple[type, object]]:
    """Every model field that the ring encrypts, in every app."""
    from django.apps import apps

    return [
        (model, field) for model in apps.get_models() for field in model._meta.concrete_fields if getattr(field, "_fernet", None) is KEYRING
    ]


def _stale(model, field) -> list:
    """Primary keys of rows whose value is not encrypted with the first key."""
    from django.db import connection

    table, column, pk = model._meta.db_table, field.column, model._meta.pk.column
    with connection.cursor() as cursor:
        q = connection.ops.quote_name
        cursor.execute(f"SELECT {q(pk)}, {q(column)} FROM {q(table)} WHERE {q(column)} IS NOT NULL")  # noqa: S608 (names from the models)
        return [ident for ident, raw in cursor.fetchall() if not KEYRING.is_current(bytes(raw))]


def reencrypt_stale() -> int:
    """Re-encrypt, row by row, every value not yet encrypted with the first key. Each row
    is read (any key decrypts) and written back (the first key encrypts) under a row lock,
    so a concurrent change of the same row is never overwritten with an older value."""
    from django.db import transaction

    count = 0
    for model, field in sealed_fields():
        for ident in _stale(model, field):
            with transaction.atomic():
                row = model.objects.select_for_update().filter(pk=ident).only("pk", field.name).first()
                if row is not None:
                    model.objects.filter(pk=ident).update(**{field.name: getattr(row, field.name)})
                    count += 1
    return count


def stale_count() -> int:
    return sum(len(_stale(model, field)) for model, field in sealed_fields())
