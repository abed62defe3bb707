"""The OCI registry: the embedded Distribution's configuration, and the client calls.

Images are pushed as blobs plus an OCI manifest, addressed by digest
(`<registry>/<project>/<component>@sha256:…`), and tagged with their commit for people
browsing the registry. Only this module talks to the registry.

The embedded registry accepts only tokens the platform signs (Distribution's token
authentication), each naming the repositories it may touch and how. The platform's own
client gets push and delete on the one repository it works on; the Docker Engine gets
pull on the one image it starts; a build gets nothing, so neither a `FROM` nor an
`ADD http://…` in a Dockerfile can read another project's images or list the catalog.
People get pull on the projects they may view, with an API token (`registry_token.py`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings
from dxf import DXF, DXFBase
from dxf.exceptions import DXFAuthInsecureError, DXFError

from choreo_site.processes import child_of_this_process

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"

# Distribution's token authentication: who signs, for which registry, for how long.
TOKEN_ISSUER = "choreo-platform"
TOKEN_SERVICE = "choreo-registry"
TOKEN_SECONDS = 900
PLATFORM_ACTIONS = ("pull", "push", "delete")


class RegistryError(Exception):
    pass


def registry_host() -> str:
    """host:port as it appears in image references."""
    return urlsplit(settings.REGISTRY_URL).netloc


def image_reference(repository: str, digest: str) -> str:
    return f"{registry_host()}/{repository}@{digest}"


def _auth(dxf: DXF, response) -> None:
    dxf.authenticate(settings.REGISTRY_USERNAME, settings.REGISTRY_PASSWORD, response=response)


def _client(repository: str, *, mount_from: str | None = None) -> DXF:
    """A client for the platform's own work on `repository` (and pulling from `mount_from`)."""
    parts = urlsplit(settings.REGISTRY_URL)
    if settings.REGISTRY_EMBEDDED:
        access = {repository: PLATFORM_ACTIONS} | ({mount_from: ("pull",)} if mount_from else {})

        def auth(dxf: DXF, response) -> None:  # a long push outlived its token: sign another
            dxf.token = token(access, subject="platform")

        dxf = DXF(parts.netloc, repository, auth=auth, insecure=True, timeout=120)
        dxf.token = token(access, subject="platform")
        return dxf
    auth = _auth if settings.REGISTRY_USERNAME else None
    verify = settings.REGISTRY_CA_FILE or True
    return DXF(parts.netloc, repository, auth=auth, insecure=parts.scheme == "http", tlsverify=verify, timeout=120)


def repository_of(reference: str) -> str | None:
    """The repository of an image reference into this platform's registry, else None."""
    host, _, rest = reference.partition("/")
    if host != registry_host() or not rest:
        return None
    name = rest.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def engine_auth(reference: str) -> dict | None:
    """What the Docker Engine sends the registry to pull `reference`: with the embedded
    registry, a token that may pull that one repository and nothing else."""
    repository = repository_of(reference)
    if repository is None:
        return None
    if settings.REGISTRY_EMBEDDED:
        return {"registrytoken": token({repository: ("pull",)}, subject="engine")}
    credentials = pull_credentials() or (settings.REGISTRY_USERNAME, settings.REGISTRY_PASSWORD)
    return {"username": credentials[0], "password": credentials[1]} if credentials[0] else None


def pull_credentials() -> tuple[str, str] | None:
    """An external registry's read-only credentials (REGISTRY_PULL_USERNAME), when set."""
    if settings.REGISTRY_PULL_USERNAME:
        return settings.REGISTRY_PULL_USERNAME, settings.REGISTRY_PULL_PASSWORD
    return None


def _failure(action: str, exc: Exception) -> RegistryError:
    if isinstance(exc, DXFAuthInsecureError):
        return RegistryError(f"{action} failed: credentials are only sent over HTTPS; use an https:// REGISTRY_URL")
    return RegistryError(f"{action} failed: {exc}")


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    path: Path
    media_type: str


