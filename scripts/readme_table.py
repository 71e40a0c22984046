"""Write the README's property table from the declarations (terrain/checks/), and the list
of families in docs/families.md from theirs (terrain/families/)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from terrain.family import families
from terrain.property import declarations
from terrain.report import family_table
from terrain.report.property_table import property_table, replace_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FAMILIES = ROOT / "docs" / "families.md"


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main() -> None:
    _write(
        README, replace_table(README.read_text(encoding="utf-8"), property_table(declarations()))
    )
    print(f"wrote the property table of {len(declarations().names())} properties to {README}")
    listed = family_table.family_list(families())
    markers = (family_table.START, family_table.END)
    _write(FAMILIES, replace_table(FAMILIES.read_text(encoding="utf-8"), listed, markers))
    print(f"wrote the list of {len(families().names())} families to {FAMILIES}")


if __name__ == "__main__":
    main()
