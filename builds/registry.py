"""The OCI registry: the embedded Distribution's configuration, and the client calls.

Images are pushed as blobs plus an OCI manifest, addressed by digest
(`<registry>/<project>/<component>@sha256:…`), and tagged with their commit for people
browsing the registry. Only this module talks to the registry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
from django.conf import settings
from dxf import DXF
from dxf.exceptions import DXFAuthInsecureError, DXFError

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


class RegistryError(Exception):
    pass


def registry_host() -> str:
    """host:port as it appears in image references."""
    return urlsplit(settings.REGISTRY_URL).netloc


def image_reference(repository: str, digest: str) -> str:
    return f"{registry_host()}/{repository}@{digest}"


def _auth(dxf: DXF, response) -> None:
    dxf.authenticate(settings.REGISTRY_USERNAME, settings.REGISTRY_PASSWORD, response=response)


def _client(repository: str) -> DXF:
    parts = urlsplit(settings.REGISTRY_URL)
    auth = _auth if settings.REGISTRY_USERNAME else None
    verify = settings.REGISTRY_CA_FILE or True
    return DXF(parts.netloc, repository, auth=auth, insecure=parts.scheme == "http", tlsverify=verify, timeout=120)


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
    dxf = _client(repository)
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


def list_tags(repository: str) -> list[str]:
    try:
        return _client(repository).list_aliases()
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return []
        raise


def is_up(timeout: float = 2.0) -> bool:
    try:
        response = requests.get(settings.REGISTRY_URL.rstrip("/") + "/v2/", timeout=timeout, verify=settings.REGISTRY_CA_FILE or True)
    except requests.RequestException:
        return False
    return response.status_code in (200, 401)


def embedded_config(data_dir: Path, port: int) -> Path:
    """Write the embedded registry's configuration; returns its path."""
    root = data_dir / "registry"
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}, "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "storage")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": True, "age": "24h", "interval": "1h", "dryrun": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }
    path = root / "config.yml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path