def push_image(repository: str, *, config: Blob, layers: list[Blob], manifest: bytes, tag: str | None = None) -> str:
    """Push blobs then the manifest; returns the manifest digest. Blobs already there are skipped."""
    dxf = _client(repository)
    try:
        for blob in [*layers, config]:
            if blob.path == Path():  # known to be in the repository already (see blob_available)
                continue
            dxf.push_blob(str(blob.path), digest=blob.digest, check_exists=True)
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        dxf.set_manifest(digest, manifest.decode())
        if tag:
            dxf.set_manifest(tag, manifest.decode())
    except (requests.RequestException, DXFError) as exc:
        raise _failure(f"pushing to {settings.REGISTRY_URL}", exc) from None
    return digest


def blob_available(repository: str, digest: str, *, source_repository: str | None = None) -> bool:
    """Whether `repository` has the blob, mounting it from `source_repository` if need be."""
    dxf = _client(repository, mount_from=source_repository)
    try:
        dxf.blob_size(digest)
        return True
    except requests.HTTPError:
        pass
    except (requests.RequestException, DXFError):
        return False
    if source_repository and source_repository != repository:
        try:
            dxf.mount_blob(source_repository, digest)
            dxf.blob_size(digest)
            return True
        except (requests.RequestException, DXFError):
            return False
    return False


def manifest_exists(repository: str, digest: str) -> bool:
    try:
        _client(repository).head_manifest_and_response(digest)
        return True
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return False
        raise RegistryError(f"registry {settings.REGISTRY_URL} answered {exc}") from None
    except (requests.RequestException, DXFError) as exc:
        raise _failure(f"reading {repository}@{digest} from {settings.REGISTRY_URL}", exc) from None


def delete_manifest(repository: str, digest: str) -> None:
    """Delete a manifest by digest (its blobs go at the registry's next garbage collection)."""
    try:
        _client(repository).del_alias(digest)
    except requests.HTTPError as exc:
        if exc.response is None or exc.response.status_code != 404:
            raise RegistryError(f"deleting {repository}@{digest} failed: {exc}") from None
    except (requests.RequestException, DXFError) as exc:
        raise _failure(f"deleting {repository}@{digest}", exc) from None


def repository_purge(repository: str, digests=()) -> int:
    """Delete every manifest of `repository`: those of `digests` and those its tags name.
    Returns how many were deleted; their blobs go at the next garbage collection."""
    targets = [*digests, *list_tags(repository)]
    for target in targets:
        delete_manifest(repository, target)
    return len(targets)


def list_repositories() -> list[str]:
    """Every repository in the registry (the catalog)."""
    parts = urlsplit(settings.REGISTRY_URL)
    if settings.REGISTRY_EMBEDDED:
        dxf = DXFBase(parts.netloc, insecure=True, timeout=120)
        dxf.token = token({}, subject="platform", catalog=True)
    else:
        auth = _auth if settings.REGISTRY_USERNAME else None
        dxf = DXFBase(parts.netloc, auth=auth, insecure=parts.scheme == "http", tlsverify=settings.REGISTRY_CA_FILE or True, timeout=120)
    try:
        return dxf.list_repos()
    except (requests.RequestException, DXFError) as exc:
        raise _failure(f"listing the repositories of {settings.REGISTRY_URL}", exc) from None


COLLECT_TICK = 5  # seconds between the collector's ticks


