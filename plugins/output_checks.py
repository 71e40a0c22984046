"""Every path option is checked before any model is measured: a value that is empty, a
folder where a file is meant (or a file where a folder is), or a place that cannot be
written stops the run with a usage error (exit 4) naming the option, instead of a
traceback after the whole run, or a run that measured everything and kept nothing.

Writability is tried, not inferred from permission bits (root passes every `os.access`
test, yet cannot create files in /proc or on a read-only mount): a temporary file is
created and removed in the nearest folder that exists.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from .baselines import baseline_dir
from .collector import collector, report_dir
from .options import settings


def writable_folder_problem(folder: Path) -> str | None:
    """Why files cannot be created in `folder` (or in the folders that would hold it)."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return f"none of {str(folder)!r} exists"
        probe = probe.parent
    if not probe.is_dir():
        return f"{str(probe)!r} is a file, not a folder"
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".terrain-probe-")
    except OSError as e:
        return f"{str(probe)!r} is not writable ({e.strerror or e})"
    os.close(fd)
    os.unlink(name)
    return None


def _given(config: pytest.Config, option: str, what: str = "a path") -> str | None:
    """The option's value as typed; an empty or blank one is refused, not ignored."""
    value = config.getoption(option, None)
    if value is None:
        return None
    flag = "--" + option.replace("_", "-")
    if not str(value).strip():
        raise pytest.UsageError(f"{flag}: an empty value; give {what}")
    if "\x00" in str(value) or len(str(value)) > 4096:
        raise pytest.UsageError(f"{flag} {str(value)[:60]!r}…: not a usable path")
    return str(value)


def _file_option(flag: str, given: str, example: str) -> None:
    path = Path(os.path.expanduser(given))
    if path.is_dir() or given.endswith(("/", os.sep)):
        raise pytest.UsageError(
            f"{flag} {given!r}: a folder; give the file to write, e.g. {str(path / example)!r}"
        )
    if path.exists() and not path.is_file():
        raise pytest.UsageError(f"{flag} {given!r}: not a regular file")
    problem = writable_folder_problem(path.parent)
    if problem:
        raise pytest.UsageError(f"{flag} {given!r}: {problem}")


def _folder_option(flag: str, folder: Path, write: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise pytest.UsageError(f"{flag} {str(folder)!r}: a file, not a folder")
    if write:
        problem = writable_folder_problem(folder)
        if problem:
            raise pytest.UsageError(f"{flag} {str(folder)!r}: {problem}")


def check_outputs(config: pytest.Config) -> None:
    """The checks of the module docstring, for every path option terrain reads."""
    _given(config, "models_file")
    _given(config, "baseline_of", "the name of a model whose baseline to compare with")
    findings = _given(config, "findings")
    if findings is not None:
        _file_option("--findings", findings, "findings.json")
    html = config.getoption("htmlpath", None)
    if isinstance(html, str) and not html.strip():
        raise pytest.UsageError("--html: an empty value; give the page to write")
    plugin = collector(config)
    ours = plugin is not None and plugin.html_tmp is not None  # terrain's temporary page
    if html and not ours:
        _file_option("--html", str(html), "tests.html")
    recording = bool(config.getoption("update_baselines", False))
    given_baselines = _given(config, "baseline_dir")
    if given_baselines is not None or recording:
        flag = "--baseline-dir" if given_baselines is not None else "baselines folder"
        if given_baselines is None and config.getini("terrain_baseline_dir"):
            flag = "ini terrain_baseline_dir"
        _folder_option(flag, baseline_dir(config), write=recording)
    cache = _given(config, "terrain_cache")
    if cache is not None:
        _folder_option("--terrain-cache", Path(os.path.expanduser(cache)), write=True)
    # The report folder: always when it is named (--findings, the ini) or models are asked
    # for by name; otherwise a foreign repository's unit-test run is left alone.
    named = bool(findings or config.getini("terrain_reports") or config.getoption("model"))
    reports = report_dir(config)
    if named or reports.exists():
        flag = "--findings" if findings else "report folder"
        if not findings and config.getini("terrain_reports"):
            flag = "ini terrain_reports"
        _folder_option(flag, reports, write=named)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # the controller checked them before starting the workers
    settings(config)
    check_outputs(config)
