"""Reproducible image assembly: from `docker save` output to OCI blobs and a manifest.

An image may be assembled from a stack of the Engine's images (a source build's runtime
stage, then its code FROM scratch): their layers in order, and the lowest one's config with
the others' labels and history.

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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

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


def normalize_config(config: dict, *, epoch: int, diff_ids: list[str]) -> bytes:
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

    def config(self, image_id: str) -> bytes | None:
        """The raw config of a local image exported earlier, when it is still what the id
        names (an Engine image id is the digest of its config)."""
        try:
            raw = (self.directory / f"config-{image_id.replace(':', '-')}.json").read_bytes()
        except OSError:
            return None
        return raw if "sha256:" + hashlib.sha256(raw).hexdigest() == image_id else None

    def put_config(self, image_id: str, raw: bytes) -> None:
        if "sha256:" + hashlib.sha256(raw).hexdigest() != image_id:
            return  # not content-addressed after all: never served, so not kept
        self._write(self.directory / f"config-{image_id.replace(':', '-')}.json", raw)

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
        entry = {
            "digest": blob.digest,
            "size": blob.size,
            "diff_id": diff_id,
            "repository": repository,
            "findings": [[f.path, f.kind] for f in findings],
        }
        self._write(self._path(source_diff_id, epoch), json.dumps(entry).encode())

    def _write(self, path: Path, data: bytes) -> None:
        """Whole or not at all: a concurrent build reads the old entry or the new one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.rename(path)


@dataclass
class ImagePart:
    """One of the Engine's images in the stack an image is assembled from, lowest first.

    `layer(i)` reads its i-th layer tar; None when the image was not exported, and then
    every one of its layers must come from the cache. The layers a build made in a
    `dependencies` part hold no code: their mtimes are clamped to `fixed_epoch`, not to the
    commit's time, and they are cached."""

    raw_config: bytes
    layer: Callable[[int], IO[bytes]] | None = None
    dependencies: bool = False

    @property
    def diff_ids(self) -> list[str]:
        return json.loads(self.raw_config)["rootfs"]["diff_ids"]


class LayersNotExported(Exception):
    """A layer of a part that was not exported is not in the cache (or not in the registry):
    export the image and assemble again."""


@contextmanager
def saved_image(path: Path, *, dependencies: bool = False) -> Iterator[ImagePart]:
    """The image in a `docker save` archive, readable while the context lasts."""
    with tarfile.open(path) as archive:
        index = json.load(archive.extractfile("manifest.json"))
        if len(index) != 1:
            raise ValueError(f"expected one image in the saved archive, found {len(index)}")
        entry = index[0]
        yield ImagePart(archive.extractfile(entry["Config"]).read(), lambda i: archive.extractfile(entry["Layers"][i]), dependencies)


def stacked_config(parts: list[ImagePart]) -> dict:
    """The lowest part's config, with the labels and the history of the parts above it (a
    stage FROM scratch has no settings of its own to give)."""
    config = json.loads(parts[0].raw_config)
    for part in parts[1:]:
        upper = json.loads(part.raw_config)
        labels = (upper.get("config") or {}).get("Labels") or {}
        if labels:
            inner = config.setdefault("config", {})
            inner["Labels"] = {**(inner.get("Labels") or {}), **labels}
        config["history"] = config.get("history", []) + upper.get("history", [])
    return config


def assemble(
    parts: list[ImagePart],
    workdir: Path,
    *,
    epoch: int,
    annotations: dict[str, str],
    base_diff_ids: set[str] = frozenset(),
    cache: LayerCache | None = None,
    repository: str = "",
    have_blob=lambda digest, source_repository: False,
    fixed_epoch: int = 0,
) -> AssembledImage:
    """Turn the stack of `parts` into normalized OCI blobs in `workdir`.

    Layers whose Engine diff_id is in `base_diff_ids` come from base images and keep their
    mtimes. The layers the build made in a `dependencies` part have their mtimes clamped to
    `fixed_epoch` instead of `epoch`: a source build's dependency layers, which must be the
    same whatever the commit for a code-only change to reuse them.

    Both kinds are looked up in `cache` first; a cached layer whose blob the registry has
    for `repository` (`have_blob`, which may mount it from the repository it was first
    pushed to) is not read at all, its Blob has no path, and its findings are the ones
    its first scan made. Raises LayersNotExported, before writing anything, when a part
    that was not exported has a layer that must be read.
    """
    steps = []  # (part, index, source diff_id, epoch, cacheable, cached entry or None)
    for part in parts:
        for i, source in enumerate(part.diff_ids):
            is_base = source in base_diff_ids
            fixed = part.dependencies and not is_base
            layer_epoch = None if is_base else (fixed_epoch if fixed else epoch)
            cacheable = cache is not None and (is_base or fixed)
            cached = cache.get(source, layer_epoch) if cacheable else None
            if not (cached and have_blob(cached[0].digest, cached[2])):
                cached = None
                if part.layer is None:
                    raise LayersNotExported(source)
            steps.append((part, i, source, layer_epoch, cacheable, cached))
    create_directory(workdir)
    findings: list[Finding] = []
    layers: list[Blob] = []
    diff_ids: list[str] = []
    reused = 0
    for n, (part, i, source, layer_epoch, cacheable, cached) in enumerate(steps):
        if cached:
            blob, diff_id, _, found = cached
            reused += 1
        else:
            found = []
            blob, diff_id = normalize_layer(part.layer(i), workdir / f"layer-{n}.tar.gz", epoch=layer_epoch, findings=found)
            if cacheable:
                cache.put(source, layer_epoch, blob, diff_id, repository, found)
        findings += found
        layers.append(blob)
        diff_ids.append(diff_id)
    config_bytes = normalize_config(stacked_config(parts), epoch=epoch, diff_ids=diff_ids)
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