def collect_garbage(timeout: float = 3600, tick: Callable[[], None] | None = None) -> str:
    """Delete the embedded registry's blobs that no manifest references; returns the
    collector's summary. The caller makes sure nothing is being pushed meanwhile
    (builds.services.registry_collect): a blob uploaded before its manifest would go too.
    `tick` is called every few seconds while the collector runs; what it raises stops it."""
    binary = shutil.which("docker-registry") or shutil.which("registry")
    config = settings.DATA_DIR / "registry" / "config.yml"
    if not settings.REGISTRY_EMBEDDED or binary is None or not config.exists():
        raise RegistryError("only the embedded registry's garbage is collected here: run your registry's own collector")
    if not (embedded_storage(settings.DATA_DIR) / "docker" / "registry" / "v2" / "repositories").is_dir():
        return "nothing stored yet"  # the collector fails on a registry nothing was ever pushed to
    # It dies with its worker: the builds' hold (a lease) then ends while nothing sweeps.
    collector = subprocess.Popen(
        [binary, "garbage-collect", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=child_of_this_process(),
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                stdout, stderr = collector.communicate(timeout=COLLECT_TICK)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise RegistryError(f"the registry's garbage collection took more than {timeout:.0f} s") from None
                if tick is not None:
                    tick()
    except BaseException:
        collector.kill()
        collector.wait()
        raise
    if collector.returncode != 0:
        raise RegistryError(f"the registry's garbage collection failed: {(stderr or stdout).strip()[-500:]}")
    # Its last line: "N blobs marked, M blobs and K manifests eligible for deletion".
    lines = [line for line in stdout.splitlines() if "marked" in line and "eligible for deletion" in line]
    return lines[-1].strip() if lines else stdout.strip().rsplit("\n", 1)[-1]


def list_tags(repository: str) -> list[str]:
    try:
        return _client(repository).list_aliases()
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return []
        raise RegistryError(f"listing the tags of {repository} failed: {exc}") from None
    except (requests.RequestException, DXFError) as exc:
        raise _failure(f"listing the tags of {repository}", exc) from None


def is_up(timeout: float = 2.0) -> bool:
    try:
        response = requests.get(settings.REGISTRY_URL.rstrip("/") + "/v2/", timeout=timeout, verify=settings.REGISTRY_CA_FILE or True)
    except requests.RequestException:
        return False
    return response.status_code in (200, 401)


def embedded_storage(data_dir: Path) -> Path:
    """Where the embedded registry keeps its blobs and manifests."""
    return data_dir / "registry" / "storage"


def embedded_config(data_dir: Path, port: int) -> Path:
    """Write the embedded registry's configuration; returns its path."""
    root = data_dir / "registry"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}, "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(embedded_storage(data_dir))},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": True, "age": "24h", "interval": "1h", "dryrun": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "auth": {
            "token": {
                "realm": settings.PUBLIC_URL.rstrip("/") + "/registry/token",
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(signing_certificate(data_dir)),
            }
        },
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }
    path = root / "config.yml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


# Tokens. The registry trusts the certificate's key; the key itself stays in DATA_DIR.


def _signing_paths(data_dir: Path) -> tuple[Path, Path]:
    return data_dir / "registry" / "token-signing.key", data_dir / "registry" / "token-signing.crt"


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def signing_certificate(data_dir: Path) -> Path:
    """The certificate the registry checks tokens against; made, with its key, the first time."""
    key_path, cert_path = _signing_paths(data_dir)
    if key_path.exists() and cert_path.exists():
        return cert_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "choreo registry tokens")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_private(key_path, pem)
    _write_private(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path


def _key_id(public_key) -> str:
    """The key's id as Distribution computes it (libtrust): the token's `kid` names it."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@functools.lru_cache(maxsize=4)
def _signing_key(path: Path, mtime_ns: int):
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    return key, _key_id(key.public_key())


def token(access: dict[str, tuple[str, ...]], *, subject: str, catalog: bool = False) -> str:
    """A token for the embedded registry granting `access` ({repository: actions}), and
    reading the catalog if `catalog`."""
    key_path, _ = _signing_paths(settings.DATA_DIR)
    try:
        key, key_id = _signing_key(key_path, key_path.stat().st_mtime_ns)
    except FileNotFoundError:
        raise RegistryError(f"the registry's token key {key_path} is missing: start the platform with `make up`") from None
    now = int(time.time())
    claims = {
        "iss": TOKEN_ISSUER,
        "sub": subject,
        "aud": TOKEN_SERVICE,
        "iat": now,
        "nbf": now - 10,
        "exp": now + TOKEN_SECONDS,
        "jti": secrets.token_hex(16),
        "access": [{"type": "repository", "name": name, "actions": list(actions)} for name, actions in access.items()],
    }
    if catalog:
        claims["access"].append({"type": "registry", "name": "catalog", "actions": ["*"]})
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": key_id})
