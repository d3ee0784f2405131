"""An exclusive lock between processes on one machine, for artifacts built once and shared
(a trained classifier, an ONNX export, a SQLite schema migration)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created, with its parents, if missing) for the
    ``with`` block; blocks until any other holder lets go. The lock ends with the process too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def staged_directory(directory: Path) -> Iterator[Path]:
    """Build an artifact directory aside and swap it in only when the block succeeds, under the
    directory's lock (``.NAME.lock``): readers see the old directory or the new one, never half.
    Yields the staging directory (empty); a failure leaves ``directory`` untouched."""
    with file_lock(directory.with_name(f".{directory.name}.lock")):
        staging = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            yield staging
            swap_in(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def swap_in(staging: Path, directory: Path) -> None:
    """Replace ``directory`` with ``staging`` by two renames (the old one is removed after)."""
    retired = directory.with_name(f"{directory.name}.old-{os.getpid()}")
    if directory.exists():
        directory.rename(retired)
    staging.rename(directory)
    shutil.rmtree(retired, ignore_errors=True)
