"""Provenance of a run: package versions, git commit, time. Recorded in findings.json."""

from __future__ import annotations

import datetime as dt
import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "terrain",
    "torch",
    "transformers",
    "safetensors",
    "numpy",
    "scipy",
    "pytest",
    "pytest-xdist",
)


@functools.cache
def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(root: Path, args: list[str], timeout: float) -> str | None:
    """What `git args` prints in root, or None where git could not run, took too long or
    failed (outside a checkout)."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.cache
def git_commit(root: Path) -> str | None:
    out = _git(root, ["rev-parse", "HEAD"], timeout=10)
    return (out or "").strip() or None


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """(HEAD's commit, whether the tree differs from it: tracked changes or untracked files
    that are not ignored); (None, None) outside a git checkout."""
    commit = git_commit(root)
    if commit is None:
        return None, None
    out = _git(root, ["status", "--porcelain", "--untracked-files=normal"], timeout=30)
    return commit, None if out is None else bool(out.strip())


def environment(root: Path) -> dict[str, Any]:
    commit, dirty = git_state(root)
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "git_commit": commit,
        "git_dirty": dirty,
    }
