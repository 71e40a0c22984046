"""The wheel's package list names every package of the source tree (setuptools is given
an explicit list because three folders are installed under new names)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _listed() -> dict[str, Path]:
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs: dict[str, str] = setup["package-dir"]
    out = {}
    for package in setup["packages"]:
        root = max((p for p in dirs if package == p or package.startswith(p + ".")), key=len)
        rest = package.removeprefix(root).lstrip(".").replace(".", "/")
        out[package] = REPO / dirs[root] / rest
    return out


def test_every_source_package_is_in_the_wheel() -> None:
    listed = {path.resolve() for path in _listed().values()}
    source = {p.parent.resolve() for p in (REPO / "terrain").rglob("__init__.py")}
    assert source - listed == set(), "packages missing from pyproject.toml's list"


def test_every_listed_package_exists() -> None:
    missing = [name for name, path in _listed().items() if not (path / "__init__.py").is_file()]
    assert missing == []
