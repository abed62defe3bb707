"""Reproducible image assembly: from `docker save` output to OCI blobs and a manifest.

The legacy builder stamps build times into the image config and leaves file mtimes from
the moment of the build. This rewrites both, so that the same commit and inputs always
give the same bytes, hence the same digest:
- every mtime later than SOURCE_DATE_EPOCH (the commit time) is clamped to it, owner
  names are dropped (numeric ids stay), access and change times are removed;
- layers are gzip-compressed with a fixed header and level;
- the config loses the builder's host-specific fields and its times become the epoch.
The same pass scans each file for committed private keys and credentials.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from builds.registry import MANIFEST_TYPE, Blob
from builds.workspace import create_directory, create_file

CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
GZIP_LEVEL = 6
SCAN_MAX_FILE = 8 * 1024 * 1024

# What a scan flags: things that must never ship inside an image.
SECRET_PATTERNS = [
    # A whole PEM block, not the bare marker that TLS libraries carry as a constant.
    ("private key", re.compile(rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]{64}")),
    ("AWS access key id", re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
]


@dataclass
class Finding:
    path: str
    kind: str


@dataclass
class AssembledImage:
    config: Blob
    layers: list[Blob]
    manifest: bytes
    findings: list[Finding] = field(default_factory=list)
    reused: int = 0  # layers taken from the registry as earlier builds normalized and scanned them

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    @property
    def size(self) -> int:
        return self.config.size + sum(layer.size for layer in self.layers)


class _HashingWriter(io.RawIOBase):
    """Counts and hashes what passes through on its way to `target`."""

    def __init__(self, target):
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.target is not None:
            self.target.write(data)
        return len(data)


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _scan(path: str, data: bytes, findings: list[Finding]) -> None:
    for kind, pattern in SECRET_PATTERNS:
        if pattern.search(data):
            findings.append(Finding(path, kind))


def normalize_layer(src, dest: Path, *, epoch: int | None, findings: list[Finding]) -> tuple[Blob, str]:
    """Rewrite one layer tar from `src` into gzip at `dest`; returns (blob, diff_id).

    With `epoch` None the mtimes are kept: for base-image layers, which the build did not
    write and which are already the same bytes wherever that base image is.
    """
    with create_file(dest) as out:
        compressed = _HashingWriter(out)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=GZIP_LEVEL, mtime=0) as gz:
            uncompressed = _HashingWriter(gz)
            with (
                tarfile.open(fileobj=src, mode="r|") as tin,
                tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tout,
            ):
                for member in tin:
                    member.mtime = int(member.mtime) if epoch is None else min(int(member.mtime), epoch)
                    member.uname = member.gname = ""
                    member.pax_headers = {k: v for k, v in member.pax_headers.items() if k not in ("atime", "ctime", "mtime")}
                    if member.isreg():
                        fileobj = tin.extractfile(member)
                        if member.size <= SCAN_MAX_FILE:
                            data = fileobj.read()
                            _scan(member.name, data, findings)
                            fileobj = io.BytesIO(data)
                        tout.addfile(member, fileobj)
                    else:
                        tout.addfile(member)
    blob = Blob("sha256:" + compressed.sha.hexdigest(), compressed.size, dest, LAYER_TYPE)
    return blob, "sha256:" + uncompressed.sha.hexdigest()


def normalize_config(raw: bytes, *, epoch: int, diff_ids: list[str]) -> bytes:
    config = json.loads(raw)
    created = iso(epoch)
    config["created"] = created
    for entry in config.get("history", []):
        entry["created"] = created
    for key in ("container", "container_config", "docker_version", "id", "parent"):
        config.pop(key, None)
    inner = config.get("config") or {}
    # The parent image id and the build container's host name change from build to build.
    for key in ("Image", "Hostname"):
        inner.pop(key, None)
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


class LayerCache:
    """Remembers what a layer normalizes to, by the Engine's diff_id and the epoch its
    mtimes were clamped to (None: kept), with what the scan found in it.

    A base layer is the same for every build FROM that image, and a source build's
    dependency layer is the same for every commit with the same lock file: each is
    normalized and scanned once, and later builds skip it when the registry already holds
    the blob. A change to how layers are normalized changes VERSION, so that an older
    entry is never taken for what this code would make.
    """

    VERSION = 2

    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, source_diff_id: str, epoch: int | None) -> Path:
        name = f"v{self.VERSION}-{source_diff_id.replace(':', '-')}-{'kept' if epoch is None else epoch}"
        return self.directory / f"{name}.json"

    def get(self, source_diff_id: str, epoch: int | None) -> tuple[Blob, str, str, list[Finding]] | None:
        """(blob without a path, normalized diff_id, repository it was pushed to, findings)."""
        try:
            data = json.loads(self._path(source_diff_id, epoch).read_text())
            blob = Blob(data["digest"], data["size"], Path(), LAYER_TYPE)
            return blob, data["diff_id"], data["repository"], [Finding(path, kind) for path, kind in data["findings"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, source_diff_id: str, epoch: int | None, blob: Blob, diff_id: str, repository: str, findings: list[Finding]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(source_diff_id, epoch)
        entry = {
            "digest": blob.digest,
            "size": blob.size,
            "diff_id": diff_id,
            "repository": repository,
            "findings": [[f.path, f.kind] for f in findings],
        }
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry))
        tmp.rename(path)


def assemble(
    saved_tar: Path,
    workdir: Path,
    *,
    epoch: int,
    annotations: dict[str, str],
    base_diff_ids: set[str] = frozenset(),
    cache: LayerCache | None = None,
    repository: str = "",
    have_blob=lambda digest, source_repository: False,
    fixed_layers: int = 0,
    fixed_epoch: int = 0,
) -> AssembledImage:
    """Turn a `docker save` archive of one image into normalized OCI blobs in `workdir`.

    Layers whose Engine diff_id is in `base_diff_ids` come from base images and keep their
    mtimes. The first `fixed_layers` layers the build made have their mtimes clamped to
    `fixed_epoch` instead of `epoch`: a source build's dependency layers, which must be the
    same whatever the commit for a code-only change to reuse them.

    Both kinds are looked up in `cache` first; a cached layer whose blob the registry has
    for `repository` (`have_blob`, which may mount it from the repository it was first
    pushed to) is not read at all, its Blob has no path, and its findings are the ones
    its first scan made.
    """
    create_directory(workdir)
    findings: list[Finding] = []
    with tarfile.open(saved_tar) as archive:
        index = json.load(archive.extractfile("manifest.json"))
        if len(index) != 1:
            raise ValueError(f"expected one image in the saved archive, found {len(index)}")
        entry = index[0]
        raw_config = archive.extractfile(entry["Config"]).read()
        source_diff_ids = json.loads(raw_config)["rootfs"]["diff_ids"]
        layers: list[Blob] = []
        diff_ids: list[str] = []
        made = 0  # layers the build made so far
        reused = 0
        for i, (name, source) in enumerate(zip(entry["Layers"], source_diff_ids, strict=True)):
            is_base = source in base_diff_ids
            fixed = not is_base and made < fixed_layers
            layer_epoch = None if is_base else (fixed_epoch if fixed else epoch)
            made += 0 if is_base else 1
            cacheable = cache is not None and (is_base or fixed)
            cached = cache.get(source, layer_epoch) if cacheable else None
            if cached and have_blob(cached[0].digest, cached[2]):
                blob, diff_id, _, found = cached
                findings += found
                reused += 1
            else:
                found = []
                blob, diff_id = normalize_layer(archive.extractfile(name), workdir / f"layer-{i}.tar.gz", epoch=layer_epoch, findings=found)
                findings += found
                if cacheable:
                    cache.put(source, layer_epoch, blob, diff_id, repository, found)
            layers.append(blob)
            diff_ids.append(diff_id)
        config_bytes = normalize_config(raw_config, epoch=epoch, diff_ids=diff_ids)
    config_path = workdir / "config.json"
    with create_file(config_path) as out:
        out.write(config_bytes)
    config = Blob("sha256:" + hashlib.sha256(config_bytes).hexdigest(), len(config_bytes), config_path, CONFIG_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": LAYER_TYPE, "digest": b.digest, "size": b.size} for b in layers],
        "annotations": dict(sorted(annotations.items())),
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return AssembledImage(config, layers, manifest_bytes, findings, reused)


def write_stream(chunks: Iterable[bytes], dest: Path) -> Path:
    with create_file(dest) as out:
        for chunk in chunks:
            out.write(chunk)
    return dest
