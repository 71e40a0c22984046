"""Files written whole or not at all: a temporary file beside the target, then a rename.

A reader (or a run killed mid-write) sees either the previous complete file or the new
complete file, never a truncated one: the data goes to a temporary file in the target's
own folder (so the rename stays on one file system), is flushed to disk, and
`os.replace` puts it in place in one step. A cached folder (`build_folder`) is built the
same way, a temporary folder beside it renamed into place, under a file lock.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from terrain.errors import TerrainError


class OutputError(TerrainError):
    """An output file cannot be written (the message names the file and why)."""


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, creating its folder."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_leftovers(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {str(path)!r}: {e.strerror or e}") from None


def _drop_leftovers(path: Path) -> None:
    """Temporary files of `path` left by a writer that was killed before its rename.

    Only one writer at a time writes a given target (xdist workers write distinct
    baselines, the controller writes the reports, and a run lock keeps other runs out
    of the folder), so a temporary file of the same target is a dead writer's.
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


def build_folder(
    target: Path, complete: Callable[[Path], bool], build: Callable[[Path], None]
) -> Path:
    """`target`, built once: `build` fills a temporary folder beside it, which is then
    renamed into place; a folder that `complete` accepts is used as it is. Safe under
    xdist: a file lock serialises builders and the folder appears whole."""
    if complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if complete(target):
            return target
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        try:
            build(tmp)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
