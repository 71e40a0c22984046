"""One run at a time per output folder: two runs writing the same findings or baselines
would interleave, one run's files silently replacing some of the other's.

The controller holds a `filelock` lock for each folder it will write (the report folder
when reports are asked for, the baselines folder under --update-baselines) from start to
end. A second run that finds one held stops before measuring anything, naming the folder
(usage error, exit 4). The lock files live in terrain's cache, keyed by the folder's
absolute path, so the output folders hold only outputs; the kernel releases the lock when
its process dies, so a killed run leaves none behind.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from .baselines import baseline_dir
from .collector import report_dir
from .options import settings

_HELD = pytest.StashKey[list[FileLock]]()


def lock_for(cache: Path, folder: Path) -> FileLock:
    key = hashlib.sha256(os.path.abspath(folder).encode()).hexdigest()[:20]
    locks = cache / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{key}.lock"), timeout=0)


def _folders(config: pytest.Config) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    if (
        config.getoption("findings")
        or config.getoption("model")
        or config.getini("terrain_reports")
    ):
        out.append(
            ("--findings" if config.getoption("findings") else "report folder", report_dir(config))
        )
    if config.getoption("update_baselines", False):
        out.append(("--baseline-dir", baseline_dir(config)))
    return out


@pytest.hookimpl(trylast=True)  # after the output checks: the folders are valid by then
def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    held: list[FileLock] = []
    config.stash[_HELD] = held
    cache = settings(config).cache_dir
    for flag, folder in _folders(config):
        lock = lock_for(cache, folder)
        try:
            lock.acquire()
        except Timeout:
            for other in held:
                other.release()
            raise pytest.UsageError(
                f"{flag} {str(folder)!r}: another terrain run is writing there now; wait "
                "for it to end, or give this run its own folder"
            ) from None
        except OSError as e:
            raise pytest.UsageError(
                f"terrain cache {str(cache)!r}: cannot create a lock file ({e.strerror})"
            ) from None
        held.append(lock)


def pytest_unconfigure(config: pytest.Config) -> None:
    for lock in config.stash.get(_HELD, []):
        lock.release()
