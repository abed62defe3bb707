"""A build's workspace: a directory of the platform's own, made fresh for each build.

    WORKSPACE_DIR/build-<id>/      mode 0700, made new (never reused, never a link)
        src/                       the checkout: the repository's files, hostile
        image.tar                  what the Engine saved
        runtime.tar                a source build's runtime stage, when it had to be saved too
        oci/                       the normalized blobs

Nothing the platform writes lives inside the checkout: a repository may commit links
named like any file the pipeline writes. Every file the pipeline creates is opened with
O_EXCL and O_NOFOLLOW, so it is a new file, never an existing one or a link's target.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def checkout(self) -> Path:
        return self.root / "src"

    @property
    def saved_image(self) -> Path:
        return self.root / "image.tar"

    @property
    def saved_runtime_image(self) -> Path:
        return self.root / "runtime.tar"

    @property
    def blobs(self) -> Path:
        return self.root / "oci"


def workspace_for(build_id: int) -> Workspace:
    return Workspace(settings.WORKSPACE_DIR / f"build-{int(build_id)}")


def workspace_create(build_id: int) -> Workspace:
    """A fresh workspace for the build; what a crashed worker left there is removed first."""
    workspace = workspace_for(build_id)
    workspace_remove(workspace)
    settings.WORKSPACE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    workspace.root.mkdir(mode=0o700)
    return workspace


def workspace_remove(workspace: Workspace) -> None:
    # rmtree never follows links: a link in the checkout is removed, not its target.
    shutil.rmtree(workspace.root, ignore_errors=True)


def create_file(path: Path) -> BinaryIO:
    """Open a new file for writing: refuses an existing file, and a link of any kind."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")


def create_directory(path: Path) -> Path:
    """Make a new directory (not an existing one, not through a link)."""
    path.mkdir(mode=0o700)
    return path
